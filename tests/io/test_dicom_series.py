"""DICOM series reading on synthetic series with analytically known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import (
    AmbiguousSeriesError,
    CorruptFileError,
    NoImageDataError,
    SeriesGeometryError,
)
from medseg.io import list_series, read_volume
from tests.fixtures.dicom_factory import (
    LPS_TO_RAS,
    expected_affine_ras,
    regular_positions,
    write_series,
)

SQ = 1 / np.sqrt(2)

ORIENTATIONS = {
    # name: (row_dir, col_dir) in LPS
    "axial": ((1, 0, 0), (0, 1, 0)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "oblique": ((SQ, SQ, 0), (-0.5, 0.5, SQ)),
    "flipped_axial": ((-1, 0, 0), (0, -1, 0)),
}


def _check_voxels(volume, series, order, t_files=None):
    """Every voxel of ``volume`` equals the pixel of the file it lies on (world check)."""
    rows, cols = series.rows, series.cols
    nk = len(order)
    for k in range(nk):
        f = order[k]
        for i in range(cols):
            for j in range(rows):
                world_ras = volume.affine @ np.array([i, j, k, 1.0])
                world_lps = (LPS_TO_RAS @ world_ras)[:3]
                # invert the file's own geometry to find (row, col) of that point
                rel = world_lps - series.positions[f]
                col = rel @ series.row_dir / series.pixel_spacing[1]
                row = rel @ series.col_dir / series.pixel_spacing[0]
                normal = np.cross(series.row_dir, series.col_dir)
                assert abs(rel @ normal) < 1e-3
                r, c = int(round(row)), int(round(col))
                assert abs(row - r) < 1e-3 and abs(col - c) < 1e-3
                expected = series.stored[f][r, c] * series.slope + series.intercept
                assert volume.array[i, j, k] == pytest.approx(expected)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_orientations_give_analytic_affine_and_values(tmp_path, name):
    row_dir, col_dir = ORIENTATIONS[name]
    normal = np.cross(row_dir, col_dir)
    positions = regular_positions((-20.5, 13.25, 40.0), normal, 2.5, 7)
    s = write_series(tmp_path / name, positions, row_dir, col_dir, shuffle_seed=3)
    v = read_volume(s.folder)
    assert v.shape == (s.cols, s.rows, 7)
    order = list(range(7))  # positions were written ascending along the normal
    np.testing.assert_allclose(v.affine, expected_affine_ras(s, order), atol=1e-5)
    np.testing.assert_allclose(v.spacing, (0.7, 0.8, 2.5), atol=1e-6)
    _check_voxels(v, s, order)
    assert v.meta.modality == "CT"
    assert v.meta.n_files == 7
    assert v.meta.sop_instance_uids == [s.sop_uids[k] for k in order]


def test_descending_positions_and_shuffled_instance_numbers(tmp_path):
    """Files written top-down with InstanceNumber reversed: order must follow position."""
    positions = regular_positions((0, 0, 100), (0, 0, -1), 3.0, 6)  # descending z
    s = write_series(tmp_path / "s", positions, instance_numbers=[1, 2, 3, 4, 5, 6])
    v = read_volume(s.folder)
    order = list(range(5, -1, -1))  # ascending z = reverse of written order
    np.testing.assert_allclose(v.affine, expected_affine_ras(s, order), atol=1e-5)
    assert v.affine[2, 2] == pytest.approx(3.0)  # k goes superior
    _check_voxels(v, s, order)


@pytest.mark.parametrize(
    ("signed", "slope", "intercept", "dtype"),
    [
        (True, 1.0, 0.0, np.int16),
        (False, 1.0, -1024.0, np.int16),
        (False, 1.0, 0.0, np.uint16),
        (True, 2.0, -1024.0, np.int16),
        (True, 0.5, 3.25, np.float32),
    ],
)
def test_rescale_and_pixel_representation(tmp_path, signed, slope, intercept, dtype):
    positions = regular_positions((0, 0, 0), (0, 0, 1), 1.5, 4)
    s = write_series(tmp_path / "s", positions, slope=slope, intercept=intercept, signed=signed)
    v = read_volume(s.folder)
    assert v.array.dtype == dtype
    _check_voxels(v, s, list(range(4)))


def test_negative_stored_values_survive(tmp_path):
    positions = regular_positions((0, 0, 0), (0, 0, 1), 1.0, 3)
    vals = [np.full((6, 5), -1000 + 7 * k, dtype=np.int16) for k in range(3)]
    s = write_series(tmp_path / "s", positions, values=vals, slope=1.0, intercept=0.0)
    v = read_volume(s.folder)
    assert v.array.min() == -1000 and v.array.max() == -986


def test_4d_series_is_not_stacked_as_slices(tmp_path):
    """Three time points of four slices in one series -> 4D [i, j, 4, 3]."""
    base = regular_positions((5, 5, 5), (0, 0, 1), 4.0, 4)
    positions = np.concatenate([base, base, base])
    temporal = [1] * 4 + [2] * 4 + [3] * 4
    vals = [np.full((6, 5), 100 * t + k, dtype=np.int16) for t in range(3) for k in range(4)]
    s = write_series(tmp_path / "s", positions, values=vals, temporal=temporal, modality="MR")
    v = read_volume(s.folder)
    assert v.shape == (5, 6, 4, 3)
    assert v.spacing == pytest.approx((0.7, 0.8, 4.0))
    for t in range(3):
        for k in range(4):
            assert np.all(v.array[:, :, k, t] == 100 * t + k)
    assert any("4D" in w for w in v.meta.warnings)


def test_4d_without_temporal_tags_uses_instance_number(tmp_path):
    base = regular_positions((0, 0, 0), (0, 0, 1), 2.0, 3)
    positions = np.concatenate([base, base])
    inst = [1, 2, 3, 4, 5, 6]
    vals = [np.full((6, 5), 10 * (n // 3) + n % 3, dtype=np.int16) for n in range(6)]
    s = write_series(tmp_path / "s", positions, values=vals, instance_numbers=inst, modality="MR")
    v = read_volume(s.folder)
    assert v.shape == (5, 6, 3, 2)
    assert np.all(v.array[:, :, 2, 1] == 12)


def test_incomplete_4d_is_refused(tmp_path):
    base = regular_positions((0, 0, 0), (0, 0, 1), 2.0, 3)
    positions = np.concatenate([base, base[:2]])
    write_series(tmp_path / "s", positions, modality="MR")
    with pytest.raises(SeriesGeometryError, match="inconsistent number of images"):
        read_volume(tmp_path / "s")


def test_missing_slice_is_refused_with_its_place(tmp_path):
    positions = np.delete(regular_positions((0, 0, 0), (0, 0, 1), 2.0, 8), 4, axis=0)
    write_series(tmp_path / "s", positions)
    with pytest.raises(SeriesGeometryError, match=r"missing slices.*after slice 3"):
        read_volume(tmp_path / "s")


def test_uneven_spacing_refused_then_resampled_exactly(tmp_path):
    """A linear intensity ramp along z survives world-space resampling exactly."""
    z = np.array([0.0, 2.0, 3.0, 7.0, 8.0, 12.0])
    positions = np.array([[0.0, 0.0, zz] for zz in z])
    vals = [np.full((6, 5), int(10 * zz), dtype=np.int16) for zz in z]
    write_series(tmp_path / "s", positions, values=vals)
    with pytest.raises(SeriesGeometryError, match="non-uniform slice spacing"):
        read_volume(tmp_path / "s")
    v = read_volume(tmp_path / "s", resample_uneven=True, slice_spacing=1.0)
    assert v.shape == (5, 6, 13)
    assert v.spacing == pytest.approx((0.7, 0.8, 1.0))
    for k in range(13):
        world_z = (v.affine @ [0, 0, k, 1])[2]
        assert np.all(v.array[:, :, k] == int(round(10 * world_z)))


def test_gantry_tilt_resampled_in_world_space(tmp_path):
    """Slices stacked along z while tilted about x: value = f(world point) must hold
    at every resampled voxel that lies inside the scanned region."""
    tilt = np.radians(20)
    row_dir = np.array([1.0, 0, 0])
    col_dir = np.array([0, np.cos(tilt), -np.sin(tilt)])
    rows, cols, ps = 12, 10, (1.0, 1.0)
    positions = np.array([[0.0, 0.0, 3.0 * k] for k in range(8)])  # table steps along z

    def f(p):  # a linear function of world LPS position
        return 2.0 * p[0] + 3.0 * p[1] + 5.0 * p[2] + 100.0

    vals = []
    for p in positions:
        r, c = np.mgrid[0:rows, 0:cols]
        pts = p[None, None, :] + c[..., None] * ps[1] * row_dir + r[..., None] * ps[0] * col_dir
        vals.append(np.rint(np.apply_along_axis(f, -1, pts)).astype(np.int16))
    write_series(tmp_path / "s", positions, row_dir, col_dir, rows, cols, ps, values=vals)
    with pytest.raises(SeriesGeometryError, match="gantry tilt"):
        read_volume(tmp_path / "s")
    v = read_volume(tmp_path / "s", resample_uneven=True)
    normal = np.cross(row_dir, col_dir)
    np.testing.assert_allclose(v.direction[:, 2], (LPS_TO_RAS[:3, :3] @ normal), atol=1e-9)
    checked = 0
    for idx in np.ndindex(v.spatial_shape):
        p = (LPS_TO_RAS @ v.affine @ [*idx, 1.0])[:3]
        # inside the sheared stack, away from its edge: check f
        rel = p - positions[0]
        depth = rel @ normal
        k = depth / (3.0 * np.cos(tilt))
        if not 0 <= k <= 7:
            continue
        plane_origin = positions[0] + k * np.array([0, 0, 3.0])
        q = p - plane_origin
        c, r = q @ row_dir, q @ col_dir
        if 0.5 <= c <= cols - 1.5 and 0.5 <= r <= rows - 1.5:
            assert v.array[idx] == pytest.approx(f(p), abs=1.01)
            checked += 1
    assert checked > 200


def test_mixed_sizes_split_into_sub_series(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.1"
    write_series(tmp_path / "d", regular_positions((0, 0, 0), (0, 0, 1), 1, 5), series_uid=uid)
    write_series(
        tmp_path / "d" / "loc",
        [[0, 0, 0]],
        rows=8,
        cols=8,
        series_uid=uid,
        row_dir=(0, 1, 0),
        col_dir=(0, 0, -1),
    )
    listing = list_series(tmp_path / "d")
    assert [s["id"] for s in listing] == [f"{uid}#1", f"{uid}#2"]
    assert listing[0]["n_files"] == 5
    with pytest.raises(AmbiguousSeriesError, match="holds 2 image series"):
        read_volume(tmp_path / "d")
    with pytest.raises(AmbiguousSeriesError, match="was split"):
        read_volume(tmp_path / "d", series=uid)
    assert read_volume(tmp_path / "d", series=f"{uid}#1").shape == (5, 6, 5)


def test_several_series_listed_and_selectable(tmp_path):
    a = write_series(
        tmp_path / "d" / "a",
        regular_positions((0, 0, 0), (0, 0, 1), 1, 3),
        series_number=2,
        description="arterial",
    )
    b = write_series(
        tmp_path / "d" / "b",
        regular_positions((0, 0, 0), (0, 0, 1), 1, 4),
        series_number=3,
        description="venous",
    )
    with pytest.raises(AmbiguousSeriesError) as err:
        read_volume(tmp_path / "d")
    assert a.series_uid in str(err.value) and "venous" in str(err.value)
    assert read_volume(tmp_path / "d", series=b.series_uid).shape[2] == 4
    assert read_volume(tmp_path / "d", series="2").shape[2] == 3  # by series number
    with pytest.raises(AmbiguousSeriesError, match="no series '9'"):
        read_volume(tmp_path / "d", series="9")


def test_empty_folder_and_non_dicom_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoImageDataError, match="it is empty"):
        read_volume(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "notes").write_text("not an image")
    with pytest.raises(NoImageDataError, match="not DICOM"):
        read_volume(tmp_path / "txt")


def test_corrupt_dicom_is_named(tmp_path):
    s = write_series(tmp_path / "s", regular_positions((0, 0, 0), (0, 0, 1), 1, 3))
    data = s.files[0].read_bytes()
    s.files[0].write_bytes(data[: len(data) - 30])  # truncated pixel data
    with pytest.raises(CorruptFileError, match=s.files[0].name):
        read_volume(s.folder)


def test_garbage_after_dicm_magic_is_corrupt(tmp_path):
    f = tmp_path / "bad.dcm"
    f.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"x" * 20)
    with pytest.raises((CorruptFileError, NoImageDataError)):
        read_volume(f)


def test_single_file_reads_one_slice(tmp_path):
    s = write_series(tmp_path / "s", regular_positions((1, 2, 3), (0, 0, 1), 1, 3))
    v = read_volume(s.files[0])
    assert v.shape == (5, 6, 1)


def test_zero_pixel_spacing_is_a_corrupt_file(tmp_path):
    s = write_series(tmp_path / "s", regular_positions((0, 0, 0), (0, 0, 1), 1, 3), pixel_spacing=(0.0, 0.7))
    with pytest.raises(CorruptFileError, match="PixelSpacing must be positive"):
        read_volume(s.folder)
