"""Region models on the bounded-memory label path: each region's accumulated logit thresholded at 0
and painted in order, slab by slab, gives the labels of the full averaged logits (with and without
mirror TTA), and the accumulator stays one window deep along the last axis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.config.schema import RegionConfig
from medseg.data.regions import paint
from medseg.inference import MirrorTTA, Predictor, sliding_window_inference, sliding_window_labels
from medseg.inference.sliding_window import argmax_decision, region_decision
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume

#: Overlapping regions whose paint order matters: 3 over 1 over 2 where they meet.
REGIONS = [
    RegionConfig(name="outer", labels=[1, 2, 3], value=2),
    RegionConfig(name="core", labels=[1, 3], value=1),
    RegionConfig(name="inner", labels=[3], value=3),
]


def _net(in_ch=1, out_ch=3, nd=3, seed=0):
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if nd == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(in_ch, 6, 3, padding=1), torch.nn.ReLU(), conv(6, out_ch, 3, padding=1)
    ).eval()


CASES = [
    ((1, 1, 40, 51, 29), (24, 24, 16), 0.5),  # last axis 29: starts 0, 8, 13 (not a multiple of 8)
    ((1, 1, 20, 30, 10), (16, 16, 16), 0.5),  # last axis shorter than a window: padded
    ((1, 2, 37, 37, 37), (16, 20, 12), 0.7),  # many rows, uneven last step
    ((1, 1, 33, 45), (16, 24), 0.25),  # 2D, last axis 45: starts 0, 18, 21
]


def _full_labels(x, net, roi, overlap):
    logits = sliding_window_inference(x, net, roi, overlap=overlap)[0]
    assert (logits > 0).any() and (logits < 0).any()  # both sides of the threshold are exercised
    return paint(logits > 0, REGIONS, dtype=torch.uint8)


@pytest.mark.parametrize(("shape", "roi", "overlap"), CASES)
@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_bounded_region_labels_equal_full_logits(shape, roi, overlap, tta):
    nd = len(shape) - 2
    net = _net(in_ch=shape[1], nd=nd)
    run = MirrorTTA(net, list(range(nd)), max_windows=2) if tta else net
    x = torch.randn(*shape)
    full = _full_labels(x, run, roi, overlap)
    labels = sliding_window_labels(
        x, run, roi, overlap=overlap, batch_size=2, decide=region_decision(REGIONS)
    )
    assert labels.shape == shape[2:]
    assert torch.equal(labels, full)
    assert len(torch.unique(labels)) == 4  # every painted value occurs: the order is tested


def test_constant_blending_and_wide_labels():
    wide = [RegionConfig(name=r.name, labels=r.labels, value=r.value + 300) for r in REGIONS]
    net = _net()
    x = torch.randn(1, 1, 26, 22, 19)
    logits = sliding_window_inference(x, net, (16, 16, 8), overlap=0.5, mode="constant")[0]
    decide = region_decision(wide, torch.int16)
    labels = sliding_window_labels(
        x, net, (16, 16, 8), overlap=0.5, mode="constant", label_dtype=torch.int16, decide=decide
    )
    assert labels.dtype == torch.int16
    assert torch.equal(labels, paint(logits > 0, wide, dtype=torch.int16))


def test_accumulator_is_one_window_deep():
    shape, roi, overlap = (1, 1, 30, 34, 57), (16, 16, 12), 0.5
    seen: list[tuple[tuple[int, ...], int]] = []
    decide_regions = region_decision(REGIONS)

    def decide(scores: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(scores.shape), scores.untyped_storage().nbytes()))
        return decide_regions(scores)

    sliding_window_labels(torch.randn(*shape), _net(), roi, overlap=overlap, decide=decide)
    ring_bytes = 4 * len(REGIONS) * math.prod(shape[2:-1]) * roi[-1]  # float32 [R, X, Y, roi_z]
    assert {nbytes for _, nbytes in seen} == {ring_bytes}  # every slab is a view of one ring
    assert ring_bytes * 4 < 4 * len(REGIONS) * math.prod(shape[2:])  # far below the full logits
    assert all(s[0] == len(REGIONS) and s[1:-1] == shape[2:-1] and s[-1] <= roi[-1] for s, _ in seen)
    assert sum(s[-1] for s, _ in seen) == shape[-1]  # each slab decided exactly once


def test_argmax_decision_is_the_default():
    net = _net()
    x = torch.randn(1, 1, 20, 22, 27)
    default = sliding_window_labels(x, net, (16, 16, 16))
    assert torch.equal(default, sliding_window_labels(x, net, (16, 16, 16), decide=argmax_decision))
    assert torch.equal(default, sliding_window_inference(x, net, (16, 16, 16))[0].argmax(0).to(torch.uint8))


# --- the predictor --------------------------------------------------------------------------------


class RandomRegions(torch.nn.Module):
    """A small random network with one logit per region."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _net(out_ch=len(REGIONS), seed=3)
        self.medseg_config = {"name": "random-regions"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _predictor(scan: Volume, patch, tta: bool) -> Predictor:
    plan = Plan.from_dataset(
        [(scan, None)],
        {0: "background", 1: "a", 2: "b", 3: "c"},
        target_spacing=None,
        normalization="none",
        crop_foreground=False,
    )
    return Predictor(RandomRegions(), plan, patch, regions=REGIONS, backend="torch", tta=tta, batch_size=2)


@pytest.mark.parametrize(
    ("size", "patch"),
    [((26, 22, 12), (16, 16, 16)), ((30, 24, 37), (16, 16, 12))],
    ids=["last-axis-shorter-than-window", "last-axis-not-a-stride-multiple"],
)
@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_predictor_bounded_path_equals_full_logits(size, patch, tta, monkeypatch):
    rng = np.random.default_rng(7)
    scan = Volume(rng.normal(0, 1, size).astype(np.float32), np.diag([0.8, 0.8, 2.0, 1.0]))
    predictor = _predictor(scan, patch, tta)
    full = predictor.predict(scan, probabilities=True).labels.array  # the whole [R, *S] logits
    import medseg.inference.predictor as module

    def refuse(*args, **kwargs):
        raise AssertionError("labels only: the whole logits volume must not be built")

    monkeypatch.setattr(module, "sliding_window_inference", refuse)
    bounded = predictor.predict(scan).labels.array
    np.testing.assert_array_equal(bounded, full)
    assert len(np.unique(bounded)) == 4
