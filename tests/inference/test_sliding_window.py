"""Sliding-window inference equals MONAI's and the bounded-memory label path equals its argmax."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference as monai_swi

from medseg.inference import (
    SlidingWindowInferer,
    sliding_window_inference,
    sliding_window_labels,
    window_starts,
)


def _net(in_ch=1, out_ch=3, nd=3):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d if nd == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(in_ch, 6, 3, padding=1), torch.nn.ReLU(), conv(6, out_ch, 3, padding=1)
    ).eval()


CASES = [
    ((1, 1, 40, 51, 29), (24, 24, 16), 0.5),
    ((2, 1, 20, 61, 33), (32, 32, 32), 0.25),  # smaller than the window along an axis: padded
    ((1, 2, 37, 37, 37), (16, 20, 12), 0.7),
]


@pytest.mark.parametrize(("shape", "roi", "overlap"), CASES)
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_equals_monai(shape, roi, overlap, mode):
    net = _net(in_ch=shape[1])
    x = torch.randn(*shape)
    ref = monai_swi(x, roi, 3, net, overlap=overlap, mode=mode)
    ours = sliding_window_inference(x, net, roi, overlap=overlap, batch_size=3, mode=mode)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-4


def test_2d_and_class_form():
    net = _net(nd=2)
    x = torch.randn(1, 1, 70, 45)
    ref = monai_swi(x, (32, 32), 2, net, overlap=0.5, mode="gaussian")
    inferer = SlidingWindowInferer((32, 32), overlap=0.5, batch_size=2)
    assert (inferer(x, net) - ref).abs().max().item() <= 1e-4
    assert torch.equal(inferer.labels(x, net), ref[0].argmax(0).to(torch.uint8))


LABEL_CASES = [
    *[c for c in CASES if c[0][0] == 1],
    ((1, 1, 20, 61, 10), (32, 32, 32), 0.25),  # smaller than the window along two axes: padded
    ((1, 1, 30, 28, 41), (16, 16, 16), 0.9),  # many rows, uneven last step
    ((1, 1, 10, 9), (32, 32), 0.5),  # 2D, padded
    ((1, 1, 45, 70), (16, 24), 0.0),  # 2D, no overlap
]


@pytest.mark.parametrize(("shape", "roi", "overlap"), LABEL_CASES)
def test_chunked_labels_equal_full_argmax(shape, roi, overlap):
    net = _net(in_ch=shape[1], nd=len(shape) - 2)
    x = torch.randn(*shape)
    full = sliding_window_inference(x, net, roi, overlap=overlap)
    labels = sliding_window_labels(x, net, roi, overlap=overlap, batch_size=2)
    assert torch.equal(labels, full[0].argmax(0).to(torch.uint8))


def test_window_placement_and_validation():
    assert window_starts(10, 10, 0.5) == [0]
    assert window_starts(100, 40, 0.5) == [0, 20, 40, 60]
    assert window_starts(101, 40, 0.5) == [0, 20, 40, 60, 61]
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(torch.zeros(1, 1, 8, 8), _net(nd=2), (4, 4), overlap=1.0)
    with pytest.raises(ValueError, match="roi_size has 3 sizes"):
        sliding_window_inference(torch.zeros(1, 1, 8, 8), _net(nd=2), (4, 4, 4))


@pytest.mark.parametrize("roi", [(24, 24, 16), (33, 17, 8), (32, 40)])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_importance_map_equals_monai(roi, mode):
    from monai.data.utils import compute_importance_map

    from medseg.inference.sliding_window import importance_map

    ref = compute_importance_map(roi, mode=mode, sigma_scale=0.125, device="cpu")
    assert torch.equal(importance_map(roi, mode, 0.125), ref)


def test_accumulation_goes_to_the_gpu_only_when_it_fits(monkeypatch):
    from medseg.inference.sliding_window import accumulation_device

    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3_000, 8_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1_500)  # 1,000 cached, unused
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 500)
    assert accumulation_device(2_000, gpu) == gpu
    assert accumulation_device(2_001, gpu) == torch.device("cpu")
    assert accumulation_device(10, gpu, "cpu") == torch.device("cpu")  # asked for: kept
    assert accumulation_device(10**12, torch.device("cpu")) == torch.device("cpu")
