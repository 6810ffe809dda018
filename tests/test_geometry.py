"""Affine helpers and the Volume type."""

from __future__ import annotations

import numpy as np
import pytest

from medseg import geometry
from medseg.volume import Volume


def test_orientation_codes_and_spacing():
    a = np.diag([-0.5, 0.5, 2.0, 1.0])
    assert geometry.orientation_code(a) == "LAS"
    assert geometry.spacing(a) == pytest.approx((0.5, 0.5, 2.0))
    assert geometry.orientation_code(geometry.LPS_TO_RAS @ np.eye(4)) == "LPS"


def test_reorient_is_exact_and_keeps_world_positions(rng):
    a = np.array([[0, 0, -2.0, 10], [1.5, 0, 0, -4], [0, 0.7, 0, 3], [0, 0, 0, 1]])
    data = rng.integers(0, 100, (4, 5, 6))
    v = Volume(data, a)
    r = v.reoriented("RAS")
    assert r.orientation == "RAS"
    for idx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        world = a @ [*idx, 1]
        ridx = np.rint(np.linalg.solve(r.affine, world)[:3]).astype(int)
        assert r.array[tuple(ridx)] == data[idx]
    back = r.reoriented(v.orientation)
    np.testing.assert_array_equal(back.array, data)
    np.testing.assert_allclose(back.affine, a)


def test_same_grid_and_flip():
    a = np.diag([1.0, 2.0, 3.0, 1.0])
    f = geometry.flip_axis_affine(a, 1, 10)
    assert geometry.same_grid(a, (4, 10, 5), a, (4, 10, 5))
    assert not geometry.same_grid(a, (4, 10, 5), f, (4, 10, 5))
    assert geometry.grid_distance(a, (4, 10, 5), a, (4, 9, 5)) == float("inf")
    ornt = geometry.axis_permutation(f, a)
    assert ornt is not None and ornt[1, 1] == -1


def test_volume_validates():
    with pytest.raises(ValueError, match="4x4"):
        Volume(np.zeros((2, 2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="3D or 4D"):
        Volume(np.zeros((2, 2, 2, 2, 2)), np.eye(4))
    assert Volume(np.zeros((3, 4)), np.eye(4)).shape == (3, 4, 1)


def test_oblique_and_shear_detection():
    from scipy.spatial.transform import Rotation

    a = np.eye(4)
    a[:3, :3] = Rotation.from_euler("z", 15, degrees=True).as_matrix()
    assert geometry.is_oblique(a) and not geometry.is_sheared(a)
    a[0, 1] += 0.2
    assert geometry.is_sheared(a)
