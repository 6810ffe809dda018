"""The ONNX file an ONNX engine runs: the float32 export, or the calibrated int8 model."""

from __future__ import annotations

from pathlib import Path

from medseg.inference.backends.onnx_export import exported_onnx
from medseg.inference.backends.quantize import quantized_onnx
from medseg.inference.backends.registry import BackendRequest, Precision

__all__ = ["model_file"]


def model_file(request: BackendRequest) -> Path:
    """The ONNX file for ``request``: the calibrated int8 QDQ model for ``int8``, else the float32
    export (each built once and cached; see :mod:`.onnx_export` and :mod:`.quantize`).

    Raises:
        MedsegError: the network does not export, or int8 calibration data is missing.
    """
    if request.precision is Precision.INT8:
        return quantized_onnx(request)
    return exported_onnx(request)
