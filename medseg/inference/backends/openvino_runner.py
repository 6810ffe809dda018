"""The OpenVINO backend (CPU plugin).

The exported ONNX model is compiled for a fixed batch of windows (static shapes are the
fastest on a CPU); a call with fewer windows is padded, one with more is split. ``bf16`` sets
OpenVINO's inference precision hint (it runs where the CPU has native bf16); ``int8`` compiles
the calibrated QDQ model, whose quantised layers OpenVINO runs in int8 (VNNI). Compiled blobs
are cached in the export folder, so later processes start faster.
"""

from __future__ import annotations

from pathlib import Path

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
        batch_size: The batch the model is compiled for.
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

        core = ov.Core()
        model = core.read_model(str(path))
        model.reshape([batch_size, *window])
        hint = "bf16" if precision is Precision.BF16 else "f32"
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.batch_size = batch_size
        self.window = tuple(window)
        self.precision = Precision(precision)
        self.path = path

    def _run(self, arr: np.ndarray) -> np.ndarray:
        n = arr.shape[0]
        if n < self.batch_size:
            arr = np.concatenate([arr, np.zeros((self.batch_size - n, *arr.shape[1:]), arr.dtype)])
        out = self.request.infer({0: arr})[0]
        return np.array(out[:n], dtype=np.float32, copy=True)  # the request reuses its buffer

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
