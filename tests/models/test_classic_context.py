"""Behaviour of the classic context families (issue #15): PSPNet's pyramid pooling gives global
context, ENet's asymmetric bottleneck is k x 1 then 1 x k and its unpooling is max-unpooling,
PSANet's over-completed maps crop to the brute-force attention and too-large maps are refused."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import ConfigError
from medseg.models import build_model
from medseg.models.enet import AsymmetricConv, Bottleneck, max_unpool
from medseg.models.psanet import PointwiseSpatialAttention, attention_index, over_complete_attention
from medseg.models.pspnet.model import adaptive_avg_pool

torch.set_num_threads(2)


# ----------------------------------------------------------------------------- PSPNet
def _corner_change(model: nn.Module, size: int) -> float:
    """Largest change of the far (bottom-right) corner's logits when the top-left corner changes
    (the change is diluted by the global average over the feature map, so it is small but not 0)."""
    torch.manual_seed(1)
    x = torch.randn(1, 1, size, size)
    y = x.clone()
    y[..., :16, :16] += 10.0
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(y)
    return float((a[..., -8:, -8:] - b[..., -8:, -8:]).abs().max())


def test_pspnet_pyramid_pooling_gives_global_context():
    """With the pyramid, a change at one corner reaches the opposite corner of a 96x96 image; without
    it (bins=[]) the local receptive field (about 60 pixels here) does not. Batch norm in eval
    mode, so no normalisation statistic carries information across the image."""
    common = dict(features=[4, 8, 8], output_stride=4, head_channels=8, norm="batch")
    torch.manual_seed(0)
    with_ppm = build_model("pspnet", 2, 1, 2, bins=[1, 2, 3, 6], **common)
    torch.manual_seed(0)
    without = build_model("pspnet", 2, 1, 2, bins=[], **common)
    assert _corner_change(with_ppm, 96) > 1e-6
    assert _corner_change(without, 96) == 0.0


@pytest.mark.parametrize("bins", [(1, 1), (2, 3), (6, 6), (5, 2)])
def test_pspnet_pooling_equals_adaptive_average_pooling(bins):
    x = torch.randn(2, 3, 7, 11)
    torch.testing.assert_close(adaptive_avg_pool(x, bins), F.adaptive_avg_pool2d(x, bins))


def test_pspnet_aux_head_is_deep_supervision_in_training_only():
    model = build_model("pspnet", 2, 1, 3, features=[4, 8, 8], output_stride=4, aux_head=True)
    assert model.deep_supervision_scales == [(4, 4)]
    out = model.train()(torch.randn(1, 1, 30, 21))
    assert [tuple(o.shape) for o in out] == [(1, 3, 30, 21), (1, 3, 8, 6)]
    assert isinstance(model.eval()(torch.randn(1, 1, 30, 21)), torch.Tensor)


# ----------------------------------------------------------------------------- ENet
@pytest.mark.parametrize("k", [5, 7])
def test_enet_asymmetric_bottleneck_is_k_by_1_then_1_by_k(k):
    dilations = [2, 4, 8, 16]
    model = build_model(
        "enet", 2, 1, 2, features=[8, 16, 32], context_dilations=dilations, asymmetric_kernel=k
    )
    asym = [m for m in model.modules() if isinstance(m, AsymmetricConv)]
    assert len(asym) == 2 * 2  # paper layout: 2 per context stage, 2 context stages
    for block in asym:
        convs = [m for m in block if isinstance(m, nn.Conv2d)]
        assert [tuple(c.weight.shape[2:]) for c in convs] == [(k, 1), (1, k)]  # in forward order
    # the context stage alternates regular/asymmetric bottlenecks with dilated ones, as in the paper
    stage = model.net.context[0]
    assert [b.kind for b in stage] == [
        "regular", "dilated", "asymmetric", "dilated", "regular", "dilated", "asymmetric", "dilated",
    ]  # fmt: skip
    dilated = [b.ext[1][0].dilation for b in stage if isinstance(b, Bottleneck) and b.kind == "dilated"]
    assert dilated == [(d, d) for d in dilations]


def test_enet_unpooling_equals_max_unpool():
    x = torch.randn(2, 3, 8, 6)
    pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    assert torch.equal(max_unpool(pooled, indices, 2), F.max_unpool2d(pooled, indices, 2, 2))
    x3 = torch.randn(1, 2, 4, 6, 8)
    pooled, indices = F.max_pool3d(x3, 2, 2, return_indices=True)
    assert torch.equal(max_unpool(pooled, indices, 2), F.max_unpool3d(pooled, indices, 2, 2))


def test_enet_initial_block_must_widen_the_input():
    with pytest.raises(ConfigError, match=r"features\[0\] \(4\) must exceed in_channels \(4\)"):
        build_model("enet", 2, 4, 2, features=[4, 8, 16])


# ----------------------------------------------------------------------------- PSANet
def _brute_force_attention(maps: torch.Tensor, mask: tuple[int, int]) -> torch.Tensor:
    """``A[b, p, q]`` by looping over every pair: the cell of p's map at the offset q - p, 0 outside."""
    b, _, h, w = maps.shape
    hh, hw = (mask[0] - 1) // 2, (mask[1] - 1) // 2
    out = torch.zeros(b, h * w, h * w)
    for i in range(h):
        for j in range(w):
            for k in range(h):
                for m in range(w):
                    di, dj = k - i + hh, m - j + hw
                    if 0 <= di < mask[0] and 0 <= dj < mask[1]:
                        out[:, i * w + j, k * w + m] = maps[:, di * mask[1] + dj, i, j]
    return out


