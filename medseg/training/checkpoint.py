"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import CorruptFileError, InputNotFoundError
from medseg.io.atomic import write_bytes_atomic

FORMAT = "medseg-checkpoint/1"

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch random states in a form ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (no arbitrary objects are unpickled).

    Raises:
        InputNotFoundError: no file at ``path``.
        CorruptFileError: not a medseg checkpoint, or damaged.
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"no checkpoint at {p}")
    from medseg.models.serialization import safe_torch_load

    state = safe_torch_load(
        p, map_location, f"cannot load checkpoint {p}", "it is damaged or not a medseg checkpoint"
    )
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptFileError(f"{p} is not a medseg training checkpoint")
    return state


def channel_names(names: Sequence[str] | None, n_channels: int) -> list[str]:
    """The input channels a run records, in the network's order: ``names`` (the manifest's
    ``channels``, MSD ``modality`` or nnU-Net ``channel_names``) when there is one per channel and
    no two are equal ignoring case (files named after them could not be told apart at
    prediction), else ``channel_0``, ``channel_1``...
    """
    if names is None or len(names) != n_channels:
        return [f"channel_{i}" for i in range(n_channels)]
    folded = [str(n).casefold() for n in names]
    if len(set(folded)) < len(folded):
        log.warning("the channel names %s repeat (ignoring case): recorded as channel_0...", list(names))
        return [f"channel_{i}" for i in range(n_channels)]
    return [str(n) for n in names]


def save_inference_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    plan: Any,
    config: Any,
    slice_axis: int | None = None,
    channels: Sequence[str] | None = None,
) -> None:
    """Write a self-contained checkpoint for prediction only (no optimiser state): the model's
    config and weights, the preprocessing plan and the pipeline config, as ``medseg predict`` reads it.

    Args:
        path: Output file (written atomically).
        model: A model from :func:`medseg.models.build_model` (it carries ``medseg_config``).
        plan: The :class:`~medseg.transforms.preprocess.Plan` its inputs go through.
        config: The :class:`~medseg.config.PipelineConfig` (patch size and inference defaults).
        slice_axis: For 2D models on 3D scans, the axis slices are taken along.
        channels: The names of the input channels in order (default ``channel_0``...; see
            :func:`channel_names`).
    """
    save_checkpoint(
        path,
        {
            "model_config": model.medseg_config,
            "model": model.state_dict(),
            "optimizer": {},
            "scaler": {},
            "epoch": 0,
            "step": 0,
            "best": 0.0,
            "rng": rng_state(),
            "plan": plan.to_json(),
            "config": config.model_dump(mode="json"),
            "slice_axis": slice_axis,
            "channels": channel_names(channels, plan.n_channels),
        },
    )
