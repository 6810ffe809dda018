"""DICOM rescale types (docs/io.md) and a series copied twice into one folder (issue #14)."""

from __future__ import annotations

import numpy as np
import pydicom

from medseg.io import read_volume
from tests.fixtures.dicom_factory import regular_positions, write_series


def _ct(tmp_path, stored: list[np.ndarray], slope: float = 1.0, intercept: float = -1024.0):
    positions = regular_positions((0, 0, 0), (0, 0, 1), 2.0, len(stored))
    series = write_series(
        tmp_path / "ct", positions, values=stored, signed=False, slope=slope, intercept=intercept
    )
    return read_volume(series.folder), series


def test_uint16_ct_with_intercept_fits_int16_exactly(tmp_path):
    stored = [np.full((6, 5), v, dtype=np.uint16) for v in (0, 1024, 4095)]
    stored[1][2, 3] = 17
    volume, _ = _ct(tmp_path, stored)
    assert volume.array.dtype == np.int16
    for k, px in enumerate(stored):  # array [column, row reversed, slice]
        np.testing.assert_array_equal(volume.array[:, ::-1, k], px.T.astype(np.int32) - 1024)


def test_values_beyond_int16_become_float32_exactly(tmp_path):
    stored = [np.full((6, 5), v, dtype=np.uint16) for v in (0, 40000, 65535)]
    volume, _ = _ct(tmp_path, stored, slope=2.0)
    assert volume.array.dtype == np.float32
    assert sorted(np.unique(volume.array)) == [-1024.0, 78976.0, 130046.0]


def test_series_copied_twice_is_named_as_duplicates(tmp_path):
    positions = regular_positions((0, 0, 0), (0, 0, 1), 2.0, 4)
    first = write_series(tmp_path / "folder" / "copy1", positions, shuffle_seed=None)
    # the same series exported again: same series UID and instance numbers, new SOP UIDs
    write_series(tmp_path / "folder" / "copy2", positions, shuffle_seed=None, series_uid=first.series_uid)
    volume = read_volume(tmp_path / "folder")  # read as before (4D), with the right warning
    assert volume.array.shape[3:] == (2,)
    (message,) = [w for w in volume.meta.warnings if "slice positions" in w]
    assert "2 images at each of 4 slice positions with the same instance numbers" in message
    assert "copied twice" in message
    assert not any("ordered by instance number" in w for w in volume.meta.warnings)


def test_4d_series_without_instance_numbers_is_not_called_duplicated(tmp_path):
    positions = regular_positions((0, 0, 0), (0, 0, 1), 2.0, 3)
    first = write_series(tmp_path / "folder" / "t0", positions, shuffle_seed=None)
    write_series(tmp_path / "folder" / "t1", positions, shuffle_seed=None, series_uid=first.series_uid)
    for f in (tmp_path / "folder").rglob("IM*"):
        ds = pydicom.dcmread(f)
        del ds.InstanceNumber
        ds.save_as(f)
    volume = read_volume(tmp_path / "folder")
    assert not any("duplicated" in w for w in volume.meta.warnings)
