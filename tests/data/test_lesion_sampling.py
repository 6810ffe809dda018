"""Lesion-weighted foreground sampling: each lesion is drawn, not each foreground voxel."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.sampling import LESION_VOXELS, PatchDataset, TrainingCase


class _Recorder:
    """An augmenter stand-in that records the patch centres and returns tiny tensors."""

    def __init__(self) -> None:
        self.centres: list[tuple[float, ...]] = []
        self.labels: list[int] = []

    def __call__(self, image, label, center, rng, spacing):
        self.centres.append(tuple(float(c) for c in center))
        self.labels.append(int(label[tuple(int(c) for c in center)]))
        return image.flatten(1)[:, :1], label.flatten()[:1], []


def _two_lesions() -> TrainingCase:
    """A 40³ case: an 8-voxel lesion (2³ cube, label 1) and a 4000-voxel one (20x20x10, label 1)."""
    label = np.zeros((40, 40, 40), dtype=np.uint8)
    label[2:4, 2:4, 2:4] = 1
    label[15:35, 15:35, 20:30] = 1
    image = np.zeros((1, 40, 40, 40), dtype=np.float32)
    return TrainingCase("c", image, label, (1, 1, 1))


def _centres(case: TrainingCase, mode: str, n: int = 400, seed: int = 0, oversample: float = 1.0):
    rec = _Recorder()
    ds = PatchDataset([case], (8, 8, 8), n, rec, oversample, seed, foreground_sampling=mode)
    for i in range(n):
        ds[i]
    return np.array(rec.centres)


def _in_small(centres: np.ndarray) -> np.ndarray:
    return np.all((centres >= 2) & (centres < 4), axis=1)


def test_lesion_voxels_are_the_components():
    lesions = _two_lesions().lesion_voxels
    assert sorted(v.size for v in lesions) == [8, LESION_VOXELS]  # the big one sampled down
    for v in lesions:
        assert np.all(np.diff(v) > 0)


def test_lesion_mode_draws_small_lesion_about_half_the_time():
    small = _in_small(_centres(_two_lesions(), "lesion")).mean()
    assert 0.35 <= small <= 0.65


def test_voxel_mode_rarely_draws_small_lesion():
    centres = _centres(_two_lesions(), "voxel")
    assert _in_small(centres).mean() < 0.05


def test_lesion_mode_centres_are_foreground_and_reproducible():
    case = _two_lesions()
    a = _centres(case, "lesion", n=100, seed=3)
    b = _centres(case, "lesion", n=100, seed=3)
    c = _centres(case, "lesion", n=100, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    lab = case.label.numpy()
    assert all(lab[tuple(int(x) for x in p)] == 1 for p in a)


def test_no_foreground_falls_back_to_random_centres():
    case = TrainingCase(
        "e", np.zeros((1, 20, 20, 20), np.float32), np.zeros((20, 20, 20), np.uint8), (1,) * 3
    )
    assert case.lesion_voxels == []
    centres = _centres(case, "lesion", n=50)
    assert len({tuple(p) for p in centres}) > 40
    assert centres.min() >= 0 and centres.max() <= 19


def test_2d_components_use_8_connectivity():
    label = np.zeros((10, 10), dtype=np.uint8)
    label[1, 1] = label[2, 2] = 1  # diagonal neighbours: one lesion
    label[6:8, 6:8] = 2
    case = TrainingCase("d", np.zeros((1, 10, 10), np.float32), label, (1, 1))
    assert sorted(v.size for v in case.lesion_voxels) == [2, 4]


def test_voxel_mode_is_unchanged_by_the_option():
    case = _two_lesions()
    a = _centres(case, "voxel", n=60, oversample=0.5)
    rec = _Recorder()
    ds = PatchDataset([case], (8, 8, 8), 60, rec, 0.5, 0)  # default mode
    for i in range(60):
        ds[i]
    assert np.array_equal(a, np.array(rec.centres))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="foreground_sampling"):
        PatchDataset([_two_lesions()], (8, 8, 8), 1, _Recorder(), foreground_sampling="blob")


def test_two_d_patches_from_3d_case_slice_through_the_lesion():
    rec = _Recorder()
    ds = PatchDataset([_two_lesions()], (8, 8), 40, rec, 1.0, 0, foreground_sampling="lesion")
    for i in range(40):
        ds[i]
    assert all(len(c) == 2 for c in rec.centres)
    assert rec.labels == [1] * 40  # the 2D centre lies in the lesion on the slice taken
