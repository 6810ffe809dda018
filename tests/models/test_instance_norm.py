"""The channels-last instance norm used at inference equals PyTorch's instance norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.models._blocks import (
    InstanceNorm2d,
    InstanceNorm3d,
    _instance_norm_channels_last,
    channels_last_inference,
)

FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


@pytest.mark.parametrize("shape", [(2, 16, 12, 10, 9), (3, 8, 33, 17)])
@pytest.mark.parametrize("offset", [0.0, 2.0, 5.0, 25.0, 1e4])  # large: E[x^2] - E[x]^2 would cancel
def test_equals_instance_norm(shape, offset):
    torch.manual_seed(0)
    x = (torch.randn(shape) * torch.rand(shape[1]).view(1, -1, *[1] * (len(shape) - 2)) + offset).contiguous(
        memory_format=FORMATS[len(shape)]
    )
    w, b = torch.randn(shape[1]), torch.randn(shape[1])
    exact = F.instance_norm(x.contiguous().double(), weight=w.double(), bias=b.double(), eps=1e-5)
    torch_error = (F.instance_norm(x.contiguous(), weight=w, bias=b, eps=1e-5) - exact).abs().max().item()
    out = _instance_norm_channels_last(x, w, b, 1e-5)
    assert out.is_contiguous(memory_format=FORMATS[len(shape)])
    # about as close to the exact result as PyTorch's own float32 kernel (the inputs' rounding dominates
    # when the offset is large)
    assert (out - exact).abs().max().item() <= max(3 * torch_error, 1e-4)


@pytest.mark.parametrize(
    ("cls", "shape"), [(InstanceNorm3d, (2, 8, 9, 10, 11)), (InstanceNorm2d, (2, 8, 20, 21))]
)
def test_module_takes_the_fast_path_only_at_inference(cls, shape, monkeypatch):
    norm = cls(shape[1], affine=True)
    x = torch.randn(shape).contiguous(memory_format=FORMATS[len(shape)])
    calls = []
    import medseg.models._blocks as blocks

    real = blocks._instance_norm_channels_last
    monkeypatch.setattr(blocks, "_instance_norm_channels_last", lambda *a: calls.append(1) or real(*a))
    norm.train()
    y_train = norm(x)  # training: autograd, PyTorch's kernel
    assert not calls
    norm.eval()
    with torch.no_grad():
        norm(x)  # outside the inference context: PyTorch's kernel
        assert not calls
        with channels_last_inference():
            y_eval = norm(x)
            norm(x.contiguous())  # a contiguous input keeps PyTorch's kernel
    assert len(calls) == 1
    assert (y_eval - y_train.detach()).abs().max().item() < 1e-4
