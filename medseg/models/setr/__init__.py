"""SETR family (``setr``): a ViT encoder with the naive, PUP or MLA decoder."""

from medseg.models.setr.model import SETR, SETRDecoder, SETRParams, ViTEncoder, build_setr

__all__ = ["SETR", "SETRDecoder", "SETRParams", "ViTEncoder", "build_setr"]