@pytest.mark.parametrize("mask", [(5, 7), (3, 3), (7, 5)])
def test_psanet_over_complete_crop_equals_brute_force(mask):
    """On a 3x4 map, (5, 7) is the paper's full (2H-1)x(2W-1) map; smaller masks bound the window."""
    maps = torch.randn(2, mask[0] * mask[1], 3, 4)
    attention = over_complete_attention(maps, mask)
    assert attention.shape == (2, 12, 12)
    assert torch.equal(attention, _brute_force_attention(maps, mask))
    if mask == (5, 7):  # the full map: every pair is covered, each value used once per position
        assert (attention != 0).all()


@pytest.mark.parametrize("distribute", [False, True])
def test_psanet_collect_and_distribute_aggregate_as_defined(distribute):
    """Collect: out[:, p] = sum_q A[p, q] h[:, q] (A softmax-normalised over q);
    distribute: out[:, q] = sum_p A[p, q] h[:, p] (the transpose)."""
    torch.manual_seed(0)
    mask = (3, 5)
    branch = PointwiseSpatialAttention(2, 4, 3, mask, distribute, True, 10**6, "batch", "relu").eval()
    x = torch.randn(2, 4, 3, 4)
    with torch.no_grad():
        out = branch(x).flatten(2)
        h = branch.reduce(x).flatten(2)
        logits = _brute_force_attention(branch.predict(h.view(2, 3, 3, 4)), mask)
    valid = _brute_force_attention(torch.ones(1, 15, 3, 4), mask)[0] > 0
    weights = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=2)  # [B, p, q]
    expected = torch.zeros_like(out)
    for p in range(12):
        for q in range(12):
            if distribute:
                expected[:, :, q] += h[:, :, p] * weights[:, p, q, None]
            else:
                expected[:, :, p] += h[:, :, q] * weights[:, p, q, None]
    torch.testing.assert_close(out, expected)


def test_psanet_refuses_attention_beyond_the_limit():
    model = build_model("psanet", 2, 1, 2, features=[4, 8], output_stride=2, max_attention_elements=1000)
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 1, 10, 10))  # 5x5 feature map: N^2 = 625
        with pytest.raises(ConfigError, match=r"needs N\^2 = 4096 .* max_attention_elements=1000") as exc:
            model(torch.randn(1, 1, 16, 16))  # 8x8: N^2 = 4096
    assert "\n" not in str(exc.value)
    assert "8x8 feature map" in str(exc.value)


def test_psanet_mask_size_must_be_odd():
    with pytest.raises(ConfigError, match="mask_size must be odd"):
        build_model("psanet", 2, 1, 2, mask_size=[5, 4])


def test_psanet_exports_to_onnx_from_a_cold_start_with_a_dynamic_batch():
    """The attention index is built during the export itself (no cached copy from an earlier forward,
    as in the contract test) and is a constant there; the batch axis stays dynamic."""
    ort = pytest.importorskip("onnxruntime")
    attention_index.cache_clear()
    torch.manual_seed(0)
    model = build_model("psanet", 2, 1, 2, features=[4, 8], output_stride=2, mask_size=5).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.randn(1, 1, 12, 10),), buf, opset_version=17, dynamo=False,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
        )  # fmt: skip
    x = torch.randn(3, 1, 12, 10)
    (y,) = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()}
    )
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x), atol=1e-4, rtol=0)
