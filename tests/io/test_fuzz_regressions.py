"""Inputs the fuzz campaign (benchmarks/fuzz_readers.py) found, and the whole kind of each.

Each named input lives in ``tests/io/data/fuzz/<name>/`` and is read by ``medseg info`` in a
child process with a time limit, so a hang or a crash fails the test instead of the suite.
"""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import CorruptFileError

FUZZ = Path(__file__).parent / "data" / "fuzz"

#: name -> (medseg command, paths in it relative to the input's folder, text the error must hold)
FOUND = {
    # ITK's MetaIO looped forever on a damaged zlib stream behind an intact header
    "metaimage_damaged_zraw_hang": (["info", "d.mhd"], "damaged compressed stream"),
    # tifffile followed a chain of image directories that points back into itself, forever
    "tiff_ifd_loop_hang": (["info", "slice.tif"], "chain of image directories"),
    "tiff_ifd_loop_hang_small": (["info", "slice.tif"], "chain of image directories"),
    # highdicom's SQLite frame index failed on a SEG with a damaged segment reference
    "dicom_seg_frame_index_sqlite": (
        ["convert", "seg.dcm", "{out}/seg.nii.gz", "--reference", "reference"],
        "cannot read DICOM SEG",
    ),
}


def _medseg(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medseg", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def _info(path: Path) -> subprocess.CompletedProcess:
    return _medseg(["info", str(path)], path.parent)


@pytest.mark.parametrize("name", sorted(FOUND))
def test_found_inputs_give_one_line_errors(name, tmp_path):
    args, needle = FOUND[name]
    proc = _medseg([a.format(out=tmp_path) for a in args], FUZZ / name)
    assert proc.returncode == CorruptFileError.exit_code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def _compressed_metaimage(folder: Path, suffix: str) -> tuple[Path, np.ndarray]:
    import SimpleITK as sitk

    array = np.arange(6 * 9 * 7, dtype=np.int16).reshape(6, 9, 7)
    path = folder / f"v{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), True)
    return path, array


@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "junk", "zeros"])
def test_damaged_compressed_metaimage_data_is_refused_never_a_hang(tmp_path, suffix, damage):
    header, array = _compressed_metaimage(tmp_path, suffix)
    data = header if suffix == ".mha" else next(tmp_path.glob("*.zraw"))
    blob = bytearray(data.read_bytes())
    start = blob.find(b"ElementDataFile = LOCAL\n") + 24 if suffix == ".mha" else 0
    middle = start + (len(blob) - start) // 2
    if damage == "flip":
        blob[middle] ^= 0xFF
        blob[middle + 1] ^= 0x5A
    elif damage == "truncate":
        del blob[middle:]
    elif damage == "junk":
        blob[middle:] = b"\x01\x02" * (len(blob) - middle)
    else:
        blob[start + 2 : start + 40] = bytes(38)
    data.write_bytes(bytes(blob))
    try:
        decodable = len(zlib.decompress(bytes(blob[start:]))) == array.nbytes
    except zlib.error:
        decodable = False
    proc = _info(header)
    if decodable:  # the damage left a valid stream: then it reads
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == CorruptFileError.exit_code, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_contour_vertex_far_off_the_grid_costs_no_memory():
    """Found by fuzzing an RTSTRUCT: a vertex at 1e12 voxels made the outline rasteriser
    enumerate 2.7e12 points (20 TiB). Only the image's rows and columns are enumerated now, and
    the fill still agrees with scikit-image's polygon fill, which clips to the image too."""
    import resource

    from skimage.draw import polygon2mask

    from medseg.io.dicom.contours import fill_contours

    # (row, col) vertices; no pixel centre lies on an edge, so the two fill rules agree exactly
    polygon = np.array([[3.3, 2.6], [1e12, 7.3], [12.7, 11.2]])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:  # this process's address space now, plus 4 GiB
        cap = int(fh.read().split()[0]) * resource.getpagesize() + 2**32
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        mask = fill_contours([polygon], (20, 16))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert np.array_equal(mask, polygon2mask((20, 16), polygon))
    assert mask.sum() > 0
