"""The inference backends: resolution of ``auto``, refusals, parity with the float32 network."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from medseg.device import cpu_has_native_bf16
from medseg.errors import ConfigError, MissingDependencyError
from medseg.inference.backends import BACKENDS, BackendRequest, Precision, build_runner, resolve_backend
from medseg.inference.backends.onnx_export import exported_onnx, weights_digest
from medseg.models import build_model

CPU = torch.device("cpu")


@pytest.fixture
def bf16(monkeypatch):
    """Pretend the CPU has (or lacks) native bf16."""

    def set_(value: bool) -> None:
        monkeypatch.setenv("MEDSEG_CPU_BF16", "1" if value else "0")
        cpu_has_native_bf16.cache_clear()

    yield set_
    cpu_has_native_bf16.cache_clear()


def _installed(monkeypatch, *present: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (real(name, *a) if name in present else None)
            if name in ("openvino", "onnxruntime")
            else real(name, *a)
        ),
    )


@pytest.mark.parametrize(
    ("present", "native", "expected"),
    [
        (("openvino", "onnxruntime"), True, ("openvino", "bf16")),
        (("openvino", "onnxruntime"), False, ("openvino", "fp32")),
        (("onnxruntime",), True, ("torch", "bf16")),
        ((), False, ("torch", "fp32")),
    ],
)
def test_auto_picks_the_fastest_installed(monkeypatch, bf16, present, native, expected):
    if any(importlib.util.find_spec(p) is None for p in present):
        pytest.skip(f"needs {present} installed")
    _installed(monkeypatch, *present)
    bf16(native)
    spec, precision = resolve_backend("auto", "auto", CPU)
    assert (spec.name, precision.value) == expected


def test_auto_int8_without_openvino_is_onnxruntime(monkeypatch):
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("needs onnxruntime")
    _installed(monkeypatch, "onnxruntime")
    spec, precision = resolve_backend("auto", "int8", CPU)
    assert (spec.name, precision) == ("onnxruntime", Precision.INT8)


def test_cuda_auto_is_torch_bf16():
    spec, precision = resolve_backend("auto", "auto", torch.device("cuda"))
    assert (spec.name, precision) == ("torch", Precision.BF16)


@pytest.mark.parametrize(
    ("backend", "precision", "message"),
    [
        ("tourch", "auto", "did you mean 'torch'"),
        ("torch", "bf61", "did you mean 'bf16'"),
        ("torch", "int8", "torch has no int8 path"),
        ("onnxruntime", "bf16", "onnxruntime has no bf16 path"),
    ],
)
def test_bad_choices_are_refused_in_one_line(backend, precision, message):
    with pytest.raises(ConfigError) as err:
        resolve_backend(backend, precision, CPU)
    text = f"{err.value} {err.value.hint or ''}"
    assert message in text and "\n" not in str(err.value)


def test_cpu_only_engines_refuse_cuda():
    with pytest.raises(ConfigError, match="runs on cpu"):
        resolve_backend("openvino", "fp32", torch.device("cuda"))


def test_missing_package_names_the_extra(monkeypatch):
    _installed(monkeypatch)  # neither engine installed
    with pytest.raises(MissingDependencyError) as err:
        resolve_backend("openvino", "fp32", CPU)
    assert "medseg[openvino]" in (err.value.hint or "")


def _model(nd: int = 3, out: int = 3):
    torch.manual_seed(0)
    return build_model("unet", nd, 1, out, features=[8, 16, 32]).eval()


def _request(model, precision, window, tmp_path, batch=2):
    return BackendRequest(
        model=model,
        device=CPU,
        precision=Precision(precision),
        window=window,
        batch_size=batch,
        cache_dir=tmp_path,
        model_key=weights_digest(model),
    )


FP32 = [name for name, spec in BACKENDS.items() if Precision.FP32 in spec.precisions]


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("name", FP32)
def test_fp32_runners_match_the_network(name, nd, tmp_path):
    spec = BACKENDS[name]
    if not spec.available():
        pytest.skip(f"{spec.requires[0]} is not installed")
    model = _model(nd)
    window = (1, 32, 32, 16) if nd == 3 else (1, 48, 40)
    x = torch.randn(3, *window)  # 3 windows: one more than the compiled batch
    with torch.no_grad():
        ref = model(x)
    runner = build_runner(spec, _request(model, "fp32", window, tmp_path))
    out = runner(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # OpenVINO may pick Winograd convolutions: float32, but summed in another order
    tol = 5e-4 if name == "openvino" else 1e-4
    assert (out - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("name", [n for n, s in BACKENDS.items() if Precision.BF16 in s.precisions])
def test_bf16_runners_stay_close(name, tmp_path):
    spec = BACKENDS[name]
    if not spec.available():
        pytest.skip(f"{spec.requires[0]} is not installed")
    model = _model()
    x = torch.randn(2, 1, 32, 32, 16)
    with torch.no_grad():
        ref = model(x)
    out = build_runner(spec, _request(model, "bf16", (1, 32, 32, 16), tmp_path))(x)
    err = (out - ref).abs().max().item()
    assert 0 < err <= 0.05 * ref.abs().max().item()  # bf16 really ran (not fp32), and stays close


def test_export_is_cached_per_weights(tmp_path):
    model = _model()
    request = _request(model, "fp32", (1, 32, 32, 16), tmp_path)
    first = exported_onnx(request)
    stamp = first.stat().st_mtime_ns
    assert exported_onnx(request) == first and first.stat().st_mtime_ns == stamp
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    other = exported_onnx(_request(model, "fp32", (1, 32, 32, 16), tmp_path))
    assert other != first and other.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class _Branchy(torch.nn.Module):
    """Output depends on the input through a Python ``if``: tracing keeps one branch only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * 2 if x.max() > 0.5 else y


def test_an_export_that_does_not_reproduce_the_network_is_refused(tmp_path):
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    from medseg.errors import MedsegError

    torch.manual_seed(0)
    model = _Branchy().eval()  # traced on zeros: the "y" branch; checked on noise: "y * 2"
    request = _request(model, "fp32", (1, 8, 8, 8), tmp_path)
    with pytest.raises(MedsegError, match="does not reproduce"):
        build_runner(BACKENDS["onnxruntime"], request)
    assert not list(tmp_path.glob("*.onnx"))  # the wrong file is not left for later runs


def test_models_differing_only_in_a_constant_get_their_own_export(tmp_path):
    """Two weightless models that differ in a constant (a threshold) share no cached export."""
    from tests.fixtures.models import Threshold

    low, high = Threshold(0.0), Threshold(0.5)
    assert weights_digest(low) != weights_digest(high)
    assert weights_digest(low) == weights_digest(Threshold(0.0))
    spec = BACKENDS["onnxruntime"]
    if not spec.available():
        pytest.skip("onnxruntime is not installed")
    x = torch.full((1, 1, 8, 8, 8), 0.25)
    outs = [build_runner(spec, _request(m, "fp32", (1, 8, 8, 8), tmp_path))(x) for m in (low, high)]
    assert outs[0].argmax(1).eq(1).all() and outs[1].argmax(1).eq(0).all()
