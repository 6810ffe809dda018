"""Boundary IoU and the error against the distance to the reference boundary
(:mod:`medseg.evaluation.boundary`), against brute-force definitions and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.evaluation import boundary as eb
from medseg.evaluation import metrics as em


# -- brute-force references -----------------------------------------------------------------------
def brute_contour(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face-neighbour outside it (or outside the image), one by one."""
    out = np.zeros_like(mask)
    for idx in map(tuple, np.argwhere(mask)):
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            n = list(idx)
            n[axis] += step
            if not 0 <= n[axis] < mask.shape[axis] or not mask[tuple(n)]:
                out[idx] = True
    return out


def brute_band(mask: np.ndarray, spacing, band_mm: float) -> np.ndarray:
    """Voxels of ``mask`` closer than ``band_mm`` to some contour voxel (distance to every one)."""
    sp = np.asarray(spacing, dtype=np.float64)
    contour = np.argwhere(brute_contour(mask)) * sp
    out = np.zeros_like(mask)
    if contour.size == 0:
        return out
    pts = np.argwhere(mask)
    dist = np.sqrt((((pts * sp)[:, None, :] - contour[None, :, :]) ** 2).sum(-1)).min(axis=1)
    out[tuple(pts.T)] = dist < band_mm
    return out


def brute_boundary_iou(pred, ref, spacing, band_mm) -> float:
    bp, br = brute_band(pred, spacing, band_mm), brute_band(ref, spacing, band_mm)
    union = (bp | br).sum()
    return 1.0 if union == 0 else (bp & br).sum() / union


def brute_distance(ref: np.ndarray, spacing) -> np.ndarray:
    """Distance of every voxel to the nearest voxel centre on the other side of ``ref``."""
    sp = np.asarray(spacing, dtype=np.float64)
    pts = np.argwhere(np.ones_like(ref)) * sp
    inside, outside = np.argwhere(ref) * sp, np.argwhere(~ref) * sp
    out = np.empty(ref.size)
    for k, (p, r) in enumerate(zip(pts, ref.ravel())):
        other = outside if r else inside
        out[k] = np.sqrt(((other - p) ** 2).sum(axis=1)).min() if other.size else math.inf
    return out.reshape(ref.shape)


def random_mask(rng: np.random.Generator, shape, smooth: float) -> np.ndarray:
    noise = rng.standard_normal(shape)
    if smooth:
        noise = ndimage.gaussian_filter(noise, smooth)
    return noise > np.quantile(noise, 0.55)


# -- boundary IoU -------------------------------------------------------------------------------------
CASES = [
    ((23, 19), (0.7, 1.3), 2.0),  # erosion path
    ((23, 19), (0.7, 1.3), 6.0),  # ellipsoid of ~120 voxels, still by dilation
    ((11, 9, 7), (0.8, 1.1, 2.5), 2.0),
    ((11, 9, 7), (0.5, 0.6, 0.7), 5.0),  # ellipsoid too large: distance transform path
]


@pytest.mark.parametrize(("shape", "spacing", "band"), CASES)
@pytest.mark.parametrize("smooth", [0.0, 1.5])
def test_band_and_boundary_iou_match_the_brute_force_definition(shape, spacing, band, smooth):
    rng = np.random.default_rng(len(shape) * 100 + int(band * 10) + int(smooth))
    for _ in range(3):
        pred, ref = random_mask(rng, shape, smooth), random_mask(rng, shape, smooth)
        assert np.array_equal(eb.boundary_band(ref, spacing, band), brute_band(ref, spacing, band))
        expected = brute_boundary_iou(pred, ref, spacing, band)
        assert eb.boundary_iou(pred, ref, spacing, band) == pytest.approx(expected, abs=1e-12)
        assert em.compute_metrics(pred, ref, spacing, boundary_band_mm=band).boundary_iou == pytest.approx(
            expected, abs=1e-12
        )


def test_both_computation_paths_are_exercised():
    assert eb._ball((0.7, 1.3), 6.0) is not None
    assert eb._ball((0.5, 0.6, 0.7), 5.0) is None


