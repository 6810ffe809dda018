"""Post-processing is chosen per class exactly when it raises the out-of-fold Dice, and the
per-class options apply as recorded (brute-force Dice through ``postprocess`` as the reference)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.inference.postprocess import PostprocessOptions, postprocess
from medseg.inference.postprocess_selection import select_postprocessing

SPACING = (1.0, 1.0, 2.0)


def _box(shape, lo, hi, value=1, out=None):
    out = np.zeros(shape, np.uint8) if out is None else out
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return out


def _dice(p: np.ndarray, r: np.ndarray) -> float:
    s = p.sum() + r.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(p, r).sum() / s


def _mean_dice(cases, label, options):
    """The reference: apply ``options`` with ``postprocess`` and measure the class's Dice."""
    return float(np.mean([_dice(postprocess(p, sp, options) == label, r == label) for p, r, sp in cases]))


def _spurious_cases(n=4, shape=(20, 20, 10)):
    """Prediction = reference (one blob) plus a small spurious blob far away, in every case."""
    cases = []
    for i in range(n):
        ref = _box(shape, (3, 3, 2), (10 + i, 10, 7))
        pred = ref.copy()
        _box(shape, (15, 15, 1), (17, 17, 3), out=pred)  # 8 voxels = 16 mm^3
        cases.append((pred, ref, SPACING))
    return cases


def _two_part_cases(n=4, shape=(20, 20, 10)):
    """The true structure has two components, both predicted, and a few voxels of noise on one."""
    cases = []
    for i in range(n):
        ref = _box(shape, (2, 2, 2), (8, 8, 8))
        _box(shape, (12, 12, 2), (16 + i % 2, 16, 6), out=ref)
        pred = ref.copy()
        pred[2, 2, 2] = 0  # not perfect
        cases.append((pred, ref, SPACING))
    return cases


def test_keep_largest_chosen_when_a_spurious_component_is_everywhere():
    cases = _spurious_cases()
    sel = select_postprocessing(cases, {1: "organ"})
    choice = sel.classes[1]
    assert choice.chosen.keep_largest and choice.chosen.min_size_mm3 == 0  # ties: the simplest
    assert choice.dice_before == pytest.approx(_mean_dice(cases, 1, PostprocessOptions()))
    assert choice.dice_after == pytest.approx(_mean_dice(cases, 1, sel.options)) == pytest.approx(1.0)
    assert choice.dice_after > choice.dice_before
    # a threshold between the spurious (16 mm^3) and true sizes is tried and scores the same
    sizes = [c["min_size_mm3"] for c in choice.candidates if not c["keep_largest"] and c["min_size_mm3"]]
    assert any(16 < t < 2 * 7 * 7 * 5 for t in sizes)


def test_not_chosen_when_the_true_structure_has_two_components():
    cases = _two_part_cases()
    sel = select_postprocessing(cases, {1: "organ"})
    choice = sel.classes[1]
    assert not choice.chosen.active and not sel.options.active
    assert (
        choice.dice_after == choice.dice_before == pytest.approx(_mean_dice(cases, 1, PostprocessOptions()))
    )
    keep = next(c for c in choice.candidates if c["keep_largest"] and c["min_size_mm3"] == 0)
    assert keep["dice"] < choice.dice_before  # it would have hurt


def test_classes_are_decided_separately_and_applied_per_class():
    a, b = _spurious_cases(), _two_part_cases()
    cases = []
    for (pa, ra, sp), (pb, rb, _) in zip(a, b):  # class 1 from a, class 2 from b (no overlap: pad)
        pred = np.concatenate([pa, np.where(pb > 0, 2, 0).astype(np.uint8)], axis=0)
        ref = np.concatenate([ra, np.where(rb > 0, 2, 0).astype(np.uint8)], axis=0)
        cases.append((pred, ref, sp))
    sel = select_postprocessing(cases, {0: "background", 1: "one", 2: "two"})
    assert set(sel.classes) == {1, 2}
    assert sel.classes[1].chosen.keep_largest and not sel.classes[2].chosen.active
    opts = sel.options
    assert set(opts.per_class) == {1} and not opts.keep_largest
    for label in (1, 2):  # the recorded Dice after is what postprocess gives with the options
        assert sel.classes[label].dice_after == pytest.approx(_mean_dice(cases, label, opts))
    out = postprocess(cases[0][0], SPACING, opts)
    assert np.array_equal(out == 2, cases[0][0] == 2)  # class 2 untouched


