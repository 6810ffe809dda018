"""Contour extraction for export, and exact round trips through the reader's fill (its rules:
tests/io/test_dicom_contours.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.export.contours import CONTOUR_LEVEL, fill_contours, slice_contours


def test_round_trip_is_exact_on_random_masks(rng):
    for _ in range(300):
        shape = (int(rng.integers(1, 25)), int(rng.integers(1, 25)))
        mask = rng.random(shape) < rng.random()
        assert np.array_equal(fill_contours(slice_contours(mask), shape), mask)


def test_holes_and_islands_are_separate_contours():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:15, 2:15] = True
    mask[5:12, 5:12] = False  # hole
    mask[7:10, 7:10] = True  # island inside the hole
    mask[17:19, 17:19] = True  # separate island
    contours = slice_contours(mask)
    assert len(contours) == 4
    assert np.array_equal(fill_contours(contours, mask.shape), mask)


def test_vertices_sit_just_inside_the_voxel_boundary():
    mask = np.zeros((10, 10), dtype=bool)
    mask[3:7, 2:8] = True  # rows 3..6, columns 2..7
    (contour,) = slice_contours(mask)
    inset = 1.0 - CONTOUR_LEVEL  # distance from the boundary pixel centre
    assert contour[:, 0].min() == pytest.approx(3 - inset)
    assert contour[:, 0].max() == pytest.approx(6 + inset)
    assert contour[:, 1].min() == pytest.approx(2 - inset)
    assert contour[:, 1].max() == pytest.approx(7 + inset)
    # rounding the vertices lands on boundary pixels (what OpenCV-based readers do)
    rounded = np.rint(contour).astype(int)
    assert mask[rounded[:, 0], rounded[:, 1]].all()
    # collinear points are dropped: a rectangle with cut corners has 8 vertices
    assert len(contour) == 8


def test_empty_inputs():
    assert slice_contours(np.zeros((5, 5), bool)) == []
    assert not fill_contours([], (4, 4)).any()
