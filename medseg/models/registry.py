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
from medseg.models.deeplab_vgg.model import (
    DeepLabV1Params,
    DeepLabV2Params,
    build_deeplabv1,
    build_deeplabv2,
)
from medseg.models.enet.model import ENetParams, build_enet
from medseg.models.fcn.model import FCNParams, build_fcn
from medseg.models.parsenet.model import ParseNetParams, build_parsenet
from medseg.models.psanet.model import PSANetParams, build_psanet
from medseg.models.pspnet.model import PSPNetParams, build_pspnet
from medseg.models.segformer.model import SegFormerParams, build_segformer
from medseg.models.setr.model import SETRParams, build_setr
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
        encoder_prefixes=("encoder",),
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
        encoder_prefixes=("input_block", "downsamples", "bottleneck"),
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
        encoder_prefixes=("encoder",),
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
        encoder_prefixes=("encoder",),
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
        encoder_prefixes=("encoder",),
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
    "pspnet": ModelSpec(
        name="pspnet",
        family="pspnet",
        description="PSPNet: dilated residual encoder, pyramid pooling module (bins 1, 2, 3, 6 by default; "
        "bins=[] for the ablation), optional auxiliary head (deep supervision)",
        paper="Zhao, Shi, Qi, Wang, Jia: Pyramid Scene Parsing Network, CVPR 2017",
        params_model=PSPNetParams,
        builder=build_pspnet,
        encoder_prefixes=("encoder",),
        # output stride 2 like deeplabv3's example: a decoder-less head upsampled 4x or more is too coarse
        # for the learning test's radius-5 ellipsoids
        example_params={
            "features": [8, 16, 32, 32],
            "output_stride": 2,
            "bins": [1, 2, 3, 6],
            "ppm_channels": 8,
            "head_channels": 16,
        },
        example_variants={
            "aux-anisotropic-batchnorm": _per_dims(
                lambda d: {
                    "features": [4, 8, 8, 16],
                    "strides": [_aniso(2, 1, d), 2, 2, 2],
                    "output_stride": _aniso(4, 2, d),
                    "bins": [1, _aniso(2, 1, d), 3],
                    "head_channels": 8,
                    "aux_head": True,
                    "norm": "batch",
                }
            ),
        },
        deep_supervision=True,
    ),
    "enet": ModelSpec(
        name="enet",
        family="enet",
        description="ENet: initial conv + max-pool block, bottlenecks (regular, dilated, asymmetric 5x1/1x5) "
        "with PReLU and spatial dropout, max-unpooling decoder",
        paper="Paszke, Chaurasia, Kim, Culurciello: ENet: A Deep Neural Network Architecture for Real-Time "
        "Semantic Segmentation, arXiv:1606.02147, 2016",
        params_model=ENetParams,
        builder=build_enet,
        encoder_prefixes=("initial", "down1", "stage1", "down2", "context"),
        example_params={
            "features": [8, 16, 32],
            "stage1_blocks": 2,
            "context_dilations": [2, 4, 8],
            "context_repeats": 1,
            "decoder_blocks": [1, 1],
            "dropout_stage1": 0.0,
            "dropout": 0.0,
            "norm": "batch",
        },
        example_variants={
            "paper-layout-batchnorm": {
                "features": [4, 8, 16],
                "stage1_blocks": 2,
                "context_dilations": [2, 4, 8, 16],
                "context_repeats": 2,
                "decoder_blocks": [2, 1],
            },
        },
        spatial_dims=(2,),
    ),
    "psanet": ModelSpec(
        name="psanet",
        family="psanet",
        description="PSANet: dilated residual encoder, point-wise spatial attention (collect and distribute "
        "branches, over-completed maps cropped to the dense N x N attention)",
        paper="Zhao, Zhang, Liu, Shi, Loy, Lin, Jia: PSANet: Point-wise Spatial Attention Network for Scene "
        "Parsing, ECCV 2018",
        params_model=PSANetParams,
        builder=build_psanet,
        encoder_prefixes=("encoder",),
        # output stride 2 (see pspnet); 3D: 16^3 feature maps of the 32^3 learning volumes, N^2 = 2^24
        example_params=_per_dims(
            lambda d: {
                "features": [8, 16, 32, 32],
                "output_stride": 2,
                "reduced_channels": 8,
                "mask_size": 15 if d == 2 else 7,
                "head_channels": 16,
            }
        ),
        example_variants={
            "collect-anisotropic-nosoftmax": _per_dims(
                lambda d: {
                    "features": [4, 8, 8, 16],
                    "strides": [_aniso(2, 1, d), 2, 2, 2],
                    "output_stride": _aniso(4, 2, d),
                    "reduced_channels": 4,
                    "mask_size": _aniso(5, 3, d),
                    "psa_type": "collect",
                    "attention_softmax": False,
                    "head_channels": 8,
                    "norm": "batch",
                }
            ),
        },
    ),
    "fcn": ModelSpec(
        name="fcn",
        family="fcn",
        description="fully convolutional network on a VGG-style encoder: conv fc6/fc7, score layers, "
        "skip fusion of pool4 (16s) and pool3 (8s) scores, bilinear-initialised transposed convs",
        paper="Long, Shelhamer, Darrell: Fully Convolutional Networks for Semantic Segmentation, CVPR 2015; "
        "Shelhamer, Long, Darrell, IEEE TPAMI 39(4), 2017",
        params_model=FCNParams,
        builder=build_fcn,
        encoder_prefixes=("encoder", "fc"),
        # three stride-2 stages: the 8s output is fused at stride 2, fine enough for 32^3 volumes
        example_params={"features": [8, 16, 16], "fc_channels": 16, "dropout": 0.1},
        example_variants={
            "32s-interpolate": {
                "features": [4, 8, 8],
                "fc_channels": 8,
                "variant": "32s",
                "upsample": "interpolate",
            },
            "16s-anisotropic-batchnorm": _per_dims(
                lambda d: {
                    "features": [4, 8, 8, 8],
                    "convs_per_stage": [1, 1, 2, 1],
                    "strides": [_aniso(2, 1, d), 2, _aniso(2, 1, d), 2],
                    "variant": "16s",
                    "fc_kernel_size": _aniso(3, 1, d),
                    "fc_channels": 8,
                    "norm": "batch",
                }
            ),
        },
    ),
    "parsenet": ModelSpec(
        name="parsenet",
        family="parsenet",
        description="ParseNet: FCN whose fc7 features are concatenated with their global average, both "
        "L2-normalised with learnable scales (l2_norm=False for the ablation)",
        paper="Liu, Rabinovich, Berg: ParseNet: Looking Wider to See Better, ICLR 2016 workshop, "
        "arXiv:1506.04579",
        params_model=ParseNetParams,
        builder=build_parsenet,
        encoder_prefixes=("encoder", "fc"),
        example_params={
            "features": [8, 16, 16],
            "strides": [2, 1, 1],
            "fc_channels": 16,
            "dropout": 0.0,
            "variant": "8s",
        },
        example_variants={
            "8s-no-l2norm": {"features": [4, 8, 8], "fc_channels": 8, "variant": "8s", "l2_norm": False},
            "anisotropic-interpolate": _per_dims(
                lambda d: {
                    "features": [4, 8, 8],
                    "strides": [_aniso(2, 1, d), 2, 2],
                    "fc_channels": 8,
                    "upsample": "interpolate",
                    "scale_init": 5.0,
                }
            ),
        },
    ),
    "deeplabv1": ModelSpec(
        name="deeplabv1",
        family="deeplab_vgg",
        description="DeepLab v1 (LargeFOV): atrous VGG-style encoder (output stride 8, per-axis), dilated "
        "fc6, linear upsampling of the logits (atrous=False: plain strides, for the ablation)",
        paper="Chen, Papandreou, Kokkinos, Murphy, Yuille: Semantic Image Segmentation with Deep "
        "Convolutional Nets and Fully Connected CRFs, ICLR 2015",
        params_model=DeepLabV1Params,
        builder=build_deeplabv1,
        encoder_prefixes=("encoder",),
        # output stride 1: upsampled logits of 32^3 volumes miss the 0.9 bar (0.88 at stride 2)
        example_params={
            "features": [16, 16, 16],
            "output_stride": 1,
            "fc_channels": 16,
            "fc_rate": 2,
            "dropout": 0.0,
        },
        example_variants={
            "noatrous": {"features": [4, 8, 8], "output_stride": 2, "fc_channels": 8, "atrous": False},
            "anisotropic-batchnorm": _per_dims(
                lambda d: {
                    "features": [4, 8, 8, 8],
                    "strides": [_aniso(2, 1, d), 2, 2, 2],
                    "output_stride": _aniso(4, 2, d),
                    "fc_rate": _aniso(2, 1, d),
                    "fc_channels": 8,
                    "norm": "batch",
                }
            ),
        },
    ),
    "deeplabv2": ModelSpec(
        name="deeplabv2",
        family="deeplab_vgg",
        description="DeepLab v2: atrous VGG-style encoder, ASPP of parallel dilated fc6/fc7/classifier "
        "branches (per-axis rates) whose logits are summed, linear upsampling (atrous=False: ablation)",
        paper="Chen, Papandreou, Kokkinos, Murphy, Yuille: DeepLab: Semantic Image Segmentation with Deep "
        "Convolutional Nets, Atrous Convolution, and Fully Connected CRFs, IEEE TPAMI 40(4), 2018",
        params_model=DeepLabV2Params,
        builder=build_deeplabv2,
        encoder_prefixes=("encoder",),
        example_params={
            "features": [8, 16, 16],
            "output_stride": 1,
            "fc_channels": 16,
            "rates": [1, 2, 4, 6],
            "dropout": 0.0,
        },
        example_variants={
            "anisotropic-rates": _per_dims(
                lambda d: {
                    "features": [4, 8, 8],
                    "strides": [_aniso(2, 1, d), 2, 2],
                    "output_stride": _aniso(4, 2, d),
                    "fc_channels": 4,
                    "rates": [_aniso(2, 1, d), _aniso(4, 2, d)],
                }
            ),
            "noatrous-batchnorm": {
                "features": [4, 8, 8],
                "fc_channels": 4,
                "rates": [2, 4],
                "atrous": False,
                "norm": "batch",
            },
        },
    ),
    "segformer": ModelSpec(
        name="segformer",
        family="segformer",
        description="SegFormer: hierarchical Mix Transformer encoder (overlapped patch merging, efficient "
        "self-attention with spatial reduction, Mix-FFN) and all-MLP decoder; sizes b0, b1 or custom",
        paper="Xie, Wang, Yu, Anandkumar, Alvarez, Luo: SegFormer: Simple and Efficient Design for Semantic "
        "Segmentation with Transformers, NeurIPS 2021",
        params_model=SegFormerParams,
        builder=build_segformer,
        encoder_prefixes=("encoder",),
        # first merging stride 2 (not 4): the decoder's 1/2-resolution logits resolve the learning
        # test's radius-5 ellipsoids on 32^3 volumes
        example_params={
            "size": "custom",
            "widths": [16, 32, 48, 64],
            "depths": [1, 1, 1, 1],
            "heads": [1, 2, 2, 4],
            "sr_ratios": [4, 2, 1, 1],
            "strides": [2, 2, 2, 2],
            "decoder_dim": 32,
            "decoder_dropout": 0.0,
        },
        example_variants={
            "b0-layout": {
                "size": "custom",
                "widths": [8, 16, 40, 64],
                "depths": [2, 2, 2, 2],
                "heads": [1, 2, 5, 8],
                "sr_ratios": [8, 4, 2, 1],
                "decoder_dim": 16,
            },
            "anisotropic": _per_dims(
                lambda d: {
                    "size": "custom",
                    "widths": [8, 16, 16],
                    "depths": [1, 1, 1],
                    "heads": [1, 2, 2],
                    "sr_ratios": [_aniso(2, 1, d), 1, 1],
                    "strides": [_aniso(2, 1, d), 2, _aniso(2, 1, d)],
                    "decoder_dim": 8,
                    "mlp_ratio": 2.0,
                    "norm": "batch",
                }
            ),
        },
    ),
    "setr": ModelSpec(
        name="setr",
        family="setr",
        description="SETR: ViT encoder (patch embedding, interpolated learned position embeddings) with the "
        "naive, progressive-upsampling (PUP) or multi-level-aggregation (MLA) decoder",
        paper="Zheng, Lu, Zhao, Zhu, Luo, Wang, Fu, Feng, Xiang, Torr, Zhang: Rethinking Semantic "
        "Segmentation from a Sequence-to-Sequence Perspective with Transformers, CVPR 2021",
        params_model=SETRParams,
        builder=build_setr,
        encoder_prefixes=("encoder",),
        # patch size 2: tokens of 2^3 voxels keep the ellipsoids' boundaries within reach of the PUP decoder
        example_params={
            "embed_dim": 32,
            "depth": 2,
            "heads": 2,
            "patch_size": 2,
            "decoder": "pup",
            "decoder_channels": 16,
        },
        example_variants={
            "naive-anisotropic": _per_dims(
                lambda d: {
                    "embed_dim": 16,
                    "depth": 1,
                    "heads": 2,
                    "patch_size": _aniso(4, 2, d),
                    "pos_grid": 4,
                    "decoder": "naive",
                    "decoder_channels": 8,
                }
            ),
            "mla": {
                "embed_dim": 16,
                "depth": 4,
                "heads": 2,
                "patch_size": 4,
                "pos_grid": 4,
                "decoder": "mla",
                "mla_layers": [2, 4],
                "decoder_channels": 8,
                "norm": "batch",
            },
        },
    ),
}