def test_size_threshold_chosen_when_keep_largest_would_cut_a_true_part():
    shape = (24, 24, 10)
    cases = []
    for i in range(3):
        ref = _box(shape, (2, 2, 2), (10, 10, 8))  # big true part
        _box(shape, (14, 14, 2), (18, 18, 6), out=ref)  # second true part (64 voxels)
        pred = ref.copy()
        _box(shape, (21, 2, 1), (22 + i % 2, 3, 2), out=pred)  # 1-2 spurious voxels
        cases.append((pred, ref, SPACING))
    empty = np.zeros(shape, np.uint8)
    blob = _box(shape, (5, 5, 5), (7, 7, 6))  # a spurious blob in a case without the class
    cases.append((blob, empty, SPACING))
    sel = select_postprocessing(cases, {1: "organ"})
    c = sel.classes[1]
    assert not c.chosen.keep_largest and 8.0 < c.chosen.min_size_mm3 < 128.0
    assert c.dice_after == pytest.approx(_mean_dice(cases, 1, c.chosen)) == pytest.approx(1.0)


def test_every_candidate_scores_as_postprocess_measures_it(rng):
    shape = (16, 16, 8)
    cases = []
    for _ in range(4):
        ref = (rng.random(shape) > 0.93).astype(np.uint8) * rng.integers(1, 3, shape).astype(np.uint8)
        pred = np.where(rng.random(shape) > 0.2, ref, (rng.random(shape) > 0.95) * 2).astype(np.uint8)
        cases.append((pred, ref, (0.8, 1.1, 1.7)))
    sel = select_postprocessing(cases, {1: "a", 2: "b"}, max_thresholds=5)
    for label, c in sel.classes.items():
        assert len(c.candidates) <= 2 + 2 * 5
        for cand in c.candidates:
            options = PostprocessOptions(cand["keep_largest"], cand["min_size_mm3"])
            assert cand["dice"] == pytest.approx(_mean_dice(cases, label, options), abs=1e-6)
        best = max(x["dice"] for x in c.candidates)
        assert c.chosen.active == (best > c.dice_before + sel.min_gain)


def test_margin_keeps_small_gains_out():
    cases = _spurious_cases()
    gain = select_postprocessing(cases, {1: "organ"}).classes[1]
    margin = gain.dice_after - gain.dice_before
    assert (
        select_postprocessing(cases, {1: "organ"}, min_gain=margin + 1e-6).classes[1].chosen.active is False
    )
    assert select_postprocessing(cases, {1: "organ"}, min_gain=margin - 1e-6).classes[1].chosen.active
    with pytest.raises(ValueError):
        select_postprocessing(cases, {1: "organ"}, min_gain=-0.1)


def test_per_class_options_round_trip_and_global_flags_still_work():
    lab = np.zeros((12, 12, 4), np.uint8)
    lab[1:5, 1:5, 1:3] = 1
    lab[8:9, 8:9, 1] = 1  # a 1-voxel island of class 1
    lab[6:10, 1:5, 1:3] = 2
    lab[1, 10, 1] = 2  # and of class 2
    per = PostprocessOptions(per_class={1: PostprocessOptions(keep_largest=True)})
    out = postprocess(lab, (1, 1, 1), per)
    assert out[8, 8, 1] == 0 and out[1, 10, 1] == 2
    glob = postprocess(lab, (1, 1, 1), PostprocessOptions(keep_largest=True))
    assert glob[8, 8, 1] == 0 and glob[1, 10, 1] == 0
    mixed = PostprocessOptions(min_size_mm3=2.0, per_class={1: PostprocessOptions()})
    out = postprocess(lab, (1, 1, 1), mixed)  # class 1 left alone, class 2 by the global options
    assert out[8, 8, 1] == 1 and out[1, 10, 1] == 0
    assert PostprocessOptions.from_dict(mixed.to_dict()) == mixed
    assert "per_class" not in PostprocessOptions(keep_largest=True).to_dict()  # old records unchanged
    with pytest.raises(ValueError):
        PostprocessOptions(per_class={0: PostprocessOptions()})
