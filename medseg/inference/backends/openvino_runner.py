"""The OpenVINO backend (CPU plugin).

The exported ONNX model is compiled for one window at a time (static shapes are the fastest on
a CPU) in OpenVINO's throughput mode: up to one inference stream per core, no more streams than a
call brings windows, the cores shared out among them; the windows of a call are spread over the
streams through an ``AsyncInferQueue``. No compute is spent on padding a batch, and on 2 cores a
probe of the large-CT network ran about 20% faster than one request using both cores. ``bf16``
sets OpenVINO's inference precision hint (it runs where the CPU has native bf16); ``int8``
compiles the calibrated QDQ model, whose quantised convolutions OpenVINO runs in int8 (VNNI).
Compiled blobs are cached in the export folder, so later processes start faster.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.inference.backends.files import model_file
from medseg.inference.backends.onnx_export import cache_folder
from medseg.inference.backends.registry import BackendRequest, Precision

log = logging.getLogger(__name__)

__all__ = ["OpenVinoRunner", "build"]


class OpenVinoRunner:
    """Run an ONNX file with OpenVINO, one window per request, ``threads`` streams in parallel.

    Args:
        path: The ONNX model (input ``[N, C, *roi]``).
        window: ``[C, *roi]``.
        precision: ``fp32``, ``bf16`` or ``int8`` (the file is QDQ for int8).
        threads: CPU threads, shared out over the streams.
        cache_dir: OpenVINO's compiled-model cache.
        max_windows: The most windows a call usually brings (the sliding-window batch, times the
            mirrored copies of TTA): there are ``min(threads, max_windows)`` streams, so a many-core
            server keeps every core busy with a few windows per call.

    Raises:
        RuntimeError: OpenVINO cannot compile the model (raised by OpenVINO).
    """

    backend = "openvino"

    def __init__(
        self,
        path: Path,
        window: tuple[int, ...],
        precision: Precision,
        threads: int,
        cache_dir: Path | None = None,
        max_windows: int | None = None,
    ) -> None:
        import openvino as ov

        core = ov.Core()
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        model = core.read_model(str(path))
        model.reshape([1, *window])
        threads = max(1, int(threads))
        self.streams = max(1, min(threads, max_windows or threads))
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision is Precision.BF16 else "f32",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": threads,
        }
        self.compiled = core.compile_model(model, "CPU", config)
        actual = str(self.compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        if precision is Precision.BF16 and "bf" not in actual:  # bfloat16, or f32 without native bf16
            log.warning("OpenVINO runs float32 here (this CPU has no native bf16)")
            precision = Precision.FP32
        self.queue = ov.AsyncInferQueue(self.compiled, self.streams)
        self.queue.set_callback(self._done)
        self.window = tuple(window)
        self.precision = Precision(precision)
        self.path = path
        self._out: np.ndarray | None = None

    def _done(self, request: Any, index: int) -> None:
        assert self._out is not None
        self._out[index] = request.get_output_tensor(0).data[0]  # copied: the request reuses its buffer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out_shape = tuple(self.compiled.output(0).get_partial_shape().to_shape())[1:]
        self._out = np.empty((arr.shape[0], *out_shape), dtype=np.float32)
        for i in range(arr.shape[0]):
            self.queue.start_async({0: arr[i : i + 1]}, userdata=i)
        self.queue.wait_all()
        out, self._out = self._out, None
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"OpenVinoRunner({self.path.name}, {self.precision.value}, {self.streams} streams)"


def build(request: BackendRequest) -> OpenVinoRunner:
    """The OpenVINO runner of ``request`` (exports, and for int8 calibrates, once)."""
    path = model_file(request)
    cache = cache_folder(request) / "openvino-cache"
    return OpenVinoRunner(
        path, request.window, request.precision, torch.get_num_threads(), cache, request.batch_size
    )
