"""Choosing the torch device from a user's ``--device`` value (engines layer: needs torch)."""

from __future__ import annotations

import functools
import os

import torch

from medseg.errors import MedsegError

__all__ = ["cpu_has_native_bf16", "resolve_device"]


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


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16).

    Read from ``/proc/cpuinfo`` (Linux); ``MEDSEG_CPU_BF16=0`` or ``=1`` overrides the reading.
    Elsewhere: False, so the default stays float32.
    """
    forced = os.environ.get("MEDSEG_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
