"""ParseNet family: ``parsenet``, an FCN with L2-normalised global context, 2D and 3D."""

from medseg.models.parsenet.model import (
    GlobalContext,
    L2Norm,
    ParseNet,
    ParseNetParams,
    build_parsenet,
)

__all__ = ["GlobalContext", "L2Norm", "ParseNet", "ParseNetParams", "build_parsenet"]
