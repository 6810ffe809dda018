"""The torch backend: eager PyTorch, tuned for inference.

* channels-last memory (``channels_last_3d`` for 3D windows): oneDNN's convolutions run
  without reordering, and medseg's instance norm keeps that layout
  (:func:`medseg.models._blocks._instance_norm_channels_last`);
* ``torch.inference_mode``;
* bf16 autocast on a CPU with native bf16 (AVX512-BF16, AMX) or on CUDA, outputs in float32;
* on CUDA, ``cudnn.benchmark`` (the window shape never changes).
"""

from __future__ import annotations

import torch

from medseg.inference.backends.registry import BackendRequest, Precision
from medseg.models._blocks import channels_last_inference

__all__ = ["TorchRunner", "build"]


def _memory_format(ndim: int) -> torch.memory_format:
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim, torch.contiguous_format)


class TorchRunner:
    """Run a module on batches of windows (see the module docstring).

    Args:
        model: The network; moved to ``device``, put in eval mode and channels-last here.
        device: Where it runs.
        precision: ``fp32`` or ``bf16``.
    """

    backend = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: Precision) -> None:
        self.device = device
        self.precision = Precision(precision)
        self.model = model.to(device).eval()
        self._format: torch.memory_format | None = None  # set from the first batch's rank
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._format is None:
            self._format = _memory_format(x.ndim)
            self.model = self.model.to(memory_format=self._format)
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self._format)
        bf16 = self.precision is Precision.BF16
        with channels_last_inference(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = self.model(x)
        if isinstance(y, list | tuple):
            y = y[0]
        return y.float()

    def __repr__(self) -> str:
        return f"TorchRunner({self.device}, {self.precision.value})"


def build(request: BackendRequest) -> TorchRunner:
    """The torch runner of ``request``."""
    return TorchRunner(request.model, request.device, request.precision)
