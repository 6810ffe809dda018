"""The model registry: an explicit table of every network medseg can build, by name.

Pipelines name a model by its registry key (``"unet"``, ``"deeplabv3plus"``...)
and pass its parameters; nothing is imported from a dotted path and nothing is
evaluated. To add a network, write its family folder (a pydantic parameter
model with ``extra="forbid"``, subclassing :class:`~._params.ModelParams`, and
a builder) and add one :class:`~.spec.ModelSpec` row, with small example
parameters, to :data:`MODELS`. Everything else (``build_model``, config
checks, ``medseg models``, the contract and learning tests) reads this table;
regenerate the tables of ``docs/models.md`` with
``python benchmarks/model_table.py --update-docs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medseg.models.deeplab.model import (
    DeepLabV3Params,
    DeepLabV3PlusParams,
    build_deeplabv3,
    build_deeplabv3plus,
)
from medseg.models.spec import ModelSpec, ParamSpec, type_name
from medseg.models.uctransnet.model import UCTransNetParams, build_uctransnet
from medseg.models.unet.dynunet import DynUNetParams, build_dynunet
from medseg.models.unet.unet import UNetParams, build_unet

__all__ = ["MODELS", "ModelSpec", "ParamSpec", "type_name"]

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


def _per_dims(params: Callable[[int], dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Example parameters that differ between 2D and 3D, as ``{2: params(2), 3: params(3)}``."""
    return {2: params(2), 3: params(3)}


def _aniso(value: Any, last: Any, spatial_dims: int) -> list[Any]:
    """A per-axis value that differs on the last (through-plane) axis: ``[value, ..., last]``."""
    return [value] * (spatial_dims - 1) + [last]


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
        example_params={"features": [8, 16, 32]},
        example_variants={
            "residual-noskip-batchnorm": _per_dims(
                lambda d: {
                    "features": [4, 8, 8],
                    "residual": True,
                    "skip_connections": False,
                    "norm": "batch",
                    "dropout": 0.2,
                    "strides": [2, _aniso(2, 1, d)],
                }
            ),
        },
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
        example_params={"features": [8, 16, 32], "deep_supervision": True, "deep_supr_num": 1},
        example_variants={
            "residual": {"features": [4, 8, 8, 16], "residual": True},
            "deepsup-anisotropic": _per_dims(
                lambda d: {
                    "features": [4, 8, 8, 16],
                    "strides": [1, _aniso(2, 1, d), 2, 2],
                    "kernel_size": [_aniso(3, 1, d), 3, 3, 3],
                    "deep_supervision": True,
                    "deep_supr_num": 2,
                }
            ),
        },
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
        example_params={
            "features": [8, 16, 32, 32],
            "token_stride": 8,
            "transformer_layers": 1,
            "num_heads": 2,
            "pos_grid": 4,
        },
        example_variants={
            "embed-dims": {
                "features": [4, 8, 16, 16],
                "token_stride": 8,
                "transformer_layers": 2,
                "num_heads": 2,
                "pos_grid": 3,
                "embed_dims": [4, 6, 8],
            },
        },
    ),
    "deeplabv3": ModelSpec(
        name="deeplabv3",
        family="deeplab",
        description="DeepLabV3: atrous residual encoder (output stride 8/16, per-axis), ASPP with image "
        "pooling, linear upsampling (atrous=False for the ablation)",
        paper=_DEEPLAB_V3,
        params_model=DeepLabV3Params,
        builder=build_deeplabv3,
        example_params={"features": [8, 16, 32, 32], "aspp_channels": 16, "output_stride": 2},
        example_variants={
            "blocks-os8": {"features": [4, 8, 16, 16], "aspp_channels": 8, "blocks": [1, 2, 1]},
            "anisotropic-os16-noatrous": _per_dims(
                lambda d: {
                    "features": [4, 8, 8, 16, 16],
                    "aspp_channels": 8,
                    "strides": [_aniso(2, 1, d), 2, 2, 2, 2],
                    "output_stride": _aniso(16, 8, d),
                    "aspp_rates": [_aniso(3, 1, d), 2],
                    "atrous": False,
                    "norm": "batch",
                }
            ),
        },
    ),
    "deeplabv3plus": ModelSpec(
        name="deeplabv3plus",
        family="deeplab",
        description="DeepLabV3+: DeepLabV3 plus a decoder fusing stride-4 low-level features",
        paper=_DEEPLAB_V3P,
        params_model=DeepLabV3PlusParams,
        builder=build_deeplabv3plus,
        # the decoder fuses the stem's features (stride 2): with stride-4 fusion the 4x-upsampled output
        # of the learning test's 32^3 volumes is too coarse for its radius-5 ellipsoids
        example_params={
            "features": [8, 16, 32, 32],
            "aspp_channels": 16,
            "low_level_channels": 8,
            "decoder_channels": 16,
            "low_level_stage": 0,
        },
        example_variants={
            "anisotropic-rates": _per_dims(
                lambda d: {
                    "features": [4, 8, 16, 16],
                    "aspp_channels": 8,
                    "low_level_channels": 4,
                    "decoder_channels": 8,
                    "aspp_rates": [_aniso(1, 2, d), 3],
                }
            ),
        },
    ),
}