def test_concentric_squares_by_hand():
    # reference: 20 x 20 square, prediction: concentric 16 x 16 square (pixels of 1 mm)
    ref = np.zeros((40, 40), bool)
    ref[10:30, 10:30] = True
    pred = np.zeros_like(ref)
    pred[12:28, 12:28] = True
    assert em.iou(pred, ref) == pytest.approx(256 / 400)
    # d = 2: two-pixel rings (contour at distance 0, next layer at 1; 2 is not < 2)
    assert eb.boundary_band(ref, 1.0, 2.0).sum() == 20**2 - 16**2
    assert eb.boundary_iou(pred, ref, 1.0, 2.0) == 0.0  # rings 10-11 and 12-13: disjoint
    # d = 3: rings of 204 and 156 pixels sharing square[12:28] - square[13:27] = 256 - 196 = 60
    assert eb.boundary_iou(pred, ref, 1.0, 3.0) == pytest.approx(60 / (204 + 156 - 60))
    # anisotropic pixels 0.5 x 1.0 mm, d = 1.5 mm: 3 layers along axis 0, 2 along axis 1
    sp = (0.5, 1.0)
    ring_ref, ring_pred = 400 - 14 * 16, 256 - 10 * 12
    shared = 256 - 14 * 16  # prediction square minus the reference's inner box (rows 13-26, cols 12-27)
    assert eb.boundary_band(ref, sp, 1.5).sum() == ring_ref
    assert eb.boundary_iou(pred, ref, sp, 1.5) == pytest.approx(shared / (ring_ref + ring_pred - shared))
    # a band wider than the objects: the whole masks, so boundary IoU = IoU
    assert eb.boundary_iou(pred, ref, sp, 50.0) == pytest.approx(em.iou(pred, ref))


def test_band_of_a_box_in_3d_and_the_paper_erosion():
    box = np.zeros((14, 12, 8), bool)
    box[2:12, 2:10, 1:7] = True  # 10 x 8 x 6 voxels of 1 x 1 x 2.5 mm
    band = eb.boundary_band(box, (1.0, 1.0, 2.5), 2.0)
    inner = np.zeros_like(box)
    inner[4:10, 4:8, 2:6] = True  # 2 layers in x and y, only the contour along z
    assert np.array_equal(band, box & ~inner)
    # isotropic pixels: the paper's reference code (zero padding, d erosions by a 3x3 square) on a box
    square = np.zeros((30, 30), bool)
    square[0:18, 5:25] = True  # touches the image border: the outside of the image counts as outside
    for d in (1, 2, 4):
        eroded = ndimage.binary_erosion(np.pad(square, 1), np.ones((3, 3)), iterations=d)[1:-1, 1:-1]
        assert np.array_equal(eb.boundary_band(square, 1.0, float(d)), square & ~eroded)
    # d = one voxel: the contour of the surface metrics
    assert np.array_equal(eb.boundary_band(box, 1.0, 1.0), em.surface_voxels(box))


def test_boundary_iou_is_more_sensitive_than_iou_to_a_boundary_shift_of_a_large_object():
    yy, xx = np.mgrid[:160, :160]
    for radius in (8, 60):
        ref = (yy - 80) ** 2 + (xx - 80) ** 2 < radius**2
        pred = np.roll(ref, 2, axis=0)
        if radius == 60:
            big_iou, big_biou = em.iou(pred, ref), eb.boundary_iou(pred, ref, 1.0, 2.0)
        else:
            small_iou, small_biou = em.iou(pred, ref), eb.boundary_iou(pred, ref, 1.0, 2.0)
    # a 2-pixel shift barely moves the IoU of the large disc but halves its boundary IoU ...
    assert big_iou > 0.9 and big_biou < 0.6
    assert 1 - big_biou > 5 * (1 - big_iou)
    # ... and boundary IoU judges the same shift alike for small and large objects (Cheng et al., fig. 3)
    assert abs(big_biou - small_biou) < 0.2 < big_iou - small_iou


