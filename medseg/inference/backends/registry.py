"""The table of inference backends: which engine runs the network, at which precision.

A backend turns a trained :class:`torch.nn.Module` into a *runner*: a callable that maps a
batch of windows ``[N, C, *roi]`` (float32, CPU or CUDA) to logits ``[N, K, *roi]`` (float32).
The sliding window, mirror TTA and the rest of prediction only ever call runners, so adding an
engine costs one module with a ``build(request) -> Runner`` function and one
:class:`BackendSpec` row in :data:`BACKENDS`.

Precisions:

* ``fp32``: float32 throughout (the reference);
* ``bf16``: bfloat16 arithmetic, float32 accumulation, where the CPU has native bf16
  (AVX512-BF16 or AMX) or on CUDA;
* ``int8``: post-training static quantisation (QDQ ONNX, calibrated on training patches;
  see :mod:`medseg.inference.backends.quantize`).

``auto`` (the default of ``medseg predict``) resolves to the fastest combination that matched
fp32 within the tolerance of ``docs/benchmarks.md`` (at most 0.1% of labels changed): on a CPU,
OpenVINO when installed (bf16 where the CPU has it, else fp32), otherwise the torch path (bf16
where native, else fp32); on CUDA, the torch path with bf16 autocast.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

import torch

from medseg.errors import ConfigError, MissingDependencyError

__all__ = [
    "BACKENDS",
    "BackendRequest",
    "BackendSpec",
    "Precision",
    "Runner",
    "build_runner",
    "resolve_backend",
]


class Precision(str, Enum):
    """Arithmetic precision of a runner."""

    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"


class Runner(Protocol):
    """A network ready to run: ``[N, C, *roi]`` float32 in, logits ``[N, K, *roi]`` float32 out."""

    backend: str
    precision: Precision

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class BackendRequest:
    """What a backend needs to build a runner.

    Attributes:
        model: The network (a :func:`~medseg.models.build_model` module), on the CPU or ``device``.
        device: Where inputs arrive and outputs are returned.
        precision: The resolved precision.
        window: ``[C, *roi]``: the shape of one window (sliding windows always have it).
        batch_size: Windows per call the runner is tuned for (ONNX engines are compiled for it).
        cache_dir: Where exported models are cached (a run folder's ``export/``); ``None``: a
            temporary folder, exported anew.
        model_key: Identifies the weights (a digest of the checkpoint), part of cached file names.
        calibration: For int8: yields float32 batches ``[n, C, *roi]`` of training patches.
    """

    model: torch.nn.Module
    device: torch.device
    precision: Precision
    window: tuple[int, ...]
    batch_size: int = 2
    cache_dir: Path | None = None
    model_key: str = "model"
    calibration: Callable[[], Iterable[torch.Tensor]] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BackendSpec:
    """One row of :data:`BACKENDS`.

    Attributes:
        name: The value of ``--backend``.
        description: One line for ``--help`` and the docs.
        module: The medseg module with ``build(request) -> Runner`` (imported only when used).
        precisions: Precisions it runs.
        devices: Device types it runs on (``"cpu"``, ``"cuda"``).
        requires: An importable package it needs, and the pip extra that installs it.
    """

    name: str
    description: str
    module: str
    precisions: tuple[Precision, ...]
    devices: tuple[str, ...] = ("cpu",)
    requires: tuple[str, str] | None = None

    def available(self) -> bool:
        """Whether its package is installed."""
        return self.requires is None or importlib.util.find_spec(self.requires[0]) is not None

    def check(self, precision: Precision, device: torch.device) -> None:
        """Raise :class:`ConfigError` / :class:`MissingDependencyError` if it cannot run here."""
        if device.type not in self.devices:
            raise ConfigError(
                f"--backend {self.name} runs on {' or '.join(self.devices)}, not {device.type}",
                hint="use --backend torch on a GPU",
            )
        if precision not in self.precisions:
            names = ", ".join(p.value for p in self.precisions)
            raise ConfigError(
                f"--backend {self.name} has no {precision.value} path (it runs {names})",
                hint="choose another --precision or --backend (docs/inference.md)",
            )
        if not self.available():
            package, extra = self.requires  # type: ignore[misc]
            raise MissingDependencyError(
                f"--backend {self.name} needs the {package} package",
                hint=f"pip install 'medseg[{extra}]'",
            )
        if precision is Precision.INT8 and importlib.util.find_spec("onnxruntime") is None:
            raise MissingDependencyError(
                "--precision int8 needs onnxruntime (its quantisation tools calibrate the model)",
                hint="pip install 'medseg[onnx]'",
            )


#: Every inference backend, by ``--backend`` name.
BACKENDS: dict[str, BackendSpec] = {
    "torch": BackendSpec(
        name="torch",
        description="PyTorch eager: channels-last memory, inference mode, bf16 autocast (CPU with native "
        "bf16, or CUDA)",
        module="medseg.inference.backends.torch_runner",
        precisions=(Precision.FP32, Precision.BF16),
        devices=("cpu", "cuda"),
    ),
    "onnxruntime": BackendSpec(
        name="onnxruntime",
        description="ONNX Runtime CPU execution provider on the model exported once per run folder; int8 "
        "runs the calibrated QDQ model",
        module="medseg.inference.backends.onnxruntime_runner",
        precisions=(Precision.FP32, Precision.INT8),
        requires=("onnxruntime", "onnx"),
    ),
    "openvino": BackendSpec(
        name="openvino",
        description="OpenVINO CPU plugin on the exported ONNX model (bf16 inference precision where the CPU "
        "has it; int8 runs the calibrated QDQ model)",
        module="medseg.inference.backends.openvino_runner",
        precisions=(Precision.FP32, Precision.BF16, Precision.INT8),
        requires=("openvino", "openvino"),
    ),
}


def _suggest(value: str, names: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(value, list(names), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def resolve_backend(backend: str, precision: str, device: torch.device) -> tuple[BackendSpec, Precision]:
    """Turn ``--backend`` / ``--precision`` values (``auto`` allowed) into a checked pair.

    Raises:
        ConfigError: an unknown name (with "did you mean"), or a pair that cannot run here.
        MissingDependencyError: the backend's package is not installed.
    """
    from medseg.device import cpu_has_native_bf16

    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(
            f"unknown backend {backend!r}",
            hint=f"{_suggest(backend, BACKENDS)}choose auto, {', '.join(BACKENDS)}",
        )
    names = [p.value for p in Precision]
    if precision != "auto" and precision not in names:
        raise ConfigError(
            f"unknown precision {precision!r}",
            hint=f"{_suggest(precision, names)}choose auto, {', '.join(names)}",
        )
    if device.type == "cuda":  # an older GPU (T4, V100) would run bf16 autocast as float32
        native_bf16 = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
    else:
        native_bf16 = cpu_has_native_bf16()
    if backend == "auto":
        if device.type == "cuda":
            backend = "torch"
        elif BACKENDS["openvino"].available():
            backend = "openvino"
        elif precision == "int8":
            backend = "onnxruntime"
        else:
            backend = "torch"
    spec = BACKENDS[backend]
    if precision == "auto":
        prec = Precision.BF16 if native_bf16 and Precision.BF16 in spec.precisions else Precision.FP32
    else:
        prec = Precision(precision)
    spec.check(prec, device)
    return spec, prec


def build_runner(spec: BackendSpec, request: BackendRequest) -> Runner:
    """Build the runner of ``spec`` for ``request`` (imports the backend's module now)."""
    return importlib.import_module(spec.module).build(request)
