"""Case matching over every format of the format table, and the picture + NIfTI pair that
``medseg predict --format nifti`` writes for a 2D input."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.evaluation import case_id, list_cases, match_cases
from medseg.io import write_volume
from medseg.volume import Volume


def _mask(path):
    write_volume(Volume(np.zeros((4, 5, 1), np.uint8), np.eye(4)), path)


def test_case_ids_of_every_format():
    for name in ("s1.png", "s1.PNG", "s1.tif", "s1.tiff", "s1.jpg", "s1.bmp", "s1_0000.nii.gz", "s1.mhd"):
        assert case_id(name) == "s1", name


def test_picture_and_nifti_of_one_case_match_the_reference_kind(tmp_path):
    pred, png_ref, nii_ref = tmp_path / "pred", tmp_path / "png_ref", tmp_path / "nii_ref"
    for folder in (pred, png_ref, nii_ref):
        folder.mkdir()
    for name in ("a.png", "a.nii.gz", "b.png", "b.nii.gz"):
        _mask(pred / name)
    _mask(png_ref / "a.png")
    _mask(nii_ref / "a.nii.gz")
    assert match_cases(pred, png_ref).pairs == [("a", pred / "a.png", png_ref / "a.png")]
    assert match_cases(pred, nii_ref).pairs == [("a", pred / "a.nii.gz", nii_ref / "a.nii.gz")]
    assert match_cases(pred, png_ref).unmatched_pred == ["b"]
    assert list_cases(pred)["b"] == pred / "b.png"


def test_two_files_of_one_kind_stay_an_error(tmp_path):
    for name in ("a.png", "a.tif"):
        _mask(tmp_path / name)
    with pytest.raises(MedsegError, match="two files for case 'a'"):
        list_cases(tmp_path)
