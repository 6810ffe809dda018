"""Save a built model with its config, and load it back by itself.

The file is a ``torch.save`` of ``{"format": "medseg-model/1", "config":
model.medseg_config, "state_dict": ...}``, written atomically. Loading uses
``torch.load(weights_only=True)`` (no arbitrary code from the file) and
rebuilds the network through the registry from the stored config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError, CorruptFileError, InputNotFoundError
from medseg.io.atomic import atomic_output
from medseg.models.factory import build_from_config

log = logging.getLogger(__name__)

#: Value of the ``format`` key of a medseg model file.
MODEL_FORMAT = "medseg-model/1"


def save_model(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (built by :func:`~medseg.models.build_model`) and its config to ``path``.

    Raises:
        ValueError: a module without ``medseg_config``.
    """
    config = getattr(model, "medseg_config", None)
    if not isinstance(config, dict):
        raise ValueError("save_model needs a model built by medseg.models.build_model (no medseg_config)")
    payload = {
        "format": MODEL_FORMAT,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    log.info("saved model %s to %s", config.get("name"), path)
    return path


def safe_torch_load(path: str | Path, map_location: Any, message: str, hint: str) -> Any:
    """``torch.load(..., weights_only=True)``: tensors and plain containers only, never arbitrary
    pickled objects.

    Raises:
        CorruptFileError: ``message: <torch's first line>`` with ``hint`` for any unreadable file
            (torch raises many types for a bad file: pickle, zip, EOF, runtime).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptFileError(f"{message}: {reason[:200]}", hint=hint) from None


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild and load a model written by :func:`save_model` (in eval mode).

    Raises:
        InputNotFoundError: no such file.
        CorruptFileError: not a readable medseg model file, or weights that do not fit its config.
        ConfigError: a stored config that the registry rejects (e.g. an unknown model name).
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"model file not found: {path}")
    payload: Any = safe_torch_load(
        path,
        map_location,
        f"cannot read model file {path}",
        "the file is damaged or not a medseg model; save it again with medseg.models.save_model",
    )
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CorruptFileError(
            f"{path} is not a medseg model file (format {found!r}, expected {MODEL_FORMAT!r})",
            hint="write model files with medseg.models.save_model",
        )
    if not isinstance(payload.get("state_dict"), dict):
        raise CorruptFileError(f"{path} has no state_dict")
    try:
        model = build_from_config(payload.get("config"))
    except ConfigError as exc:
        raise ConfigError(f"model file {path}: {exc.message}", hint=exc.hint) from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptFileError(
            f"weights in {path} do not fit its model config: {first[:200]}",
            hint="the file is damaged or was edited; save it again with medseg.models.save_model",
        ) from None
    return model.to(map_location).eval()
