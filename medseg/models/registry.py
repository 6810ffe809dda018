"""The model registry: an explicit table of every network medseg can build, by name.

Pipelines name a model by its registry key (``"unet"``, ``"deeplabv3plus"``...)
and pass its parameters; nothing is imported from a dotted path and nothing is
evaluated. To add a network, write its family folder (a pydantic parameter
model with ``extra="forbid"`` and a builder) and add one :class:`ModelSpec`
to :data:`MODELS`.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticUndefined
from torch import nn

from medseg.models._params import ModelParams
from medseg.models.deeplab.model import (
    DeepLabV3Params,
    DeepLabV3PlusParams,
    build_deeplabv3,
    build_deeplabv3plus,
)
from medseg.models.uctransnet.model import UCTransNetParams, build_uctransnet
from medseg.models.unet.dynunet import DynUNetParams, build_dynunet
from medseg.models.unet.unet import UNetParams, build_unet

Builder = Callable[[int, int, int, Any], nn.Module]


@dataclass(frozen=True)
class ParamSpec:
    """One build parameter of a model: name, type, default and what it does."""

    name: str
    type: str
    default: Any
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
        }


@dataclass(frozen=True)
class ModelSpec:
    """A registered network.

    Attributes:
        name: registry key used in pipeline configs.
        family: ``"unet"``, ``"uctransnet"`` or ``"deeplab"``.
        description: one line.
        paper: the reference it follows.
        params_model: the pydantic model validating its parameters.
        builder: ``builder(spatial_dims, in_channels, out_channels, params) -> nn.Module``.
        spatial_dims: the dimensionalities it can be built for.
        deep_supervision: whether it can return auxiliary outputs (``deep_supervision=True``).
        onnx: whether it exports to ONNX (checked by the contract test).
    """

    name: str
    family: str
    description: str
    paper: str
    params_model: type[ModelParams]
    builder: Builder = field(repr=False)
    spatial_dims: tuple[int, ...] = (2, 3)
    deep_supervision: bool = False
    onnx: bool = True

    @property
    def supports_2d(self) -> bool:
        return 2 in self.spatial_dims

    @property
    def supports_3d(self) -> bool:
        return 3 in self.spatial_dims

    @property
    def params(self) -> list[ParamSpec]:
        """The build parameters with their defaults, in declaration order."""
        out = []
        for name, info in self.params_model.model_fields.items():
            default = info.default
            if default is PydanticUndefined:
                default = None
            out.append(
                ParamSpec(name, type_name(info.annotation), _jsonable(default), info.description or "")
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (``medseg models --json``)."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "paper": self.paper,
            "spatial_dims": list(self.spatial_dims),
            "supports_2d": self.supports_2d,
            "supports_3d": self.supports_3d,
            "deep_supervision": self.deep_supervision,
            "onnx": self.onnx,
            "params": [p.to_dict() for p in self.params],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def type_name(annotation: Any) -> str:
    """A short readable name of a parameter annotation (``int | per-axis``, ``list[int]``...)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        if args == (int, tuple[int, ...]) or names == ["int", "list[int]"]:
            text = "int | list[int]"
        else:
            text = " | ".join(names)
        return text + (" | null" if type(None) in args else "")
    if origin is tuple:
        return f"list[{type_name(args[0])}]" if args else "list"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(repr(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


_UNET_PAPER = (
    "Ronneberger, Fischer, Brox: U-Net: Convolutional Networks for Biomedical Image Segmentation, "
    "MICCAI 2015; Çiçek et al.: 3D U-Net, MICCAI 2016"
)
_DEEPLAB_V3 = (
    "Chen et al.: Rethinking Atrous Convolution for Semantic Image Segmentation, arXiv:1706.05587, 2017"
)
_DEEPLAB_V3P = (
    "Chen et al.: Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation "
    "(DeepLabV3+), ECCV 2018"
)

#: Every registered network, by registry name.
MODELS: dict[str, ModelSpec] = {
    "unet": ModelSpec(
        name="unet",
        family="unet",
        description="classic U-Net: conv blocks, max pooling, transposed-conv upsampling, concatenated skips "
        "(skip_connections=False for the ablation)",
        paper=_UNET_PAPER,
        params_model=UNetParams,
        builder=build_unet,
    ),
    "dynunet": ModelSpec(
        name="dynunet",
        family="unet",
        description="nnU-Net-style dynamic U-Net (MONAI DynUNet): per-level per-axis kernels and strides, "
        "optional deep supervision",
        paper="Isensee et al.: nnU-Net: a self-configuring method for deep learning-based biomedical image "
        "segmentation, Nature Methods 2021",
        params_model=DynUNetParams,
        builder=build_dynunet,
        deep_supervision=True,
    ),
    "uctransnet": ModelSpec(
        name="uctransnet",
        family="uctransnet",
        description="U-Net whose skips pass through a channel-wise cross fusion transformer (CCT) and "
        "channel-wise cross attention (CCA) gates",
        paper="Wang, Cao, Wang, Zaiane: UCTransNet: Rethinking the Skip Connections in U-Net from a "
        "Channel-wise Perspective with Transformer, AAAI 2022",
        params_model=UCTransNetParams,
        builder=build_uctransnet,
    ),
    "deeplabv3": ModelSpec(
        name="deeplabv3",
        family="deeplab",
        description="DeepLabV3: atrous residual encoder (output stride 8/16, per-axis), ASPP with image "
        "pooling, linear upsampling (atrous=False for the ablation)",
        paper=_DEEPLAB_V3,
        params_model=DeepLabV3Params,
        builder=build_deeplabv3,
    ),
    "deeplabv3plus": ModelSpec(
        name="deeplabv3plus",
        family="deeplab",
        description="DeepLabV3+: DeepLabV3 plus a decoder fusing stride-4 low-level features",
        paper=_DEEPLAB_V3P,
        params_model=DeepLabV3PlusParams,
        builder=build_deeplabv3plus,
    ),
}
