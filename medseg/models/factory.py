"""Build registered networks by name, validate their parameters, size them up."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from medseg.errors import ConfigError
from medseg.models._params import ModelParams
from medseg.models._wrapper import SegmentationModel
from medseg.models.registry import MODELS, ModelSpec

log = logging.getLogger(__name__)


def list_models() -> list[ModelSpec]:
    """Every registered network (name, family, paper, capabilities, parameters with defaults)."""
    return list(MODELS.values())


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    spec = MODELS.get(str(name).strip().lower()) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(
            f"unknown model {name!r}",
            hint=f"known models: {', '.join(MODELS)} (see `medseg models`)",
        )
    return spec


def _check_int(value: Any, what: str, allowed: tuple[int, ...] | None = None, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{what} must be one of {', '.join(map(str, allowed))}, got {value}")
    if value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {value}")
    return value


def validate_params(name: str, spatial_dims: int, params: Mapping[str, Any] | None = None) -> ModelParams:
    """Validate and resolve (fill defaults of) the build parameters of model ``name``.

    Raises:
        ConfigError: unknown name, unsupported ``spatial_dims``, unknown or invalid parameter
            (the message names the parameter and lists the valid ones).
    """
    spec = get_spec(name)
    _check_int(spatial_dims, "spatial_dims", allowed=spec.spatial_dims)
    valid = ", ".join(spec.params_model.model_fields)
    try:
        return spec.params_model.model_validate(dict(params or {}), context={"spatial_dims": spatial_dims})
    except ValidationError as exc:
        raise ConfigError(
            f"model '{spec.name}': {'; '.join(_describe_errors(exc))}",
            hint=f"valid parameters of '{spec.name}': {valid}",
        ) from None


def _describe_errors(exc: ValidationError) -> list[str]:
    """One phrase per invalid parameter; the alternatives of a union (int or per-axis list) are
    reported once, as the union."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for err in exc.errors():
        parts = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS))]
        loc = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(parts)
        )
        grouped.setdefault(loc, []).append(err)
    problems = []
    for loc, errs in grouped.items():
        if loc and any(other != loc and other.startswith(loc + "[") for other in grouped):
            continue  # a union member failed deeper down; that error is the informative one
        err = errs[0]
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown parameter '{loc}'")
            continue
        if len(errs) > 1:
            msg = "must be an int or a list of ints"
        else:
            msg = err["msg"].removeprefix("Value error, ").replace("a valid tuple", "a list")
        where = f"parameter '{loc}'" if loc else "parameters"
        shown = f" (got {err['input']!r})" if loc else ""
        problems.append(f"invalid {where}: {msg}{shown}")
    return problems


_TYPE_TAGS = {"int", "float", "str", "bool", "none", "list", "tuple"}


def build_model(
    name: str, spatial_dims: int, in_channels: int, out_channels: int, **params: Any
) -> SegmentationModel:
    """Build a registered network, ready to train from scratch (no pretrained weights).

    Args:
        name: registry name (see :func:`list_models` / ``medseg models``).
        spatial_dims: 2 or 3.
        in_channels: input channels (modalities).
        out_channels: output channels (classes, background included).
        **params: the family's parameters (validated; unknown ones are an error).

    Returns:
        A :class:`~medseg.models._wrapper.SegmentationModel`: ``forward(x[B, C_in, *spatial])``
        gives logits ``[B, out_channels, *spatial]`` for any spatial size (padded internally to
        :attr:`divisor` and cropped back); with ``deep_supervision=True`` a training-mode forward
        gives ``[full_res, aux1, ...]`` (coarser last). ``model.medseg_config`` rebuilds it.

    Raises:
        ConfigError: unknown name, bad ``spatial_dims``/channel counts, unknown or invalid params.
    """
    spec = get_spec(name)
    in_channels = _check_int(in_channels, "in_channels")
    out_channels = _check_int(out_channels, "out_channels")
    p = validate_params(spec.name, spatial_dims, params)
    net = spec.builder(spatial_dims, in_channels, out_channels, p)
    config = {
        "name": spec.name,
        "spatial_dims": spatial_dims,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "params": p.model_dump(mode="json"),
    }
    model = SegmentationModel(net, p.divisor(spatial_dims), config, p.deep_supervision_scales(spatial_dims))
    log.debug("built %s %dD (%d parameters)", spec.name, spatial_dims, count_parameters(model))
    return model


def build_from_config(config: Mapping[str, Any]) -> SegmentationModel:
    """Rebuild a model from its ``medseg_config`` dict (name, spatial_dims, channels, params).

    Raises:
        ConfigError: a config that is not such a dict, or whose values are invalid.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"a model config must be a mapping, got {type(config).__name__}")
    missing = [k for k in ("name", "spatial_dims", "in_channels", "out_channels") if k not in config]
    if missing:
        raise ConfigError(f"model config lacks {', '.join(missing)}")
    params = config.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"model config 'params' must be a mapping, got {type(params).__name__}")
    return build_model(
        config["name"], config["spatial_dims"], config["in_channels"], config["out_channels"], **params
    )


def required_divisor(model_or_config: nn.Module | Mapping[str, Any]) -> tuple[int, ...]:
    """Per-axis multiple the network needs its input size to be (inputs of other sizes are padded
    to it internally, which costs compute: pick patch sizes that are multiples of it).

    Args:
        model_or_config: a built model (its ``divisor`` attribute) or a config dict with ``name``,
            ``spatial_dims`` and optional ``params`` (like ``model.medseg_config``).
    """
    if isinstance(model_or_config, nn.Module):
        divisor = getattr(model_or_config, "divisor", None)
        if divisor is None:
            raise ValueError("this module was not built by medseg.models.build_model (no 'divisor')")
        return tuple(divisor)
    cfg = model_or_config
    if "name" not in cfg or "spatial_dims" not in cfg:
        raise ConfigError("required_divisor needs a config with 'name' and 'spatial_dims'")
    p = validate_params(cfg["name"], cfg["spatial_dims"], cfg.get("params") or {})
    return p.divisor(int(cfg["spatial_dims"]))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_count(name: str, spatial_dims: int, in_channels: int, out_channels: int, **params: Any) -> int:
    """Trainable parameters of a model built with this config, without allocating its weights
    (the model is built on PyTorch's ``meta`` device)."""
    with torch.device("meta"):
        model = build_model(name, spatial_dims, in_channels, out_channels, **params)
    return count_parameters(model)


def describe_models(
    spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2
) -> list[dict[str, Any]]:
    """Every registered model as a JSON-able dict, with its parameter count and input divisor for
    the given config (defaults of every parameter). Behind ``medseg models``."""
    out = []
    for spec in list_models():
        entry = spec.to_dict()
        if spatial_dims in spec.spatial_dims:
            entry["parameter_count"] = parameter_count(spec.name, spatial_dims, in_channels, out_channels)
            entry["divisor"] = list(required_divisor({"name": spec.name, "spatial_dims": spatial_dims}))
        else:
            entry["parameter_count"] = None
            entry["divisor"] = None
        entry["config"] = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
        }
        out.append(entry)
    return out
