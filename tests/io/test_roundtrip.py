"""Format round trips keep voxel data and affine exactly (property tests)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from medseg.errors import CorruptFileError, UnsupportedFormatError
from medseg.io import read_volume, write_volume
from medseg.volume import Volume


@st.composite
def affines(draw):
    kind = draw(st.sampled_from(["ras", "lps", "oblique", "flipped"]))
    spacing = np.array(draw(st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3)))
    origin = np.array(draw(st.lists(st.floats(-400, 400), min_size=3, max_size=3)))
    if kind == "ras":
        rot = np.eye(3)
    elif kind == "lps":
        rot = np.diag([-1.0, -1.0, 1.0])
    elif kind == "flipped":
        signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
        perm = draw(st.permutations([0, 1, 2]))
        rot = np.eye(3)[:, perm] * np.array(signs)
    else:
        seed = draw(st.integers(0, 2**31 - 1))
        rot = Rotation.random(random_state=seed).as_matrix()
        if draw(st.booleans()):
            rot[:, 0] *= -1  # improper (left-handed) grid
    a = np.eye(4)
    a[:3, :3] = rot * spacing
    a[:3, 3] = origin
    return a


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    affine=affines(),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    dtype=st.sampled_from([np.int16, np.uint8, np.float32, np.int32]),
)
def test_nifti_nrrd_mha_nifti_round_trip(tmp_path_factory, affine, shape, dtype):
    d = tmp_path_factory.mktemp("rt")
    rng = np.random.default_rng(0)
    data = (rng.normal(size=shape) * 100).astype(dtype)
    write_volume(Volume(data, affine), d / "a.nii.gz")
    first = read_volume(d / "a.nii.gz")  # NIfTI stores its sform in float32
    np.testing.assert_allclose(first.affine, affine, atol=1e-4)
    write_volume(first, d / "b.nrrd")
    write_volume(read_volume(d / "b.nrrd"), d / "c.mha")
    write_volume(read_volume(d / "c.mha"), d / "d.nii.gz")
    last = read_volume(d / "d.nii.gz")
    np.testing.assert_array_equal(last.array, data)
    assert last.array.dtype == data.dtype
    np.testing.assert_array_equal(last.affine, first.affine)  # bit-exact
    assert last.orientation == Volume(data, affine).orientation


@pytest.mark.parametrize("ext", ["nii", "nii.gz", "nrrd", "nhdr", "mha", "mhd"])
def test_each_format_keeps_float64_affine(tmp_path, ext):
    rot = Rotation.from_euler("xyz", [10, -20, 33], degrees=True).as_matrix()
    a = np.eye(4)
    a[:3, :3] = rot * [0.7, 0.9, 2.5]
    a[:3, 3] = [-123.456, 78.9, 310.5]
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    write_volume(Volume(data, a), tmp_path / f"x.{ext}")
    back = read_volume(tmp_path / f"x.{ext}")
    tol = 1e-4 if ext.startswith("nii") else 1e-9  # NIfTI sform is float32
    np.testing.assert_allclose(back.affine, a, atol=tol)
    np.testing.assert_array_equal(back.array, data)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_4d_round_trip_keeps_time_step(tmp_path):
    data = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    a = np.diag([-2.0, 2.0, 3.0, 1.0])
    v = Volume(data, a)
    v.meta.time_spacing = 2.5
    for ext in ("nii.gz", "nrrd", "mha"):
        write_volume(v, tmp_path / f"t.{ext}")
        back = read_volume(tmp_path / f"t.{ext}")
        np.testing.assert_array_equal(back.array, data)
        np.testing.assert_allclose(back.affine, a, atol=1e-6)
        assert back.meta.time_spacing == pytest.approx(2.5)


def test_sheared_affine_refused_by_itk_formats_but_kept_by_nifti(tmp_path):
    a = np.eye(4)
    a[0, 1] = 0.3  # shear
    v = Volume(np.zeros((2, 2, 2), np.uint8), a)
    with pytest.raises(UnsupportedFormatError, match="sheared"):
        write_volume(v, tmp_path / "s.nrrd")
    write_volume(v, tmp_path / "s.nii.gz")
    np.testing.assert_allclose(read_volume(tmp_path / "s.nii.gz").affine, a, atol=1e-6)


def test_qform_sform_disagreement_is_reported(tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4))
    img.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    img.set_qform(np.eye(4), code=1)
    nib.save(img, tmp_path / "q.nii.gz")
    v = read_volume(tmp_path / "q.nii.gz")
    assert v.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert any("qform and sform disagree" in w for w in v.meta.warnings)


def test_qform_only_file_uses_qform(tmp_path):
    a = np.diag([-1.5, 1.5, 3.0, 1.0])
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), None)
    img.set_qform(a, code=1)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "q.nii")
    np.testing.assert_allclose(read_volume(tmp_path / "q.nii").affine, a, atol=1e-6)


def test_truncated_files_raise_corrupt(tmp_path):
    v = Volume(np.ones((20, 20, 20), np.float32), np.eye(4))
    for ext in ("nii.gz", "nrrd", "mha"):
        write_volume(v, tmp_path / f"v.{ext}")
        raw = (tmp_path / f"v.{ext}").read_bytes()
        (tmp_path / f"v.{ext}").write_bytes(raw[: len(raw) // 2])
        with pytest.raises(CorruptFileError):
            read_volume(tmp_path / f"v.{ext}")


def test_unknown_extension_refused(tmp_path):
    with pytest.raises(UnsupportedFormatError, match=r"\.nii\.gz"):
        write_volume(Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "x.png")
    (tmp_path / "note.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="not a supported image"):
        read_volume(tmp_path / "note.txt")


def test_singular_sform_falls_back_to_qform_or_is_refused(tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), None)
    img.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    img.set_sform(np.diag([0.0, 2.0, 2.0, 1.0]), code=1)
    nib.save(img, tmp_path / "s.nii.gz")
    v = read_volume(tmp_path / "s.nii.gz")
    assert v.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert any("singular" in w for w in v.meta.warnings)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "t.nii.gz")
    with pytest.raises(CorruptFileError, match="singular affine"):
        read_volume(tmp_path / "t.nii.gz")
