"""Filling RTSTRUCT contours: centres on the outline belong to the structure, elsewhere even-odd.

References: skimage.draw.polygon (outline included) and OpenCV fillPoly (what rt-utils
reads with) on contours through pixel centres, analytic pixel counts, and skimage's
inside test away from the outline.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon

from medseg.io.dicom.contours import fill_contours

cv2 = pytest.importorskip("cv2")

SHAPE = (20, 24)
#: (row, column) vertices on pixel centres, with their analytic pixel counts.
SHAPES = {
    "square 5x5": ([(2, 2), (2, 6), (6, 6), (6, 2)], 25),
    "rectangle 3x7": ([(5, 3), (5, 9), (7, 9), (7, 3)], 21),
    "L": ([(2, 2), (2, 4), (8, 4), (8, 9), (10, 9), (10, 2)], 3 * 9 + 3 * 5),
    "U": ([(2, 2), (2, 4), (8, 4), (8, 8), (2, 8), (2, 10), (10, 10), (10, 2)], 3 * 9 + 3 * 9 + 3 * 3),
    "diamond": ([(2, 8), (7, 13), (12, 8), (7, 3)], 5 * 5 + 6 * 6),
    "right triangle": ([(2, 2), (12, 2), (12, 12)], 66),
}


def skimage_fill(vertices: np.ndarray, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    rr, cc = polygon(vertices[:, 0], vertices[:, 1], shape)
    out[rr, cc] = True
    return out


def opencv_fill(contours: list[np.ndarray], shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """What rt-utils does: all contours of a slice in one fillPoly, (x, y) = (column, row)."""
    out = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(out, [np.rint(c[:, ::-1]).astype(np.int32) for c in contours], 1)
    return out.astype(bool)


@pytest.mark.parametrize("name", list(SHAPES))
def test_contours_through_pixel_centres_keep_their_outline(name):
    vertices, count = SHAPES[name]
    poly = np.asarray(vertices, dtype=float)
    ours = fill_contours([poly], SHAPE)
    assert ours.sum() == count
    assert np.array_equal(ours, skimage_fill(poly))
    assert np.array_equal(ours, opencv_fill([poly]))


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_decision_is_symmetric(name):
    poly = np.asarray(SHAPES[name][0], dtype=float)
    base = fill_contours([poly], SHAPE)
    assert np.array_equal(fill_contours([poly[::-1]], SHAPE), base)  # other direction
    assert np.array_equal(fill_contours([np.roll(poly, 2, axis=0)], SHAPE), base)  # other start
    flipped = poly * [-1, 1] + [SHAPE[0] - 1, 0]
    assert np.array_equal(fill_contours([flipped], SHAPE), base[::-1])
    mirrored = poly * [1, -1] + [0, SHAPE[1] - 1]
    assert np.array_equal(fill_contours([mirrored], SHAPE), base[:, ::-1])
    square = (24, 24)
    assert np.array_equal(fill_contours([poly[:, ::-1]], square).T, fill_contours([poly], square))


def test_collinear_repeated_and_closing_points_change_nothing():
    square = np.array([(2, 2), (2, 6), (6, 6), (6, 2)], dtype=float)
    noisy = np.array([(2, 2), (2, 2), (2, 4), (2, 5), (2, 6), (4, 6), (6, 6), (6, 6), (6, 2), (2, 2)], float)
    assert np.array_equal(fill_contours([noisy], SHAPE), fill_contours([square], SHAPE))
    # millimetre round-off (1e-7 pixel either side) does not drop the outline
    jitter = square + np.array([[1e-7, -1e-7], [-1e-7, 1e-7], [1e-7, 1e-7], [-1e-7, -1e-7]])
    assert fill_contours([jitter], SHAPE).sum() == 25


def test_inner_contours_are_holes_and_their_outline_stays():
    """rt-utils/OpenCV hole convention: the hole's contour runs through the ring's centres."""
    outer = np.array([(2, 2), (2, 12), (12, 12), (12, 2)], dtype=float)
    hole = np.array([(5, 5), (5, 9), (9, 9), (9, 5)], dtype=float)
    island = np.array([(7, 7), (7, 7.0), (7, 7)], dtype=float)  # a single centre, inside the hole
    ours = fill_contours([outer, hole], SHAPE)
    assert ours.sum() == 11 * 11 - 3 * 3
    assert not ours[6:9, 6:9].any() and ours[5, 5:10].all()
    assert np.array_equal(ours, opencv_fill([outer, hole]))
    assert np.array_equal(fill_contours([hole, outer], SHAPE), ours)  # order does not matter
    with_island = fill_contours([outer, hole, island], SHAPE)
    assert with_island.sum() == ours.sum() + 1 and with_island[7, 7]


def test_inside_rule_equals_skimage_away_from_the_outline(rng):
    """Random (self-intersecting) polygons, combined by XOR: skimage decides every centre
    farther than 0.01 pixel from all edges the same way."""
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    centres = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(float)
    for _ in range(150):
        polys = [
            rng.random((int(rng.integers(3, 10)), 2)) * [26, 30] - 3 for _ in range(int(rng.integers(1, 4)))
        ]
        expected = np.zeros(SHAPE, dtype=bool)
        near = np.zeros(len(centres), dtype=bool)
        for p in polys:
            expected ^= skimage_fill(p)
            for a, b in zip(p, np.roll(p, -1, axis=0)):
                t = np.clip((centres - a) @ (b - a) / max((b - a) @ (b - a), 1e-12), 0, 1)
                near |= np.linalg.norm(centres - (a + t[:, None] * (b - a)), axis=1) < 0.01
        far = ~near.reshape(SHAPE)
        assert np.array_equal(fill_contours(polys, SHAPE)[far], expected[far])


def test_empty_and_degenerate_inputs():
    assert not fill_contours([], (4, 4)).any()
    assert fill_contours([np.array([[1.0, 2.0]])], (4, 4)).sum() == 1  # a point on a centre
    assert fill_contours([np.array([[1.0, 0.0], [1.0, 3.0]])], (4, 4)).sum() == 4  # a line along a row
    assert not fill_contours([np.array([[1.5, 0.5], [1.5, 2.5], [1.6, 2.5]])], (4, 4)).any()
