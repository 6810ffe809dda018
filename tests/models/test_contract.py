"""The contract every registered model must meet, checked on every example of every registry entry
(``ModelSpec.example_params`` and ``example_variants``) in each dimensionality it supports.

For each (example, dimensionality, input size) -- sizes include non-cubic ones
and ones that are not a multiple of the network's stride:
- logits have the input's spatial shape and ``out_channels`` channels;
- deep supervision (where built with it) gives ``[full, aux1, ...]`` in training, coarser last,
  and a single tensor in eval mode;
- the backward pass gives a finite gradient to every parameter;
- eval mode is deterministic and batch elements do not influence each other;
- a ``state_dict`` round trip through ``torch.save``/``torch.load(weights_only=True)`` reproduces the
  outputs exactly;
- the ONNX export (onnxruntime) matches PyTorch within 1e-4 (max abs).

The examples are small (few channels, shallow transformers) so the whole contract runs on a CPU.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from medseg.models import MODELS, build_model, required_divisor

ort = pytest.importorskip("onnxruntime")

torch.set_num_threads(2)

# (case id, registry name, spatial_dims, params): every example of every registered model
CASES: list[tuple[str, str, int, dict[str, Any]]] = [
    (name if variant == "example" else f"{name}-{variant}", name, dims, params)
    for name, spec in MODELS.items()
    for dims in spec.spatial_dims
    for variant, params in spec.examples(dims).items()
]

SIZES = {
    2: [(2, 3, 45, 61), (1, 2, 32, 16)],
    3: [(1, 1, 20, 27, 33), (2, 2, 16, 24, 8)],
}
OUT_CHANNELS = 3

PARAMS = [
    pytest.param(name, params, dims, shape, id=f"{case_id}-{dims}d-{'x'.join(map(str, shape))}")
    for case_id, name, dims, params in CASES
    for shape in SIZES[dims]
]


@pytest.mark.parametrize("name", list(MODELS))
def test_deep_supervision_claim_is_exercised(name):
    """A model that claims deep supervision has an example that returns auxiliary outputs (so the
    contract checks them); one that does not claim it has none."""
    spec = MODELS[name]
    for dims in spec.spatial_dims:
        with_aux = [
            variant
            for variant, params in spec.examples(dims).items()
            if build_model(name, dims, 1, OUT_CHANNELS, **params).deep_supervision_scales
        ]
        assert bool(with_aux) == spec.deep_supervision, f"{name} {dims}D: examples with aux {with_aux}"


def _build(name: str, params: dict[str, Any], dims: int, in_channels: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, dims, in_channels, OUT_CHANNELS, **params)


def _eval(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor), "eval mode must return one tensor"
    return y


@pytest.mark.parametrize(("name", "p", "dims", "shape"), PARAMS)
def test_model_contract(name, p, dims, shape):
    in_channels = shape[1]
    spatial = shape[2:]
    model = _build(name, p, dims, in_channels, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen)

    # the divisor matters for these sizes (padding is exercised) and is exposed per axis
    divisor = required_divisor(model)
    assert divisor == required_divisor(model.medseg_config)
    assert len(divisor) == dims
    # --- training mode: shapes, deep supervision, finite gradients for every parameter
    model.train()
    out = model(x)
    scales = model.deep_supervision_scales
    if scales:
        assert isinstance(out, list)
        assert len(out) == 1 + len(scales)
        prev = (1,) * dims
        for aux, scale in zip(out[1:], scales):
            assert all(s >= q for s, q in zip(scale, prev)) and scale != prev, "coarser last"
            expected = tuple(math.ceil(s / f) for s, f in zip(spatial, scale))
            assert tuple(aux.shape) == (shape[0], OUT_CHANNELS, *expected)
            prev = scale
        outputs = out
    else:
        assert isinstance(out, torch.Tensor)
        outputs = [out]
    assert tuple(outputs[0].shape) == (shape[0], OUT_CHANNELS, *spatial)
    weights = [torch.randn(o.shape, generator=gen) for o in outputs]
    loss = sum((o * w).mean() for o, w in zip(outputs, weights))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0

    # --- eval mode: one tensor, the right shape, deterministic, no cross-talk across the batch
    y = _eval(model, x)
    assert tuple(y.shape) == (shape[0], OUT_CHANNELS, *spatial)
    assert torch.isfinite(y).all()
    assert torch.equal(y, _eval(model, x))
    if shape[0] > 1:
        torch.testing.assert_close(_eval(model, x[1:2]), y[1:2], atol=1e-5, rtol=1e-5)
    # the logits depend on the input
    assert not torch.allclose(_eval(model, x.flip(-1)), y)

    # --- state_dict round trip: a differently initialised model gives identical outputs after loading
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = _build(name, p, dims, in_channels, seed=123)
    assert not torch.equal(_eval(other, x), y)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(_eval(other, x), y)

    # --- ONNX export, run with onnxruntime
    onnx_bytes = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            onnx_bytes,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
        )
    session = ort.InferenceSession(onnx_bytes.getvalue(), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"x": x.numpy()})
    diff = np.abs(onnx_out - y.numpy()).max()
    assert diff <= 1e-4, f"ONNX output differs from PyTorch by {diff}"


@pytest.mark.parametrize(
    ("name", "dims"), [(name, dims) for name, spec in MODELS.items() for dims in spec.spatial_dims]
)
def test_tiny_inputs_are_padded_and_cropped(name, dims):
    """Any spatial size >= 1 works (eval mode): a 1-voxel-thick input gives 1-voxel-thick logits."""
    model = _build(name, MODELS[name].example(dims), dims, 1, seed=0).eval()
    shape = (1, 1, 1, 5, 3)[: dims + 2]
    y = _eval(model, torch.randn(shape))
    assert tuple(y.shape) == (1, OUT_CHANNELS, *shape[2:])
