"""Whether a NIfTI header declares its voxel size (``spacing_declared``): the LGG exports say
"unknown" units with 1 x 1 x 1, a placeholder the planner must not read as millimetres."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.io.nifti import spacing_declared


@pytest.mark.parametrize(
    ("units", "zooms", "declared"),
    [
        ("unknown", (1.0, 1.0, 1.0), False),  # restacked TIFF slices: nothing recorded
        ("mm", (1.0, 1.0, 1.0), True),  # a real 1 mm isotropic scan
        ("unknown", (0.8, 0.8, 3.0), True),  # unit-less but real sizes: read as mm (nibabel, ITK)
        ("micron", (1.0, 1.0, 1.0), True),
    ],
)
def test_spacing_declared(tmp_path, units, zooms, declared):
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.uint8), np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units(xyz=units)
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)
    assert spacing_declared(path) is declared


def test_unreadable_files_count_as_declared(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    assert spacing_declared(broken) is True  # the reader reports it; this is only a hint


def test_the_fingerprint_records_it(tmp_path):
    from medseg.planning.fingerprint import compute_fingerprint
    from tests.planning.test_fingerprint import _msd

    rng = np.random.default_rng(0)
    cases = {}
    for i in range(3):
        lab = np.zeros((20, 20, 6), np.uint8)
        lab[5:12, 5:12, 2:4] = 1
        cases[f"c{i}"] = (rng.normal(size=lab.shape).astype(np.float32), lab, np.eye(4))
    data = _msd(tmp_path / "d", cases)  # nibabel writes unit "unknown" unless told otherwise
    fp = compute_fingerprint(data, workers=1, use_cache=False)
    assert [c["spacing_declared"] for c in fp["cases"]] == [False] * 3
    assert fp["summary"]["spacing_undeclared_cases"] == 3
    images = sorted((data / "imagesTr").glob("*.nii.gz"))
    img = nib.load(images[0])  # one case says "mm": declared
    img.header.set_xyzt_units(xyz="mm")
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header), images[0])
    img = nib.load(images[1])  # one case has a real voxel size (0.5 x 0.5 x 2 mm), unit still unknown
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), np.diag([0.5, 0.5, 2.0, 1.0])), images[1])
    fp = compute_fingerprint(data, workers=1, use_cache=False)
    assert [c["spacing_declared"] for c in fp["cases"]] == [True, True, False]
