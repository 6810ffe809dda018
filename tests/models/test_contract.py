"""The contract every registered model must meet, checked on every registry name in 2D and 3D.

For each (model config, dimensionality, input size) -- sizes include non-cubic ones
and ones that are not a multiple of the network's stride:
- logits have the input's spatial shape and ``out_channels`` channels;
- deep supervision (where built with it) gives ``[full, aux1, ...]`` in training, coarser last,
  and a single tensor in eval mode;
- the backward pass gives a finite gradient to every parameter;
- eval mode is deterministic and batch elements do not influence each other;
- a ``state_dict`` round trip through ``torch.save``/``torch.load(weights_only=True)`` reproduces the
  outputs exactly;
- the ONNX export (onnxruntime) matches PyTorch within 1e-4 (max abs).

The configs are small (few channels, shallow transformers) so the whole contract runs on a CPU.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from medseg.models import MODELS, build_model, required_divisor

ort = pytest.importorskip("onnxruntime")

torch.set_num_threads(2)

# (case id, registry name, params for spatial_dims)
Params = Callable[[int], dict[str, Any]]
CASES: list[tuple[str, str, Params]] = [
    ("unet", "unet", lambda d: {"features": [4, 8, 16]}),
    (
        "unet-residual-noskip-batchnorm",
        "unet",
        lambda d: {
            "features": [4, 8, 8],
            "residual": True,
            "skip_connections": False,
            "norm": "batch",
            "dropout": 0.2,
            "strides": [2, [2] * (d - 1) + [1]],
        },
    ),
    ("dynunet", "dynunet", lambda d: {"filters": [4, 8, 8, 16], "residual": True}),
    (
        "dynunet-deepsup-anisotropic",
        "dynunet",
        lambda d: {
            "filters": [4, 8, 8, 16],
            "strides": [1, [2] * (d - 1) + [1], 2, 2],
            "kernel_size": [[3] * (d - 1) + [1], 3, 3, 3],
            "deep_supervision": True,
            "deep_supr_num": 2,
        },
    ),
    (
        "uctransnet",
        "uctransnet",
        lambda d: {
            "features": [4, 8, 16, 16],
            "token_stride": 8,
            "transformer_layers": 2,
            "num_heads": 2,
            "pos_grid": 3,
            "embed_dims": [4, 6, 8],
        },
    ),
    (
        "deeplabv3",
        "deeplabv3",
        lambda d: {"features": [4, 8, 16, 16], "aspp_channels": 8, "output_stride": 8, "blocks": [1, 2, 1]},
    ),
    (
        "deeplabv3-anisotropic-os16-noatrous",
        "deeplabv3",
        lambda d: {
            "features": [4, 8, 8, 16, 16],
            "aspp_channels": 8,
            "strides": [[2] * (d - 1) + [1], 2, 2, 2, 2],
            "output_stride": [16] * (d - 1) + [8],
            "aspp_rates": [[3] * (d - 1) + [1], 2],
            "atrous": False,
            "norm": "batch",
        },
    ),
    (
        "deeplabv3plus",
        "deeplabv3plus",
        lambda d: {
            "features": [4, 8, 16, 16],
            "aspp_channels": 8,
            "low_level_channels": 4,
            "decoder_channels": 8,
            "aspp_rates": [[1] * (d - 1) + [2], 3],
        },
    ),
]

SIZES = {
    2: [(2, 3, 45, 61), (1, 2, 32, 16)],
    3: [(1, 1, 20, 27, 33), (2, 2, 16, 24, 8)],
}
OUT_CHANNELS = 3

PARAMS = [
    pytest.param(case_id, name, params, dims, shape, id=f"{case_id}-{dims}d-{'x'.join(map(str, shape))}")
    for case_id, name, params in CASES
    for dims in (2, 3)
    for shape in SIZES[dims]
]


def test_every_registered_model_is_in_the_contract():
    assert {name for _, name, _ in CASES} == set(MODELS)


def _build(name: str, params: dict[str, Any], dims: int, in_channels: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, dims, in_channels, OUT_CHANNELS, **params)


def _eval(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor), "eval mode must return one tensor"
    return y


@pytest.mark.parametrize(("case_id", "name", "params", "dims", "shape"), PARAMS)
def test_model_contract(case_id, name, params, dims, shape):
    p = params(dims)
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
    if p.get("deep_supervision"):
        assert isinstance(out, list)
        assert len(out) == 1 + p["deep_supr_num"]
        scales = model.deep_supervision_scales
        assert len(scales) == len(out) - 1
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


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("dims", [2, 3])
def test_tiny_inputs_are_padded_and_cropped(name, dims):
    """Any spatial size >= 1 works (eval mode): a 1-voxel-thick input gives 1-voxel-thick logits."""
    small = {
        "unet": {"features": [2, 4]},
        "dynunet": {"filters": [2, 4, 4]},
        "uctransnet": {"features": [2, 4, 4], "token_stride": 4, "transformer_layers": 1, "num_heads": 1},
        "deeplabv3": {"features": [2, 4, 4], "aspp_channels": 4},
        "deeplabv3plus": {"features": [2, 4, 4], "aspp_channels": 4, "low_level_stage": 0},
    }[name]
    model = _build(name, small, dims, 1, seed=0).eval()
    shape = (1, 1, 1, 5, 3)[: dims + 2]
    y = _eval(model, torch.randn(shape))
    assert tuple(y.shape) == (1, OUT_CHANNELS, *shape[2:])
