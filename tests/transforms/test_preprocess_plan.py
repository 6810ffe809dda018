"""The preprocessing plan and its inverse land exactly on the source grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medseg import geometry
from medseg.transforms.preprocess import Plan
from medseg.transforms.preprocess.resample import resample_array, resampled_affine
from medseg.volume import Volume


def _affine(rot, spacing, origin):
    a = np.eye(4)
    a[:3, :3] = rot * spacing
    a[:3, 3] = origin
    return a


ORIENTATIONS = {
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "PIL": np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]]),
    "oblique": Rotation.from_euler("xyz", [20, -10, 35], degrees=True).as_matrix(),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_apply_then_invert_is_identity_without_resampling(name, rng):
    a = _affine(ORIENTATIONS[name], [0.8, 1.1, 2.5], [10, -20, 30])
    img = np.zeros((18, 20, 12), np.float32)
    img[3:15, 4:17, 2:10] = rng.normal(5, 1, (12, 13, 8))
    lab = (img > 5).astype(np.uint8)
    plan = Plan.from_dataset([(Volume(img, a), Volume(lab, a))], {0: "bg", 1: "fg"}, target_spacing=None)
    pc = plan.apply(Volume(img, a), Volume(lab, a))
    assert pc.image.shape[1:] == (12, 13, 8) or sorted(pc.image.shape[1:]) == sorted((12, 13, 8))
    back = plan.invert(pc.label, pc.record)
    assert geometry.same_grid(back.affine, back.shape, a, lab.shape)
    np.testing.assert_array_equal(back.array, lab)


def test_integer_upsampling_inverts_voxel_for_voxel(rng):
    """Source 1x1x3 mm -> 1 mm: every source voxel maps onto a resampled voxel centre."""
    a = _affine(np.diag([-1.0, 1.0, 1.0]), [1.0, 1.0, 3.0], [0, 0, 0])
    img = rng.normal(size=(10, 12, 7)).astype(np.float32)
    lab = (img > 0.3).astype(np.uint8)
    plan = Plan.from_dataset(
        [(Volume(img, a), Volume(lab, a))],
        {0: "bg", 1: "fg"},
        target_spacing=[1.0, 1.0, 1.0],
        crop_foreground=False,
        normalization="none",
    )
    pc = plan.apply(Volume(img, a), None)
    assert pc.image.shape == (1, 10, 12, 21)
    thresholded = (pc.image[0] > 0.3).astype(np.uint8)  # a model applied on the plan's grid
    back = plan.invert(thresholded, pc.record)
    np.testing.assert_array_equal(back.array, lab)  # equals the same model in source space
    np.testing.assert_allclose(back.affine, a)


def test_resampled_affine_is_world_consistent():
    a = _affine(np.eye(3), [2.0, 1.0, 3.0], [5, 6, 7])
    new = resampled_affine(a, (10, 10, 10), (20, 10, 30))
    # the outer edges of the grid stay where they were
    np.testing.assert_allclose((new @ [-0.5, -0.5, -0.5, 1])[:3], (a @ [-0.5, -0.5, -0.5, 1])[:3])
    np.testing.assert_allclose((new @ [19.5, 9.5, 29.5, 1])[:3], (a @ [9.5, 9.5, 9.5, 1])[:3])
    ramp = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    up = resample_array(ramp, (20, 4, 4), order=1)
    # linear interpolation of a ramp is exact inside the grid
    np.testing.assert_allclose(up[1:-1, 0, 0], (np.arange(1, 19) + 0.5) / 2 - 0.5, atol=1e-5)


def test_plan_json_round_trip_and_ct_stats(rng):
    a = np.eye(4)
    img = rng.normal(40, 30, (10, 10, 10)).astype(np.float32)
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:8, 2:8, 2:8] = 1
    plan = Plan.from_dataset(
        [(Volume(img, a), Volume(lab, a))], {0: "bg", 1: "liver"}, normalization="ct", target_spacing="median"
    )
    again = Plan.from_json(plan.to_json())
    assert again == plan
    fg = img[lab > 0]
    assert plan.ct_stats[0]["lo"] == pytest.approx(np.percentile(fg, 0.5), rel=1e-6)
    pc = again.apply(Volume(img, a), Volume(lab, a))
    assert pc.image.dtype == np.float32 and np.isfinite(pc.image).all()
