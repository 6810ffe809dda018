"""Predictions lie exactly on the source grid, whatever its orientation and spacing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from medseg import geometry
from medseg.inference import PostprocessOptions, Predictor, postprocess
from medseg.io import read_volume
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume
from tests.conftest import shared_path
from tests.fixtures.models import Threshold, make_run


def _affine(rot, spacing, origin=(12.0, -30.0, 7.5)):
    a = np.eye(4)
    a[:3, :3] = np.asarray(rot) * spacing
    a[:3, 3] = origin
    return a


ORIENTATIONS = {
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "flipped_permuted": np.array([[0, 0, -1.0], [0, 1.0, 0], [-1.0, 0, 0]]),
    "oblique": Rotation.from_euler("zyx", [25, -12, 40], degrees=True).as_matrix(),
}


def _scan(rng, shape=(30, 26, 18)):
    g = np.indices(shape).astype(np.float32)
    return (np.sin(g[0] / 3) + np.cos(g[1] / 4) + 0.3 * g[2] / shape[2] + rng.normal(0, 0.2, shape)).astype(
        np.float32
    )


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_mask_equals_function_in_source_space(name, rng):
    data = _scan(rng)
    scan = Volume(data, _affine(ORIENTATIONS[name], [0.9, 1.3, 2.0]))
    plan = Plan.from_dataset(
        [(scan, None)], {0: "bg", 1: "fg"}, target_spacing=None, normalization="none", crop_foreground=False
    )
    pred = Predictor(Threshold(0.5), plan, (16, 16, 16), overlap=0.5).predict(scan)
    assert geometry.same_grid(pred.labels.affine, pred.labels.shape, scan.affine, scan.shape, 1e-6)
    np.testing.assert_array_equal(pred.labels.array, (data > 0.5).astype(np.uint8))
    assert pred.labels.array.dtype == np.uint8


def test_anisotropic_scan_resampled_by_the_plan(rng):
    data = _scan(rng, (24, 20, 9))
    scan = Volume(data, _affine(np.diag([-1.0, 1.0, 1.0]), [1.0, 1.0, 3.0]))
    plan = Plan.from_dataset(
        [(scan, None)],
        {0: "bg", 1: "fg"},
        target_spacing=[1.0, 1.0, 1.0],
        normalization="none",
        crop_foreground=True,
    )
    pred = Predictor(Threshold(0.5), plan, (16, 16, 16)).predict(scan)
    assert pred.labels.shape == scan.shape
    np.testing.assert_array_equal(pred.labels.array, (data > 0.5).astype(np.uint8))


def test_a_resampled_case_goes_back_through_its_softmax(monkeypatch):
    """A ball predicted at 2 mm on a 1 mm scan: the softmax resampled to the scan's grid (then the
    arg-max) keeps the boundary between coarse voxels; the labels resampled by nearest neighbour
    (the fallback past SMOOTH_INVERSION_MAX_BYTES) turn it into 2 mm steps."""
    from medseg.inference import inversion

    shape, centre, radius = (40, 44, 36), np.array([19.3, 22.6, 17.1]), 8.3
    dist = np.linalg.norm(np.indices(shape).transpose(1, 2, 3, 0) - centre, axis=-1)
    # logits +-(radius - dist) / 4: a softmax that rises over about 2 mm, as a trained network's
    scan = Volume(((radius - dist) / 4).astype(np.float32), _affine(ORIENTATIONS["LPS"], [1.0, 1.0, 1.0]))
    truth = dist < radius
    plan = Plan.from_dataset(
        [(scan, None)], {0: "bg", 1: "ball"}, target_spacing=[2.0, 2.0, 2.0], normalization="none"
    )

    def dice(through_softmax):
        predictor = Predictor(Threshold(0.0), plan, (16, 16, 16))
        prepared = predictor.prepare(scan)
        labels, _ = predictor.infer(prepared)
        pred = predictor.finish(prepared, labels).labels.array == 1
        assert pred.shape == shape and prepared.softmax is None  # dropped once used
        if through_softmax:  # the mask written beside the probabilities is their arg-max
            with_probs = predictor.predict(scan, probabilities=True)
            np.testing.assert_array_equal(with_probs.probabilities.array.argmax(-1), with_probs.labels.array)
        return 2 * np.sum(pred & truth) / (pred.sum() + truth.sum())

    smooth = dice(True)
    monkeypatch.setattr(inversion, "SMOOTH_INVERSION_MAX_BYTES", 0)
    nearest = dice(False)
    assert smooth > 0.97  # measured 0.978; nearest neighbour 0.920
    assert smooth > nearest + 0.04


def test_tta_and_probabilities(rng):
    data = _scan(rng)
    scan = Volume(data, np.eye(4))
    plan = Plan.from_dataset([(scan, None)], {0: "bg", 1: "fg"}, target_spacing=None, normalization="none")
    pred = Predictor(Threshold(0.5), plan, (16, 16, 16), tta=True).predict(scan, probabilities=True)
    np.testing.assert_array_equal(pred.labels.array, (data > 0.5).astype(np.uint8))  # symmetric model
    probs = pred.probabilities.array
    assert probs.shape == (*data.shape, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(-1), pred.labels.array)


def test_postprocessing_in_physical_units():
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[2:10, 2:10, 2:10] = 1  # 512 voxels
    lab[15:17, 15:17, 15:17] = 1  # 8 voxels
    lab[5, 5, 5] = 0  # a hole
    lab[12:14, 2:4, 2:4] = 2
    spacing = (2.0, 2.0, 2.0)  # 8 mm^3 per voxel
    out = postprocess(lab, spacing, PostprocessOptions(keep_largest=True))
    assert (out == 1).sum() == 511 and (out == 2).sum() == 8
    out = postprocess(lab, spacing, PostprocessOptions(min_size_mm3=65))  # 8 voxels = 64 mm^3 removed
    assert (out[15:17, 15:17, 15:17] == 0).all() and (out == 2).sum() == 0
    out = postprocess(lab, spacing, PostprocessOptions(fill_holes=True))
    assert out[5, 5, 5] == 1
    with pytest.raises(ValueError):
        PostprocessOptions(min_size_mm3=-1)


def test_predictor_from_run_folder(tmp_path, rng):
    run = make_run(tmp_path / "run")
    scan = Volume(_scan(rng), _affine(np.diag([-1.0, -1.0, 1.0]), [1, 1, 1]))
    predictor = Predictor.from_run(run, device="cpu")
    pred = predictor.predict(scan)
    assert pred.labels.shape == scan.shape and set(np.unique(pred.labels.array)) <= {0, 1}
    assert pred.info["labels"] == {"0": "background", "1": "object"}


@pytest.mark.parametrize(
    ("augmentation", "axes"),
    [({}, [0, 1, 2]), ({"flip_axes": [0, 2]}, [0, 2]), ({"flip_p": 0.0}, []), ({"enabled": False}, [])],
)
def test_mirror_tta_flips_only_the_axes_flipped_in_training(tmp_path, augmentation, axes):
    """Mirroring a model along an axis it never saw flipped feeds it inputs it cannot read."""
    predictor = Predictor.from_run(
        make_run(tmp_path / "run", augmentation=augmentation, tta=True), device="cpu"
    )
    assert predictor.tta_axes == axes and predictor.tta == bool(axes)
    net = predictor._network()
    assert (net.axes if predictor.tta else None) == (axes or None)


@pytest.mark.shared
def test_totalsegmentator_dicom_predicts_onto_the_reference_grid(shared_datasets, tmp_path):
    ts = shared_path(shared_datasets, "totalsegmentator_examples")
    ref = nib.load(shared_path(ts, "example_seg_dicom.nii.gz"))
    scan = read_volume(shared_path(ts, "example_ct_dicom"))
    plan = Plan.from_dataset(
        [(scan, None)], {0: "bg", 1: "bone"}, target_spacing=[2.0, 2.0, 2.0], normalization="none"
    )
    pred = Predictor(Threshold(300.0), plan, (64, 64, 16)).predict(scan)
    assert pred.labels.shape == ref.shape
    np.testing.assert_allclose(pred.labels.affine, ref.affine, atol=1e-3)
    from medseg.io import write_volume

    write_volume(pred.labels, tmp_path / "mask.nii.gz")
    back = nib.load(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-3)
    assert back.shape == ref.shape
