"""What the registry knows about a network: :class:`ModelSpec`, one row of :data:`~.registry.MODELS`.

Besides the builder and its parameter model, every spec carries small example
parameters (:attr:`ModelSpec.example_params`, plus named
:attr:`ModelSpec.example_variants` for ablations and anisotropic or
deep-supervised configurations). They are validated against the parameter
model when the spec is created, and they drive the shared contract test, the
registry and learning tests, ``medseg models`` and the generated parameter
tables of ``docs/models.md``, so a new network needs its folder and one row in
the table, nothing else.
"""

from __future__ import annotations

import copy
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticUndefined
from torch import nn

from medseg.models._params import ModelParams

Builder = Callable[[int, int, int, Any], nn.Module]

#: Example parameters: one dict for every dimensionality, or ``{spatial_dims: dict}``.
ExampleParams = Mapping[str, Any] | Mapping[int, Mapping[str, Any]]


@dataclass(frozen=True)
class ParamSpec:
    """One build parameter of a model: name, type, default and what it does."""

    name: str
    type: str
    default: Any
    description: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description."""
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
        family: the folder under ``medseg/models/`` it lives in (``"unet"``, ``"deeplab"``...).
        description: one line.
        paper: the reference it follows.
        params_model: the pydantic model validating its parameters.
        builder: ``builder(spatial_dims, in_channels, out_channels, params) -> nn.Module``.
        example_params: small, fast parameters (a few channels, shallow) that still learn the
            synthetic task of ``tests/models/test_learning.py``: one dict, or ``{spatial_dims: dict}``.
        example_variants: more named examples the contract test checks (ablations, anisotropic
            strides, deep supervision), each like ``example_params``.
        spatial_dims: the dimensionalities it can be built for.
        deep_supervision: whether it can return auxiliary outputs (an example must show it).
        onnx: whether it exports to ONNX (checked by the contract test).
        encoder_prefixes: module paths inside the network (``SegmentationModel.net``) that make up
            its encoder, e.g. ``("encoder",)``: ``training.freeze_encoder_epochs`` freezes the
            parameters under them (:mod:`medseg.training.transfer`); a test checks that they name
            some but not all parameters of every example.
    """

    name: str
    family: str
    description: str
    paper: str
    params_model: type[ModelParams]
    builder: Builder = field(repr=False)
    example_params: ExampleParams = field(default_factory=dict, repr=False)
    example_variants: Mapping[str, ExampleParams] = field(default_factory=dict, repr=False)
    spatial_dims: tuple[int, ...] = (2, 3)
    deep_supervision: bool = False
    onnx: bool = True
    encoder_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for dims in self.spatial_dims:
            for variant, params in self.examples(dims).items():
                try:
                    self.params_model.model_validate(params, context={"spatial_dims": dims})
                except ValidationError as exc:
                    problems = "; ".join(f"{e['loc']}: {e['msg']}" for e in exc.errors())
                    raise ValueError(
                        f"model {self.name!r}: example {variant!r} is invalid in {dims}D: {problems}"
                    ) from None

    @property
    def supports_2d(self) -> bool:
        """Whether it can be built in 2D."""
        return 2 in self.spatial_dims

    @property
    def supports_3d(self) -> bool:
        """Whether it can be built in 3D."""
        return 3 in self.spatial_dims

    def example(self, spatial_dims: int, variant: str | None = None) -> dict[str, Any]:
        """A fresh copy of the example parameters (or of the named variant) for ``spatial_dims``.

        Raises:
            KeyError: an unknown variant, or per-dims examples lacking ``spatial_dims``.
        """
        params = self.example_params if variant is None else self.example_variants[variant]
        if params and all(isinstance(k, int) for k in params):
            params = params[spatial_dims]  # type: ignore[index]
        return copy.deepcopy(dict(params))

    def examples(self, spatial_dims: int) -> dict[str, dict[str, Any]]:
        """Every example for ``spatial_dims`` by name: ``"example"``, then the variants."""
        out = {"example": self.example(spatial_dims)}
        out.update({name: self.example(spatial_dims, name) for name in self.example_variants})
        return out

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
            "example_params": {str(d): self.example(d) for d in self.spatial_dims},
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
