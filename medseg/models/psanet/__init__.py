"""PSANet family: ``psanet``, a dilated residual encoder with point-wise spatial attention, 2D and 3D."""

from medseg.models.psanet.model import (
    PointwiseSpatialAttention,
    PSANet,
    PSANetParams,
    PSAType,
    attention_index,
    build_psanet,
    over_complete_attention,
)

__all__ = [
    "PSANet",
    "PSANetParams",
    "PSAType",
    "PointwiseSpatialAttention",
    "attention_index",
    "build_psanet",
    "over_complete_attention",
]
