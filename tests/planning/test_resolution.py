"""The coarser grid a small budget asks for (medseg.planning.resolution)."""

from __future__ import annotations

import pytest

from medseg.planning import plan_pipeline
from medseg.planning import resolution as rs
from medseg.planning import topology as tp
from tests.planning.synthetic import make_fingerprint
from tests.planning.test_rules import decision, valid


def lgg_like(**kw):
    """LGG: 256 x 256 slices, 25 of them, 8-bit exports with no recorded voxel size."""
    return make_fingerprint(
        shape=(256, 256, 25),
        spacing_declared=False,
        channels=(("pre", "8bit"), ("flair", "8bit"), ("post", "8bit")),
        classes={"1": {"name": "abnormality", "volume_mm3": 2e4, "centroid": [0.5, 0.5, 0.5]}},
        n_cases=23,
        **kw,
    )


def test_training_passes_counts_the_voxels_the_steps_see():
    fp = make_fingerprint(shape=(100, 100, 10), n_cases=10)
    fit = tp.Fit(tp.make_topology([64, 64, 8], [1.0, 1.0, 1.0], 16, 320), 2)
    fit.steps = 1000
    # 1000 steps x 2 patches x 32768 voxels over 8 training cases x 100000 voxels
    assert rs.training_passes(fp, fit, [100.0, 100.0, 10.0]) == pytest.approx(1000 * 2 * 32768 / 8e5)


def test_a_small_budget_trains_on_a_coarser_grid_when_the_labels_survive_it():
    asked = []

    def round_trip(target):
        asked.append(list(target))
        return {"dice_mean": 0.961, "dice_min": 0.942, "cases": 23}

    r = valid(plan_pipeline(lgg_like(), 30, round_trip=round_trip))
    assert r.kind == "2d"
    d = decision(r, "preprocessing.target_spacing")
    assert d.value == [2.0, 2.0] and asked == [[2.0, 2.0, None]]  # the slices keep their spacing
    assert "passes over the training voxels, under 40" in d.reason and "keep Dice 0.961" in d.evidence
    assert r.config["training"]["patch_size"] == [128, 128]
    assert "passes over the training voxels" in decision(r, "training.patch_size").evidence
    # the same budget, labels that a coarser grid would spoil: the full resolution stays
    lossy = valid(
        plan_pipeline(lgg_like(), 30, round_trip=lambda t: {"dice_mean": 0.94, "dice_min": 0.9, "cases": 23})
    )
    assert decision(lossy, "preprocessing.target_spacing").value is None
    assert lossy.config["training"]["patch_size"] == [256, 256]
    # not measured: not coarsened
    assert decision(valid(plan_pipeline(lgg_like(), 30)), "preprocessing.target_spacing").value is None


def test_a_budget_with_enough_passes_keeps_the_full_resolution():
    def never(target):
        raise AssertionError(f"enough passes: nothing to measure ({target})")

    r = valid(plan_pipeline(lgg_like(), 2000, round_trip=never))
    assert decision(r, "preprocessing.target_spacing").value is None
    assert r.config["training"]["patch_size"] == [256, 256]


def test_small_images_are_never_coarsened():
    """Hippocampus-sized crops (36 x 50 x 35): no axis keeps 64 voxels at 2x."""
    fp = make_fingerprint(shape=(36, 50, 35), n_cases=40)
    assert rs.coarser_target(fp, [1.0, 1.0, 1.0], [36.0, 50.0, 35.0], [0, 1, 2]) is None
    assert rs.coarser_target(fp, None, [256.0, 256.0, 25.0], [0, 1]) == [2.0, 2.0, 1.0]
    assert rs.coarser_target(fp, None, [256.0, 256.0, 25.0], [0, 1], kept_axis=2) == [2.0, 2.0, None]
