"""The OpenVINO backend (CPU plugin).

The exported ONNX model is compiled for static shapes (the fastest on a CPU): once for the
configured batch of windows, and on first use for each smaller count a call brings (the last
windows of a scan, or one small scan's mirrored copies), so no compute is spent on padding; a call
with more windows is split. ``bf16`` sets
OpenVINO's inference precision hint (it runs where the CPU has native bf16); ``int8`` compiles
the calibrated QDQ model, whose quantised layers OpenVINO runs in int8 (VNNI). Compiled blobs
are cached in the export folder, so later processes start faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.inference.backends.onnx_export import cache_folder, exported_onnx
from medseg.inference.backends.registry import BackendRequest, Precision

__all__ = ["OpenVinoRunner", "build"]


class OpenVinoRunner:
    """Run an ONNX file with OpenVINO on batches of windows.

    Args:
        path: The ONNX model (input ``[N, C, *roi]``).
        window: ``[C, *roi]``.
        batch_size: The largest batch per call (larger calls are split).
        precision: ``fp32``, ``bf16`` or ``int8`` (the file is QDQ for int8).
        threads: Inference threads.
        cache_dir: OpenVINO's compiled-model cache.
    """

    backend = "openvino"

    def __init__(
        self,
        path: Path,
        window: tuple[int, ...],
        batch_size: int,
        precision: Precision,
        threads: int,
        cache_dir: Path | None = None,
    ) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        hint = "bf16" if precision is Precision.BF16 else "f32"
        self.config = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.batch_size = batch_size
        self.window = tuple(window)
        self.precision = Precision(precision)
        self.path = path
        self._requests: dict[int, Any] = {}
        self._request(batch_size)  # compile the common shape now: errors surface before any case

    def _request(self, n: int) -> Any:
        """The infer request of a model compiled for exactly ``n`` windows (compiled on first use)."""
        if n not in self._requests:
            model = self.model.clone()
            model.reshape([n, *self.window])
            self._requests[n] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        return self._requests[n]

    def _run(self, arr: np.ndarray) -> np.ndarray:
        out = self._request(arr.shape[0]).infer({0: arr})[0]
        return np.array(out, dtype=np.float32, copy=True)  # the request reuses its buffer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        parts = [self._run(arr[i : i + self.batch_size]) for i in range(0, arr.shape[0], self.batch_size)]
        return torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def __repr__(self) -> str:
        return f"OpenVinoRunner({self.path.name}, {self.precision.value}, batch {self.batch_size})"


def build(request: BackendRequest) -> OpenVinoRunner:
    """The OpenVINO runner of ``request`` (exports, and for int8 calibrates, once)."""
    if request.precision is Precision.INT8:
        from medseg.inference.backends.quantize import quantized_onnx

        path = quantized_onnx(request)
    else:
        path = exported_onnx(request)
    cache = cache_folder(request) / "openvino-cache"
    return OpenVinoRunner(
        path, request.window, request.batch_size, request.precision, torch.get_num_threads(), cache
    )
