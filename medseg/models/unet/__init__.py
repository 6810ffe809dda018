"""U-Net family: the classic U-Net (``unet``) and the nnU-Net-style dynamic U-Net (``dynunet``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medseg.models.unet.dynunet import DynUNetParams, build_dynunet
from medseg.models.unet.unet import UNet, UNetParams, build_unet

if TYPE_CHECKING:
    from medseg.models.unet._monai_dynunet import DynUNet

__all__ = ["DynUNet", "DynUNetParams", "UNet", "UNetParams", "build_dynunet", "build_unet"]


def __getattr__(name: str) -> Any:
    """``DynUNet`` is imported on first use: it loads MONAI, which takes seconds."""
    if name == "DynUNet":
        from medseg.models.unet._monai_dynunet import DynUNet

        return DynUNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
