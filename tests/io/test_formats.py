"""The input format table: suffix and case-id helpers, dispatch of read/write, and that it
is the only suffix list in the package."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import UnsupportedFormatError
from medseg.io import FORMATS, WRITABLE, read_volume, write_volume
from medseg.io.formats import (
    DICOM,
    case_id,
    describe_formats,
    format_for,
    format_named,
    image_suffix,
    is_2d_name,
    is_companion,
    is_image,
)
from medseg.volume import Volume

PACKAGE = Path(__file__).resolve().parents[2] / "medseg"


@pytest.mark.parametrize(
    ("name", "suffix", "cid", "fmt"),
    [
        ("liver_007.nii.gz", ".nii.gz", "liver_007", "nifti"),
        ("dir/liver_007.nii", ".nii", "liver_007", "nifti"),
        ("CT.NII.GZ", ".nii.gz", "CT", "nifti"),
        ("a.b.nrrd", ".nrrd", "a.b", "nrrd"),
        ("x.nhdr", ".nhdr", "x", "nrrd"),
        ("x.mha", ".mha", "x", "mha"),
        ("x.MHD", ".mhd", "x", "mha"),
        ("slice_01.png", ".png", "slice_01", "png"),
        ("SLICE_01.PNG", ".png", "SLICE_01", "png"),
        ("em.tif", ".tif", "em", "tiff"),
        ("em.tiff", ".tiff", "em", "tiff"),
        ("em.TIF", ".tif", "em", "tiff"),
        ("xray.jpg", ".jpg", "xray", "jpeg"),
        ("xray.JPEG", ".jpeg", "xray", "jpeg"),
        ("h.bmp", ".bmp", "h", "bmp"),
    ],
)
def test_suffix_case_id_and_format_of_each_row(name, suffix, cid, fmt):
    assert image_suffix(name) == suffix
    assert case_id(name) == cid
    assert is_image(name)
    assert format_for(name).name == fmt
    assert format_for(name) is format_named(fmt)


def test_longest_suffix_wins_and_non_images_are_none():
    assert image_suffix("scan.nii.gz") == ".nii.gz"  # not ".gz"-blind ".nii"
    assert case_id("scan.nii.gz") == "scan"
    for name in ("notes.txt", "scan.gz", "data.raw", "series.dcm", "DICOMDIR", ".png", "png"):
        assert image_suffix(name) is None and not is_image(name) and format_for(name) is None
        assert case_id(name) == name
    assert is_companion("a.raw") and is_companion("a.zraw") and is_companion("a.raw.gz")
    assert not is_companion("a.nii.gz")


def test_rows_are_frozen_with_unique_lowercase_suffixes():
    suffixes = [s for f in FORMATS for s in f.suffixes]
    assert len(suffixes) == len(set(suffixes))
    assert all(s == s.lower() and s.startswith(".") for s in suffixes)
    assert {f.name for f in FORMATS} >= {"nifti", "nrrd", "mha", "png", "tiff", "jpeg", "bmp"}
    assert {f.name for f in FORMATS if f.two_d} == {"png", "tiff", "jpeg", "bmp"}
    assert all(f.reader is not None for f in FORMATS)
    with pytest.raises(AttributeError):
        FORMATS[0].name = "other"  # type: ignore[misc]
    assert ".jpg" not in WRITABLE and ".png" in WRITABLE and ".nii.gz" in WRITABLE
    assert is_2d_name("a.png") and not is_2d_name("a.nii.gz")
    assert DICOM not in FORMATS and ".dcm" in DICOM.suffixes


def test_read_and_write_dispatch_through_the_table(tmp_path):
    vol = Volume(np.arange(24, dtype=np.uint8).reshape(4, 6, 1), np.eye(4))
    for fmt in FORMATS:
        if fmt.writer is None:
            continue
        path = write_volume(vol, tmp_path / f"v{fmt.suffixes[0]}")
        back = read_volume(path)
        assert back.meta.source_format == fmt.name
        assert np.array_equal(back.array, vol.array), fmt.name
        assert np.allclose(back.affine, vol.affine)


def test_unknown_suffixes_are_refused_listing_the_known_ones(tmp_path):
    vol = Volume(np.zeros((2, 2, 1), np.uint8), np.eye(4))
    with pytest.raises(UnsupportedFormatError, match=r"cannot write x\.xyz.*\.nii\.gz.*\.png.*\.tif"):
        write_volume(vol, tmp_path / "x.xyz")
    with pytest.raises(UnsupportedFormatError, match="JPEG"):
        write_volume(vol, tmp_path / "x.jpg")
    (tmp_path / "note.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"not a supported image.*\.nii\.gz.*\.png.*\.bmp"):
        read_volume(tmp_path / "note.txt")
    assert "TIFF (.tif, .tiff)" in describe_formats() and "JPEG" not in describe_formats(writable=True)


#: Files that may spell out image suffixes besides the table: the header checks (one per
#: format's header syntax) and the export registry (the names of the files it writes).
_SUFFIX_EXCEPTIONS = {
    "io/formats.py",
    "io/headers/__init__.py",
    "io/headers/metaimage.py",
    "io/headers/nrrd.py",
    "export/registry.py",
}


def test_no_other_suffix_list_in_the_package():
    """Image suffixes are spelled out in the format table; discovery, matching, manifests,
    data loading and export ask it."""
    pattern = re.compile(r"""["']\.(nii\.gz|nii|nrrd|nhdr|mha|mhd|png|tiff?|jpe?g|bmp|raw|zraw)["']""")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in _SUFFIX_EXCEPTIONS:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#", 1)[0]):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
