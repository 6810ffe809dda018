"""DeepLab family: ``deeplabv3`` and ``deeplabv3plus`` with an atrous residual encoder, 2D and 3D."""

from medseg.models.deeplab.aspp import ASPP
from medseg.models.deeplab.encoder import AtrousResidualEncoder, StagePlan, plan_stages
from medseg.models.deeplab.model import (
    DeepLabV3,
    DeepLabV3Params,
    DeepLabV3Plus,
    DeepLabV3PlusParams,
    build_deeplabv3,
    build_deeplabv3plus,
)

__all__ = [
    "ASPP",
    "AtrousResidualEncoder",
    "DeepLabV3",
    "DeepLabV3Params",
    "DeepLabV3Plus",
    "DeepLabV3PlusParams",
    "StagePlan",
    "build_deeplabv3",
    "build_deeplabv3plus",
    "plan_stages",
]
