"""Metric values worked out by hand on small shapes, and the empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.evaluation import metrics as em

SPACING = (0.8, 1.2, 2.5)  # mm; the cube is shifted along the 2.5 mm axis


def _shifted_cubes() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((8, 8, 8), bool)
    ref[2:6, 2:6, 1:5] = True  # 4 x 4 x 4 voxels
    pred = np.zeros_like(ref)
    pred[2:6, 2:6, 2:6] = True  # the same cube one voxel further along k
    return pred, ref


def test_cube_shifted_by_one_voxel_along_anisotropic_axis():
    """Overlap 4x4x3 = 48 of 64 voxels each. Each cube has 56 surface voxels (64 - 2x2x2 inside).

    Directed distances from the reference surface to the prediction surface:
    * the 16 voxels of the reference's first k-face: nearest prediction voxel one slice away: 2.5 mm;
    * the 4 inner voxels of its last k-face: inside the prediction (not on its surface), nearest
      prediction surface voxel one column away along i: 0.8 mm;
    * the other 36 (side walls and rim of the last face) lie on the prediction surface: 0 mm.
    The prediction side is the mirror image. So:
    HD95: 95th percentile of [0]*36 + [0.8]*4 + [2.5]*16 (sorted positions 52 and 53 are 2.5) = 2.5 mm;
    ASSD = 2 * (16 * 2.5 + 4 * 0.8) / 112 = 86.4 / 112 mm;
    NSD at 1 mm: (36 + 4) * 2 / 112; at 2.5 mm: 1.
    """
    pred, ref = _shifted_cubes()
    assert em.dice(pred, ref) == pytest.approx(2 * 48 / 128, abs=1e-12)
    assert em.iou(pred, ref) == pytest.approx(48 / 80, abs=1e-12)
    sd = em.SurfaceDistances.compute(pred, ref, SPACING)
    assert sorted(sd.ref_to_pred.round(9)) == [0.0] * 36 + [0.8] * 4 + [2.5] * 16
    assert sorted(sd.pred_to_ref.round(9)) == [0.0] * 36 + [0.8] * 4 + [2.5] * 16
    assert em.hausdorff95(pred, ref, SPACING) == pytest.approx(2.5, abs=1e-12)
    assert em.hausdorff_distance(pred, ref, SPACING) == pytest.approx(2.5, abs=1e-12)
    assert em.assd(pred, ref, SPACING) == pytest.approx(86.4 / 112, abs=1e-12)
    assert em.normalized_surface_dice(pred, ref, SPACING, 1.0) == pytest.approx(80 / 112, abs=1e-12)
    assert em.normalized_surface_dice(pred, ref, SPACING, 2.5) == pytest.approx(1.0, abs=1e-12)
    assert em.normalized_surface_dice(pred, ref, SPACING, 0.5) == pytest.approx(72 / 112, abs=1e-12)
    # volumes: 64 voxels of 0.8 * 1.2 * 2.5 = 2.4 mm3 each, no difference
    assert em.volume_mm(ref, SPACING) == pytest.approx(64 * 2.4)
    assert em.volume_difference(pred, ref, SPACING) == pytest.approx((0.0, 0.0))


def test_shift_along_fine_axis_gives_fine_distances():
    """The same shift along the 0.8 mm axis: the far faces are 0.8 mm apart, the inner voxels of the
    near face are min(0.8, 1.2, 2.5) = 0.8 mm from the other surface: every distance is 0 or 0.8."""
    ref = np.zeros((8, 8, 8), bool)
    ref[1:5, 2:6, 2:6] = True
    pred = np.roll(ref, 1, axis=0)
    assert em.hausdorff95(pred, ref, SPACING) == pytest.approx(0.8, abs=1e-12)
    assert em.assd(pred, ref, SPACING) == pytest.approx(2 * 20 * 0.8 / 112, abs=1e-12)


def _ball_and_cube(radius: int = 2) -> tuple[np.ndarray, np.ndarray]:
    n = 2 * radius + 1
    g = np.indices((n + 4, n + 4, n + 4)) - (radius + 2)
    ball = (g**2).sum(axis=0) <= radius**2
    cube = np.max(np.abs(g), axis=0) <= radius
    return ball, cube


def test_sphere_against_cube():
    """Digital ball of radius 2 (x² + y² + z² <= 4) inscribed in the 5x5x5 cube, 1.5 mm voxels.

    Ball: 1 + 6 + 12 + 8 + 6 = 33 voxels; its 7 voxels at distance <= 1 from the centre are interior, so
    26 surface voxels: 6 of type (2,0,0) lie on the cube surface (0), 12 (1,1,0) and 8 (1,1,1) are one
    voxel from it (1). Cube: 125 voxels, 98 on the surface. Distances to the ball surface: 6 (2,0,0)
    voxels 0; 24 (2,1,0) and 24 (2,1,1) voxels 1; 12 (2,2,0) and 24 (2,2,1) voxels √2; 8 corners √3.
    """
    ball, cube = _ball_and_cube()
    s = 1.5
    assert ball.sum() == 33 and cube.sum() == 125
    assert em.dice(ball, cube) == pytest.approx(66 / 158, abs=1e-12)
    assert em.iou(ball, cube) == pytest.approx(33 / 125, abs=1e-12)
    sd = em.SurfaceDistances.compute(ball, cube, (s, s, s))
    assert sorted((sd.pred_to_ref / s).round(9)) == [0.0] * 6 + [1.0] * 20
    expected_cube = [0.0] * 6 + [1.0] * 48 + [round(math.sqrt(2), 9)] * 36 + [round(math.sqrt(3), 9)] * 8
    assert sorted((sd.ref_to_pred / s).round(9)) == expected_cube
    # HD95: ball side 1 (position 23.75 of 26), cube side √3 (positions 92, 93 of 98 are corners)
    assert em.hausdorff95(ball, cube, s) == pytest.approx(math.sqrt(3) * s, abs=1e-12)
    assd = (20 + 48 + 36 * math.sqrt(2) + 8 * math.sqrt(3)) / 124 * s
    assert em.assd(ball, cube, s) == pytest.approx(assd, abs=1e-12)
    assert em.normalized_surface_dice(ball, cube, s, tolerance_mm=s) == pytest.approx(80 / 124, abs=1e-12)
    assert em.volume_difference(ball, cube, s) == pytest.approx((92 * s**3, -92 / 125))


def test_empty_mask_conventions():
    empty = np.zeros((6, 6, 6), bool)
    full = empty.copy()
    full[1:4, 1:4, 1:4] = True
    both = em.compute_metrics(empty, empty, (1.0, 1.0, 3.0))
    assert (both.dice, both.iou, both.hd95, both.assd, both.nsd, both.rel_size_diff) == (1, 1, 0, 0, 1, 0)
    assert both.pred_empty and both.ref_empty
    missed = em.compute_metrics(empty, full, (1.0, 1.0, 3.0))  # prediction empty
    assert (missed.dice, missed.iou, missed.nsd) == (0, 0, 0)
    assert math.isinf(missed.hd95) and math.isinf(missed.assd)
    assert missed.rel_size_diff == -1.0 and missed.abs_size_diff == pytest.approx(27 * 3.0)
    spurious = em.compute_metrics(full, empty, (1.0, 1.0, 3.0))  # reference empty
    assert (spurious.dice, spurious.iou, spurious.nsd) == (0, 0, 0)
    assert math.isinf(spurious.hd95) and math.isinf(spurious.assd) and math.isinf(spurious.rel_size_diff)


def test_2d_metrics_use_4_connected_surfaces():
    ref = np.zeros((7, 7), bool)
    ref[1:6, 1:6] = True  # 5 x 5 square: 16 boundary pixels
    pred = np.zeros_like(ref)
    pred[1:6, 2:7] = True  # shifted one column (0.5 mm)
    sd = em.SurfaceDistances.compute(pred, ref, (2.0, 0.5))
    assert sd.ref_to_pred.size == 16 and sd.pred_to_ref.size == 16
    # reference boundary: rows 1 and 5 (columns 2-5) lie on the prediction boundary (0 mm); their
    # column-1 ends, column 1 (next to the prediction's first column) and column 5 (inside the
    # prediction, next to its last column) are all one 0.5 mm column away. Rows are 2 mm apart.
    assert sorted(sd.ref_to_pred) == [0.0] * 8 + [0.5] * 8
    assert sorted(sd.pred_to_ref) == [0.0] * 8 + [0.5] * 8
    assert em.hausdorff95(pred, ref, (2.0, 0.5)) == 0.5
    assert em.dice(pred, ref) == pytest.approx(2 * 20 / 50)


def test_argument_validation():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="same shape"):
        em.dice(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="one value per axis"):
        em.hausdorff95(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        em.assd(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="labels == k"):
        em.dice(a.astype(np.uint8) + 2, a)
    with pytest.raises(ValueError, match="2D or 3D"):
        em.dice(np.zeros(5, bool), np.zeros(5, bool))
    with pytest.raises(ValueError, match="tolerance"):
        em.normalized_surface_dice(a, a, 1.0, tolerance_mm=-1.0)
    with pytest.raises(ValueError, match="nsd_tolerance"):
        em.SegmentationMetrics(nsd_tolerance=float("nan"))


def test_class_form_matches_function_form():
    pred, ref = _shifted_cubes()
    metric = em.SegmentationMetrics(nsd_tolerance=1.0)
    assert metric(pred, ref, SPACING) == em.compute_metrics(pred, ref, SPACING, nsd_tolerance=1.0)
    assert "nsd_tolerance=1.0" in repr(metric)
