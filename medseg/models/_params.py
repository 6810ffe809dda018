"""Validated parameter models shared by every network family.

Each family declares a pydantic model (``extra="forbid"``) of its build
parameters. Per-axis values (strides, kernel sizes, dilations) are written as
an ``int`` (same on every axis) or a list with one entry per spatial axis;
their length is checked against ``spatial_dims``, which :func:`build_model`
passes in the validation context.

Parameter names are shared across families (``features`` is the channels per
level everywhere). A renamed parameter stays accepted under its old name, with
a :class:`FutureWarning` (shown by default), through one validator on :class:`ModelParams`
driven by :data:`RENAMED_PARAMS`, so configs and run folders saved before the
rename still load and build the same network.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

#: An int (same on every axis) or one int per spatial axis.
PerAxis = Union[int, tuple[int, ...]]  # noqa: UP007 (pydantic needs the runtime union on 3.10)


class Norm(str, Enum):
    """Feature normalisation inside conv blocks."""

    INSTANCE = "instance"
    BATCH = "batch"


class Act(str, Enum):
    """Non-linearity inside conv blocks."""

    RELU = "relu"
    LEAKYRELU = "leakyrelu"
    PRELU = "prelu"


#: Deprecated parameter name -> its current name, accepted by every family that has the current one.
RENAMED_PARAMS: dict[str, str] = {"filters": "features"}


class ModelParams(BaseModel):
    """Base class of every family's parameters: rejects unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    @model_validator(mode="before")
    @classmethod
    def _accept_renamed(cls, data: Any) -> Any:
        """Map deprecated parameter names (:data:`RENAMED_PARAMS`) to their current names, warning."""
        if not isinstance(data, Mapping):
            return data
        renamed = {
            old: new
            for old, new in RENAMED_PARAMS.items()
            if old in data and new in cls.model_fields and old not in cls.model_fields
        }
        if not renamed:
            return data
        data = dict(data)
        for old, new in renamed.items():
            if new in data:
                raise ValueError(f"give '{new}' only ('{old}' is its deprecated name)")
            warnings.warn(f"model parameter '{old}' is deprecated, use '{new}'", FutureWarning, stacklevel=2)
            data[new] = data.pop(old)
        return data

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        """Per-axis multiple the network needs its input size to be (inputs are padded to it)."""
        raise NotImplementedError

    def deep_supervision_scales(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """Per-axis downsampling factor of each auxiliary output (empty without deep supervision)."""
        return []


def spatial_dims_of(info: ValidationInfo) -> int | None:
    """The ``spatial_dims`` given in the validation context, if any."""
    ctx = info.context or {}
    value = ctx.get("spatial_dims")
    return int(value) if value is not None else None


def check_axis_value(value: PerAxis, spatial_dims: int | None, what: str, minimum: int = 1) -> PerAxis:
    """Check one per-axis value: positive ints, one per spatial axis when given as a list."""
    values = (value,) if isinstance(value, int) else tuple(value)
    if not isinstance(value, int):
        if not values:
            raise ValueError(f"{what} must be an int or a non-empty list of ints")
        if spatial_dims is not None and len(values) != spatial_dims:
            raise ValueError(
                f"{what} {list(values)} has {len(values)} entries but the model is {spatial_dims}D "
                f"(give one int, or one per spatial axis)"
            )
    for v in values:
        if v < minimum:
            raise ValueError(f"{what} must be >= {minimum}, got {v}")
    return value


def check_axis_entries(values: Sequence[PerAxis] | None, info: ValidationInfo) -> Sequence[PerAxis] | None:
    """Field-validator body for a list of per-axis values (one per level or stage): each entry
    checked with :func:`check_axis_value` against the model's ``spatial_dims``; None passes."""
    for value in values or ():
        check_axis_value(value, spatial_dims_of(info), f"{info.field_name} entry")
    return values


def as_tuple(value: PerAxis, spatial_dims: int) -> tuple[int, ...]:
    """``value`` as one int per spatial axis."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise ValueError(f"expected {spatial_dims} per-axis values, got {list(value)}")
    return value


def prod_per_axis(values: Sequence[PerAxis], spatial_dims: int) -> tuple[int, ...]:
    """Per-axis product of a list of per-axis values (e.g. the total stride of a list of strides)."""
    total = [1] * spatial_dims
    for v in values:
        for a, s in enumerate(as_tuple(v, spatial_dims)):
            total[a] *= s
    return tuple(total)


def is_power_of_two(n: int) -> bool:
    """Whether ``n`` is 1, 2, 4, 8, ..."""
    return n >= 1 and (n & (n - 1)) == 0
