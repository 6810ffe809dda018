"""``resolve_device``: the ``--device`` value to a torch device."""

from __future__ import annotations

import pytest
import torch

from medseg.device import resolve_device
from medseg.errors import MedsegError


def test_cpu_and_auto_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_picks_this_rank_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_cuda_without_gpu_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MedsegError, match="no CUDA GPU") as info:
        resolve_device("cuda:0")
    assert "--device cpu" in info.value.hint


def test_unknown_device_is_a_user_error() -> None:
    with pytest.raises(MedsegError, match="unknown device 'tpu'"):
        resolve_device("tpu")
