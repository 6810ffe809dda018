"""DeepLab v1/v2 family: ``deeplabv1`` (LargeFOV) and ``deeplabv2`` (ASPP) on an atrous VGG-style
encoder, 2D and 3D (``medseg.models.deeplab`` holds v3/v3+)."""

from medseg.models.deeplab_vgg.model import (
    DeepLabV1Params,
    DeepLabV2Params,
    DeepLabVGG,
    DeepLabVGGParams,
    build_deeplabv1,
    build_deeplabv2,
)

__all__ = [
    "DeepLabV1Params",
    "DeepLabV2Params",
    "DeepLabVGG",
    "DeepLabVGGParams",
    "build_deeplabv1",
    "build_deeplabv2",
]
