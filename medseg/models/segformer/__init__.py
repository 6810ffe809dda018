"""SegFormer family (``segformer``): hierarchical Mix Transformer encoder and all-MLP decoder."""

from medseg.models.segformer.mit import EfficientSelfAttention, MixFFN, MixTransformer
from medseg.models.segformer.model import SegFormer, SegFormerParams, SegFormerSize, build_segformer

__all__ = [
    "EfficientSelfAttention",
    "MixFFN",
    "MixTransformer",
    "SegFormer",
    "SegFormerParams",
    "SegFormerSize",
    "build_segformer",
]
