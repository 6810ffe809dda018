"""Region models in prediction: each sigmoid output thresholded at 0.5 and painted in the declared
order, in 3D and slice by slice, with one probability map per region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.config.schema import RegionConfig
from medseg.inference import Predictor
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume

#: "bright" {1, 2} painted 1, then "brightest" {2} painted 2 over it.
REGIONS = [
    RegionConfig(name="bright", labels=[1, 2], value=1),
    RegionConfig(name="brightest", labels=[2], value=2),
]


class NestedThresholds(torch.nn.Module):
    """Region logits ``x - t`` per threshold (default 0.5, 1.5): nested regions, a fixed function."""

    def __init__(self, thresholds=(0.5, 1.5)) -> None:
        super().__init__()
        self.thresholds = thresholds
        self.medseg_config = {"name": "nested-thresholds"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1] - t for t in self.thresholds], dim=1)


@pytest.fixture
def scan() -> Volume:
    rng = np.random.default_rng(5)
    g = np.indices((26, 22, 12)).astype(np.float32)
    data = 1.2 * np.sin(g[0] / 4) + np.cos(g[1] / 5) + rng.normal(0, 0.2, g[0].shape)
    return Volume(data.astype(np.float32), np.diag([0.8, 0.8, 2.0, 1.0]))


def _predictor(scan: Volume, regions, patch=(16, 16, 16), slice_axis=None, model=None) -> Predictor:
    plan = Plan.from_dataset(
        [(scan, None)],
        {0: "background", 1: "bright", 2: "brightest"},
        target_spacing=None,
        normalization="none",
        crop_foreground=False,
    )
    model = model or NestedThresholds()
    # torch: exported ONNX models are cached by weights, and these two models have none
    return Predictor(model, plan, patch, slice_axis=slice_axis, regions=regions, backend="torch")


@pytest.mark.parametrize(("patch", "slice_axis"), [((16, 16, 16), None), ((16, 16), 2)], ids=["3d", "2d"])
def test_regions_are_thresholded_and_painted_in_order(scan, patch, slice_axis):
    pred = _predictor(scan, REGIONS, patch, slice_axis).predict(scan, probabilities=True)
    expected = np.digitize(scan.array, [0.5, 1.5]).astype(np.uint8)  # 0, 1 or 2
    np.testing.assert_array_equal(pred.labels.array, expected)
    probs = pred.probabilities.array
    assert probs.shape == (*scan.shape, 2)  # one map per region, not a softmax over classes
    np.testing.assert_allclose(probs[..., 1], 1 / (1 + np.exp(-(scan.array - 1.5))), atol=1e-5)
    assert [r["name"] for r in pred.info["regions"]] == ["bright", "brightest"]


def test_paint_order_is_the_declared_order(scan):
    # outputs and regions listed brightest first: "bright" is painted last and covers "brightest"
    pred = _predictor(scan, REGIONS[::-1], model=NestedThresholds((1.5, 0.5))).predict(scan)
    np.testing.assert_array_equal(pred.labels.array, (scan.array > 0.5).astype(np.uint8))
