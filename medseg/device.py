"""Choosing the torch device from a user's ``--device`` value (engines layer: needs torch)."""

from __future__ import annotations

import os

import torch

from medseg.errors import MedsegError

__all__ = ["resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a user error.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The torch device; under ``torchrun``, ``auto`` picks this rank's GPU (``LOCAL_RANK``).

    Raises:
        MedsegError: CUDA was asked for but is not available, or the name is unknown.
    """
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per torchrun rank
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MedsegError(
            "--device cuda was asked for but no CUDA GPU is available",
            hint="use --device cpu or --device auto",
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise MedsegError(f"unknown device {device!r}", hint="use auto, cpu or cuda")
    return torch.device(device)
