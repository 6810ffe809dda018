"""The ONNX Runtime backend (CPU execution provider).

fp32 runs the exported model (:mod:`.onnx_export`); int8 runs the QDQ model calibrated on
training patches (:mod:`.quantize`). Threads follow ``torch.get_num_threads()``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medseg.inference.backends.files import model_file
from medseg.inference.backends.registry import BackendRequest, Precision

__all__ = ["OnnxRuntimeRunner", "build"]


class OnnxRuntimeRunner:
    """Run an ONNX file with ONNX Runtime on batches of windows.

    Args:
        path: The ONNX model (input ``windows`` ``[N, C, *roi]``, output ``logits``).
        precision: What the file computes in (recorded only).
        threads: Intra-op threads.
    """

    backend = "onnxruntime"

    def __init__(self, path: Path, precision: Precision, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.precision = Precision(precision)
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])

    def __repr__(self) -> str:
        return f"OnnxRuntimeRunner({self.path.name}, {self.precision.value})"


def build(request: BackendRequest) -> OnnxRuntimeRunner:
    """The ONNX Runtime runner of ``request`` (exports, and for int8 calibrates, once)."""
    return OnnxRuntimeRunner(model_file(request), request.precision, torch.get_num_threads())
