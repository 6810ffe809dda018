"""Parameters and helpers of the dilated residual encoder shared by the context-module families.

DeepLabV3/V3+, PSPNet and PSANet put a context module on top of the same encoder:
:class:`~medseg.models.deeplab.encoder.AtrousResidualEncoder`, a ResNet-style
stem and residual stages whose last stages trade stride for dilation once the
per-axis ``output_stride`` is reached. :class:`DilatedEncoderParams` holds its
parameters (validated per axis) so each family's params model subclasses it
and adds only its head's fields.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from medseg.models._params import (
    Act,
    ModelParams,
    Norm,
    PerAxis,
    as_tuple,
    check_axis_entries,
    check_axis_value,
    spatial_dims_of,
)
from medseg.models.deeplab.encoder import AtrousResidualEncoder, StagePlan, plan_stages


class DilatedEncoderParams(ModelParams):
    """Encoder parameters (paper values of a ResNet-101 backbone in brackets)."""

    features: tuple[int, ...] = Field(
        (16, 32, 64, 128, 256),
        description="channels of the stem and of each residual stage [ResNet-101: 64, 256, 512, 1024, 2048]",
    )
    blocks: tuple[int, ...] | None = Field(
        None, description="residual blocks per stage (len(features)-1 entries); default 1 each [3, 4, 23, 3]"
    )
    strides: tuple[PerAxis, ...] | None = Field(
        None,
        description="nominal stride of the stem and of each stage (len(features) entries, int or one per "
        "axis, e.g. [[2,2,1], 2, 2, 2, 2] for thick slices); default 2 each",
    )
    output_stride: PerAxis = Field(
        8,
        description="encoder output stride (int or one per axis); later stages use dilation instead "
        "of stride [8]",
    )
    atrous: bool = Field(True, description="dilated convolutions; False sets every dilation to 1 (ablation)")
    norm: Norm = Field(Norm.INSTANCE, description="normalisation: instance or batch [batch]")
    act: Act = Field(Act.RELU, description="activation [relu]")

    @field_validator("features")
    @classmethod
    def _features(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 2 or any(c < 1 for c in v):
            raise ValueError("features needs at least 2 positive channel counts (stem and one stage)")
        return v

    @field_validator("strides")
    @classmethod
    def _strides(cls, v: tuple[PerAxis, ...] | None, info: ValidationInfo) -> tuple[PerAxis, ...] | None:
        return check_axis_entries(v, info)

    @field_validator("output_stride")
    @classmethod
    def _os(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        return check_axis_value(v, spatial_dims_of(info), "output_stride")

    @model_validator(mode="after")
    def _resolve_encoder(self, info: ValidationInfo) -> DilatedEncoderParams:
        n = len(self.features)
        if self.blocks is None:
            object.__setattr__(self, "blocks", (1,) * (n - 1))
        if self.strides is None:
            object.__setattr__(self, "strides", (2,) * n)
        if len(self.blocks or ()) != n - 1 or any(b < 1 for b in self.blocks or ()):
            raise ValueError(f"blocks needs {n - 1} entries >= 1 (one per stage), got {self.blocks}")
        if len(self.strides or ()) != n:
            raise ValueError(
                f"strides needs {n} entries (stem and each stage), got {len(self.strides or ())}"
            )
        try:
            self.plans(spatial_dims_of(info) or self.dims_hint())
        except ValueError as exc:
            raise ValueError(f"output_stride: {exc}") from None
        return self

    def per_axis_values(self) -> list[PerAxis]:
        """Every per-axis value (subclasses add their head's), for :meth:`dims_hint`."""
        return [self.output_stride, *(self.strides or ())]

    def dims_hint(self) -> int:
        """A spatial_dims consistent with the per-axis values (for validation without context)."""
        for v in self.per_axis_values():
            if not isinstance(v, int):
                return len(v)
        return 3

    def plans(self, spatial_dims: int) -> list[StagePlan]:
        """Effective per-axis strides and dilations of the stem and each stage."""
        strides = [as_tuple(s, spatial_dims) for s in self.strides or ()]
        return plan_stages(strides, as_tuple(self.output_stride, spatial_dims), self.atrous)

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return as_tuple(self.output_stride, spatial_dims)

    def encoder(self, spatial_dims: int, in_channels: int) -> AtrousResidualEncoder:
        """The encoder these parameters describe; its last feature map is at ``output_stride``."""
        return AtrousResidualEncoder(
            spatial_dims, in_channels, self.features, self.blocks or (), self.plans(spatial_dims),
            self.norm, self.act,
        )  # fmt: skip
