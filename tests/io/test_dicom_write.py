"""write_dicom_series: the series reads back to the same voxels at the same world positions."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from medseg.errors import MedsegError
from medseg.io import read_volume
from medseg.io.dicom import write_dicom_series
from medseg.volume import Volume


def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine_of(directions: np.ndarray, spacing: tuple[float, float, float], origin: tuple) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = directions * np.asarray(spacing)
    a[:3, 3] = origin
    return a


GRIDS = {
    "ras": affine_of(np.eye(3), (1.0, 1.0, 1.0), (1, 1, 1)),
    "lps_anisotropic": affine_of(np.diag([-1.0, -1.0, 1.0]), (0.7, 0.8, 2.5), (120.0, 90.0, -40.0)),
    "oblique": affine_of(rotation(0, 17) @ rotation(2, -31), (0.9, 1.1, 1.7), (-3.0, 40.0, 12.5)),
    "left_handed": affine_of(np.diag([1.0, 1.0, -1.0]), (1.0, 0.5, 3.0), (0.0, 0.0, 60.0)),
    "sagittal": affine_of(np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]), (0.6, 0.6, 1.2), (5, -7, 9)),
}


def world_lookup(original: Volume, read_back: Volume) -> np.ndarray:
    """Read-back voxel values looked up at the original grid's voxels through both affines.

    Every original voxel centre is mapped into the read-back grid; it must land on a voxel
    centre (the grids coincide), whose value is returned in the original's voxel order."""
    shape = original.array.shape
    idx = np.indices(shape).reshape(3, -1)
    world = original.affine @ np.vstack([idx, np.ones(idx.shape[1])])
    back = np.linalg.inv(read_back.affine) @ world
    rounded = np.round(back[:3]).astype(int)
    assert np.abs(back[:3] - rounded).max() < 1e-3, "the read-back grid is not the original grid"
    for axis, n in enumerate(read_back.array.shape):
        assert rounded[axis].min() >= 0 and rounded[axis].max() < n
    return read_back.array[tuple(rounded)].reshape(shape)


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("modality", ["MR", "CT"])
def test_integer_volume_round_trips_exactly(tmp_path, grid, modality):
    rng = np.random.default_rng(3)
    data = rng.integers(-1000, 3000, size=(7, 6, 5)).astype(np.int16)
    original = Volume(data, GRIDS[grid])
    files = write_dicom_series(original, tmp_path / "series", modality=modality)
    assert len(files) == 5
    back = read_volume(tmp_path / "series")
    assert sorted(back.array.shape) == sorted(data.shape)
    np.testing.assert_array_equal(world_lookup(original, back), data)
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == modality and ds.PatientName == "ANONYMOUS^MEDSEG"
    assert back.meta.modality == modality


def test_float_volume_is_quantised_within_half_a_step(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.normal(300.0, 120.0, size=(6, 5, 4)).astype(np.float32)
    original = Volume(data, GRIDS["oblique"])
    write_dicom_series(original, tmp_path / "s")
    back = read_volume(tmp_path / "s")
    step = (data.max() - data.min()) / 65535
    err = np.abs(world_lookup(original, back) - data).max()
    assert err <= step * 0.51 + 1e-4


def test_one_series_one_study_fresh_uids(tmp_path):
    vol = Volume(np.zeros((4, 4, 3), np.int16), GRIDS["ras"])
    files = write_dicom_series(vol, tmp_path / "a", study_uid="1.2.3.4", patient={"PatientID": "X1"})
    headers = [pydicom.dcmread(f) for f in files]
    assert {h.StudyInstanceUID for h in headers} == {"1.2.3.4"}
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == 3
    assert {h.PatientID for h in headers} == {"X1"}
    assert [h.InstanceNumber for h in headers] == [1, 2, 3]


def test_refuses_non_empty_folder_sheared_grid_and_4d(tmp_path):
    vol = Volume(np.zeros((4, 4, 3), np.int16), GRIDS["ras"])
    write_dicom_series(vol, tmp_path / "a")
    with pytest.raises(MedsegError, match="not empty"):
        write_dicom_series(vol, tmp_path / "a")
    write_dicom_series(vol, tmp_path / "a", overwrite=True)
    sheared = GRIDS["ras"].copy()
    sheared[0, 1] = 0.3
    with pytest.raises(MedsegError, match="not perpendicular"):
        write_dicom_series(Volume(vol.array, sheared), tmp_path / "b")
    with pytest.raises(ValueError, match="3D"):
        write_dicom_series(Volume(np.zeros((3, 3, 3, 2)), GRIDS["ras"]), tmp_path / "c")
    with pytest.raises(ValueError, match="modality"):
        write_dicom_series(vol, tmp_path / "d", modality="US")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (apt dicom3tools) is not installed")
@pytest.mark.parametrize("modality", ["MR", "CT"])
def test_dciodvfy_finds_no_error(tmp_path, modality):
    vol = Volume(np.arange(60, dtype=np.float32).reshape(5, 4, 3) * 1.5, GRIDS["oblique"])
    files = write_dicom_series(vol, tmp_path / "s", modality=modality)
    out = subprocess.run(["dciodvfy", str(files[1])], capture_output=True, text=True)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