def test_empty_masks_and_errors():
    empty, full = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
    full[1:4, 1:4] = True
    assert eb.boundary_iou(empty, empty) == 1.0  # like Dice and IoU
    assert eb.boundary_iou(full, empty) == 0.0 and eb.boundary_iou(empty, full) == 0.0
    m = em.compute_metrics(empty, full)
    assert (m.dice, m.iou, m.boundary_iou) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="positive number of mm"):
        eb.boundary_iou(full, full, 1.0, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        eb.boundary_iou(full, full[:4])
    with pytest.raises(ValueError, match="positive number of mm"):
        em.SegmentationMetrics(boundary_band_mm=-1.0)


def test_band_from_the_image_diagonal():
    assert eb.band_from_diagonal((300, 400)) == pytest.approx(0.02 * 500)
    assert eb.band_from_diagonal((30, 40, 1), (2.0, 1.5, 1.0), ratio=0.1) == pytest.approx(
        0.1 * math.sqrt(60**2 + 60**2 + 1)
    )


# -- error against distance ---------------------------------------------------------------------------
def test_error_by_distance_hand_made_strip():
    ref = np.zeros((1, 10), bool)
    ref[0, :5] = True  # distances: inside 5 4 3 2 1 (the image border is no boundary), outside 1 2 3 4 5
    pred = np.zeros_like(ref)
    pred[0, [0, 1, 2, 7]] = True  # misses x = 3 (d 2) and x = 4 (d 1), adds x = 7 (d 3)
    bins = (0.0, 1.0, 2.0, 4.0, 10.0)
    counts, errors = eb.error_by_distance(pred, ref, (1.0, 1.0), bins)
    assert counts.tolist() == [2, 2, 4, 2] and errors.tolist() == [1, 1, 1, 0]
    assert [v.tolist() for v in eb.error_by_distance(pred, ref, (1.0, 1.0), bins, "inside")] == [
        [1, 1, 2, 1],
        [1, 1, 0, 0],
    ]
    assert eb.error_by_distance(pred, ref, (1.0, 1.0), bins, "outside")[1].tolist() == [0, 0, 1, 0]
    # 0.5 mm pixels along the strip: every distance halves, the counts move one bin down
    counts, errors = eb.error_by_distance(pred, ref, (1.0, 0.5), bins)
    assert counts.tolist() == [4, 4, 2, 0] and errors.tolist() == [2, 1, 0, 0]
    # an infinite last edge: the bins reach every voxel with a finite distance
    assert eb.error_by_distance(pred, ref, (1.0, 1.0), (0.0, 1.0, math.inf))[0].tolist() == [2, 8]


@pytest.mark.parametrize(("shape", "spacing"), [((13, 11), (0.7, 1.3)), ((9, 8, 6), (0.8, 1.1, 2.5))])
def test_error_by_distance_matches_brute_force_counts(shape, spacing):
    rng = np.random.default_rng(7)
    bins = np.array([0.0, 0.75, 1.0, 1.5, 2.5, 4.0, 8.0])
    for smooth in (0.0, 1.5):
        pred, ref = random_mask(rng, shape, smooth), random_mask(rng, shape, smooth)
        d = brute_distance(ref, spacing)
        assert np.allclose(eb.reference_distance(ref, spacing), d)
        wrong = pred != ref
        counts, errors = eb.error_by_distance(pred, ref, spacing, bins)
        for i, (lo, hi) in enumerate(itertools.pairwise(bins)):
            in_bin = ((d > lo) | (d == bins[0])) & (d <= hi)
            assert counts[i] == in_bin.sum() and errors[i] == (in_bin & wrong).sum()


def test_pooling_sums_counts_before_dividing():
    bins = (0.0, 1.0, 10.0)
    ref = np.zeros((1, 10), bool)
    ref[0, :5] = True  # bins hold 2 and 8 voxels
    a = eb.DistanceErrors.measure(np.zeros_like(ref), ref, 1.0, bins)  # misses everything
    long_ref = np.zeros((1, 20), bool)
    long_ref[0, :10] = True  # bins hold 2 and 18 voxels
    good = long_ref.copy()
    good[0, 9] = False  # misses the voxel next to the boundary
    b = eb.DistanceErrors.measure(good, long_ref, 1.0, bins)
    assert a.rates().tolist() == [0.5, 0.5] and b.rates().tolist() == [0.5, 0.0]
    pooled = a + b
    voxels, errors = pooled.counts()
    assert pooled.n_cases == 2 and voxels.tolist() == [4, 26] and errors.tolist() == [2, 4]
    assert pooled.rates().tolist() == pytest.approx([2 / 4, 4 / 26])  # not the mean rate 0.25
    assert np.isnan(eb.DistanceErrors.empty(bins).rates()).all()
    with pytest.raises(ValueError, match="different bins"):
        a + eb.DistanceErrors.empty((0.0, 2.0))


def test_no_reference_boundary_adds_nothing():
    pred = np.ones((6, 6), bool)
    for ref in (np.zeros((6, 6), bool), np.ones((6, 6), bool)):
        counts, errors = eb.error_by_distance(pred, ref, 1.0)
        assert counts.sum() == 0 and errors.sum() == 0


def test_labels_in_grown_boxes_count_like_the_whole_image():
    from medseg.evaluation.grid import label_boxes

    rng = np.random.default_rng(3)
    ref = np.zeros((40, 36, 12), np.uint8)
    pred = np.zeros_like(ref)
    ref[10:20, 8:18, 3:8] = 1
    ref[24:30, 20:31, 4:9] = 2
    pred[11:21, 8:17, 3:8] = 1
    pred[23:30, 21:31, 5:9] = 2
    pred[rng.random(ref.shape) < 0.01] = 2  # scattered false positives, also far away
    spacing, bins = (0.9, 1.2, 3.0), (0.0, 1.0, 2.0, 5.0)
    per_label = eb.measure_labels(pred, ref, spacing, label_boxes(pred, ref, [1, 2, 3]), bins)
    for label in (1, 2, 3):
        full = eb.DistanceErrors.measure(pred == label, ref == label, spacing, bins)
        assert np.array_equal(per_label[label].voxels, full.voxels)
        assert np.array_equal(per_label[label].errors, full.errors)


def test_bins_are_checked():
    for bad in ([1.0], [0.0, 2.0, 1.0], [-1.0, 1.0], [0.0, math.inf, 5.0], [0.0, math.nan]):
        with pytest.raises(ConfigError, match="increasing edges"):
            eb.check_bins(bad)
    assert eb.check_bins([0, 1, math.inf]).tolist() == [0.0, 1.0, math.inf]
