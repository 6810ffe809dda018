"""nnU-Net-style dynamic U-Net (Isensee et al. 2021), wrapping MONAI's ``DynUNet``.

Per-level, per-axis kernel sizes and strides (as nnU-Net plans them for
anisotropic data) and optional deep supervision. MONAI's ``DynUNet`` upsamples
the auxiliary outputs to full resolution and stacks them; the medseg contract
wants them at their own (lower) resolution, as a list, so :class:`DynUNet`
overrides ``forward``.

MONAI is imported only when a network is built (:func:`build_dynunet`, or the ``DynUNet``
attribute of this module): the parameter model needs none of it, and importing MONAI costs
seconds that ``import medseg.models`` and the prediction of other networks should not pay.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import use_accurate_instance_norm
from medseg.models._params import (
    Act,
    ModelParams,
    Norm,
    PerAxis,
    check_axis_entries,
    prod_per_axis,
)


class DynUNetParams(ModelParams):
    """Parameters of ``dynunet``."""

    features: tuple[int, ...] = Field(
        (16, 32, 64, 128, 256),
        description="channels per level, top to bottom (nnU-Net uses 32, 64, ... capped at 320; "
        "formerly 'filters', still accepted)",
    )
    strides: tuple[PerAxis, ...] | None = Field(
        None,
        description="stride of each level's first conv (len(features) entries; the first must be 1; "
        "int or one per axis, e.g. [1, [2,2,1], 2, 2]); default [1, 2, 2, ...]",
    )
    kernel_size: tuple[PerAxis, ...] | None = Field(
        None, description="kernel size per level (len(features) entries; int or one per axis); default 3"
    )
    norm: Norm = Field(Norm.INSTANCE, description="normalisation: instance or batch")
    act: Act = Field(Act.LEAKYRELU, description="activation: relu, leakyrelu or prelu")
    residual: bool = Field(False, description="residual conv blocks (MONAI res_block)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout ratio in the conv blocks")
    deep_supervision: bool = Field(
        False, description="training-mode forward returns [logits, aux1, ...] at decreasing resolution"
    )
    deep_supr_num: int | None = Field(
        None,
        ge=1,
        description="number of auxiliary outputs with deep supervision (< len(features) - 1); "
        "default min(2, len(features) - 2)",
    )

    @field_validator("features")
    @classmethod
    def _features(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 3 or any(c < 1 for c in v):
            raise ValueError("features needs at least 3 positive channel counts (levels)")
        return v

    @field_validator("strides", "kernel_size")
    @classmethod
    def _per_level(cls, v: tuple[PerAxis, ...] | None, info: ValidationInfo) -> tuple[PerAxis, ...] | None:
        return check_axis_entries(v, info)

    @model_validator(mode="after")
    def _resolve(self) -> DynUNetParams:
        n = len(self.features)
        if self.strides is None:
            object.__setattr__(self, "strides", (1,) + (2,) * (n - 1))
        if self.kernel_size is None:
            object.__setattr__(self, "kernel_size", (3,) * n)
        for name in ("strides", "kernel_size"):
            value = getattr(self, name)
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries but features has {n} levels")
        first = self.strides[0] if self.strides else 1
        if any(s != 1 for s in ((first,) if isinstance(first, int) else first)):
            raise ValueError(f"strides[0] must be 1 (full-resolution output), got {first}")
        for k in self.kernel_size or ():
            if any(x % 2 == 0 for x in ((k,) if isinstance(k, int) else k)):
                raise ValueError(f"kernel_size entries must be odd, got {k}")
        if self.deep_supr_num is None:
            object.__setattr__(self, "deep_supr_num", min(2, n - 2))
        if self.deep_supervision and (self.deep_supr_num or 1) >= n - 1:
            raise ValueError(
                f"deep_supr_num must be < len(features) - 1 = {n - 1} with deep supervision, "
                f"got {self.deep_supr_num}"
            )
        return self

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return prod_per_axis(self.strides or (), spatial_dims)

    def deep_supervision_scales(self, spatial_dims: int) -> list[tuple[int, ...]]:
        if not self.deep_supervision:
            return []
        strides = list(self.strides or ())
        return [prod_per_axis(strides[: k + 2], spatial_dims) for k in range(self.deep_supr_num or 1)]


def __getattr__(name: str) -> Any:
    """``DynUNet`` is imported on first use (it loads MONAI)."""
    if name == "DynUNet":
        from medseg.models.unet._monai_dynunet import DynUNet

        return DynUNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NORMS = {Norm.INSTANCE: ("INSTANCE", {"affine": True}), Norm.BATCH: "BATCH"}
_ACTS = {
    Act.LEAKYRELU: ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
    Act.RELU: ("relu", {"inplace": True}),
    Act.PRELU: "prelu",
}


def build_dynunet(spatial_dims: int, in_channels: int, out_channels: int, params: DynUNetParams) -> nn.Module:
    """Registry builder of ``dynunet`` (imports MONAI on first call)."""
    from medseg.models.unet._monai_dynunet import DynUNet

    strides = [list(s) if not isinstance(s, int) else s for s in params.strides or ()]
    kernels = [list(k) if not isinstance(k, int) else k for k in params.kernel_size or ()]
    net = DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(params.features),
        dropout=params.dropout or None,
        norm_name=_NORMS[params.norm],
        act_name=_ACTS[params.act],
        deep_supervision=params.deep_supervision,
        deep_supr_num=params.deep_supr_num or 1,
        res_block=params.residual,
    )
    return use_accurate_instance_norm(net)
