"""U-Net family: the classic U-Net (``unet``) and the nnU-Net-style dynamic U-Net (``dynunet``)."""

from medseg.models.unet.dynunet import DynUNet, DynUNetParams, build_dynunet
from medseg.models.unet.unet import UNet, UNetParams, build_unet

__all__ = ["DynUNet", "DynUNetParams", "UNet", "UNetParams", "build_dynunet", "build_unet"]
