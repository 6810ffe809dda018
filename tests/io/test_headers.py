"""Header checks before native readers (issue #14).

Every read of a damaged header runs in a child process, so a segfault in
SimpleITK or nibabel fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import CorruptFileError
from medseg.io import write_volume
from medseg.io.headers import MAX_BYTES_ENV, check_header
from medseg.io.itk import write_itk
from medseg.volume import Volume

DATA = Path(__file__).parent / "data"
HANDED = {"ndims_1e30_segfault.mha": "NDims", "huge_dimsize_traceback.mha": "DimSize"}

#: Reads each path given on stdin in this one process; one JSON line per file, flushed
#: before the next read starts, so a crash names the file that caused it.
_DRIVER = """
import json, sys
from medseg.errors import MedsegError
from medseg.io import read_volume
for line in sys.stdin:
    path = line.strip()
    print(json.dumps({"start": path}), flush=True)
    try:
        v = read_volume(path)
        out = {"path": path, "outcome": "read", "shape": list(v.array.shape)}
    except MedsegError as exc:
        out = {"path": path, "outcome": "refused", "type": type(exc).__name__, "message": str(exc)}
    except Exception as exc:
        out = {"path": path, "outcome": "bug", "type": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out), flush=True)
"""

NASTY = ["0", "-1", "1e30", "nan", "inf", "garbage", None]


def read_in_child(paths: list[Path]) -> dict[str, dict]:
    """Outcome of ``read_volume`` for each path, all read in one child process."""
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input="\n".join(map(str, paths)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = {r["path"]: r for r in records if "outcome" in r}
    if proc.returncode != 0:
        started = [r["start"] for r in records if "start" in r and r["start"] not in done]
        pytest.fail(f"the reader died (exit {proc.returncode}) on {started}: {proc.stderr[-2000:]}")
    return done


def test_handed_files_give_one_line_errors():
    for name, field in HANDED.items():
        proc = subprocess.run(
            [sys.executable, "-m", "medseg", "info", str(DATA / name)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == CorruptFileError.exit_code, (name, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert name in lines[0] and f"'{field}'" in lines[0], lines[0]


# --- a valid file of each format, then one header field changed --------------------------

_VOLUME_AFFINE = np.array([[0.8, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1.0]])
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
#: (suffix, field, value) -> read correctly rather than refused; "either" may go both ways.
_MHA, _NRRD, _NII = (".mha", ".mhd"), (".nrrd", ".nhdr"), (".nii", ".nii.gz")


def _table(suffixes: tuple[str, ...], fields: list[str], values: list, outcome: str) -> dict:
    return {(s, f, v): outcome for s in suffixes for f in fields for v in values}


#: (suffix, field, value) read correctly rather than refused ("either": both are right);
#: every other mutation must be refused by the header check, naming the field.
_READS = {
    **_table(_MHA, ["ElementSpacing", "TransformMatrix", "Offset", "CompressedData"], [None], "read"),
    **_table(_MHA, ["CompressedData"], ["0"], "read"),
    **_table(_MHA, ["Offset"], ["0", "-1"], "read"),
    **_table(_MHA, ["TransformMatrix"], ["-1"], "read"),  # the base matrix starts with -1
    **_table(_MHA, ["ElementSpacing", "TransformMatrix", "Offset"], ["1e30"], "either"),
    **_table(_NRRD, ["space directions", "space origin", "kinds", "byte skip"], [None], "read"),
    **_table(_NRRD, ["byte skip"], ["0"], "read"),
    **_table(_NRRD, ["space origin"], ["0", "-1"], "read"),
    **_table(_NRRD, ["space directions"], ["-1"], "read"),
    **_table(_NRRD, ["space directions", "space origin"], ["1e30"], "either"),
    (".nhdr", "byte skip", "-1"): "read",
    **_table(_NII, ["vox_offset"], [0], "read"),
    **_table(_NII, ["scl_slope"], [0, -1, 1e30, np.nan], "read"),
    **_table(_NII, ["srow_x"], [0, -1, 1e30], "either"),
    # the test files carry an sform, which nibabel uses instead of pixdim: a bad voxel size there
    # changes nothing (NIfTI-1: pixdim feeds the qform only); non-finite values are still refused
    **_table(_NII, ["pixdim"], [0, -1, 1e30], "read"),
}
_TEXT_FIELDS = {
    ".mha": [
        "NDims",
        "DimSize",
        "ElementSpacing",
        "ElementType",
        "TransformMatrix",
        "Offset",
        "CompressedData",
    ],
    ".nrrd": [
        "dimension",
        "sizes",
        "type",
        "encoding",
        "endian",
        "space directions",
        "space origin",
        "kinds",
    ],
}
_TEXT_FIELDS[".mhd"] = [*_TEXT_FIELDS[".mha"], "ElementDataFile"]
_TEXT_FIELDS[".nhdr"] = [*_TEXT_FIELDS[".nrrd"], "data file", "byte skip"]
_MULTI = {
    "DimSize",
    "ElementSpacing",
    "TransformMatrix",
    "Offset",
    "sizes",
    "space directions",
    "space origin",
}
_NIFTI_VALUES = {
    "dim": [0, -1, 32767, 8],
    "pixdim": [0, -1, 1e30, np.nan, np.inf],
    "vox_offset": [0, -1, 1e30, np.nan, np.inf, 100],
    "datatype": [0, -1, 32767, 1536],
    "sizeof_hdr": [0, -1, 2**31 - 1],
    "srow_x": [0, -1, 1e30, np.nan, np.inf],
    "scl_slope": [0, -1, 1e30, np.nan, np.inf],
    "magic": [b"xx1", b"ni1", b""],
}


def _bases(folder: Path) -> dict[str, Path]:
    vol = Volume(np.arange(210, dtype=np.int16).reshape(5, 6, 7), _VOLUME_AFFINE)
    out = {}
    for name, compress in (("a.mha", False), ("b.mhd", False), ("c.nrrd", True), ("d.nhdr", False)):
        out[Path(name).suffix] = write_itk(vol, folder / name, compress=compress)
    out[".nii"] = write_volume(vol, folder / "e.nii")
    out[".nii.gz"] = write_volume(vol, folder / "f.nii.gz")
    return out


def _header_span(data: bytes, suffix: str) -> int:
    if suffix in (".mha", ".mhd"):
        return data.index(b"\n", data.index(b"ElementDataFile")) + 1
    end = data.find(b"\n\n")
    return end + 1 if end >= 0 else len(data)


def _edit_text(path: Path, suffix: str, field: str, value: str | None) -> None:
    """Set ``field`` to ``value`` (the first number only, for vector fields), add it
    when absent, or remove it (``None``)."""
    data = path.read_bytes()
    end = _header_span(data, suffix)
    lines = data[:end].decode("latin-1").split("\n")
    sep = " = " if suffix in (".mha", ".mhd") else ": "
    index = next((i for i, line in enumerate(lines) if line.startswith(field + sep.rstrip())), None)
    if value is None:
        if index is not None:
            del lines[index]
    elif index is None:
        lines.insert(len(lines) - 2 if sep == " = " else 1, f"{field}{sep}{value}")
    else:
        old = lines[index].split(sep.strip(), 1)[1].strip()
        new = _NUMBER.sub(value, old, count=1) if field in _MULTI else value
        lines[index] = f"{field}{sep}{new}"
    path.write_bytes("\n".join(lines).encode("latin-1") + data[end:])


def _edit_nifti(path: Path, field: str, value) -> None:
    raw = bytearray(nib.openers.Opener(str(path)).read())
    hdr = np.frombuffer(raw, dtype=nib.nifti1.header_dtype, count=1).copy()
    if field == "dim":
        hdr["dim"][0][0 if value in (0, -1, 8) else 1] = value
    elif field in ("pixdim", "srow_x"):
        hdr[field][0][1 if field == "pixdim" else 0] = value
    else:
        hdr[field] = value
    raw[:348] = hdr.tobytes()
    with nib.openers.Opener(str(path), "wb") as f:
        f.write(bytes(raw))


def _mutations(tmp_path: Path, rng: random.Random | None = None):
    """(path, suffix, field, value) of every mutated copy of the valid files."""
    bases = _bases(tmp_path / "base")
    cases = [(s, f, v) for s, fields in _TEXT_FIELDS.items() for f in fields for v in NASTY]
    cases += [(s, f, v) for s in (".nii", ".nii.gz") for f, vs in _NIFTI_VALUES.items() for v in vs]
    cases += [(".mhd", "ElementDataFile", v) for v in ("../../etc/passwd", "/etc/passwd", "LIST")]
    cases += [(".nhdr", "data file", v) for v in ("../../etc/passwd", "/etc/passwd", "LIST")]
    cases += [(s, "DimSize", "5 6 70000") for s in (".mha", ".mhd")] + [(".nhdr", "sizes", "5 6 70000")]
    if rng is not None:  # random values in random fields: never a crash
        tokens = ["", "1 2 3 4 5", "1e308", "-0", "0x10", "9" * 30, "é", "(1,2)", "%s", "LOCAL", "2"]
        cases = [(s, rng.choice(fs), rng.choice(tokens)) for s, fs in _TEXT_FIELDS.items() for _ in range(12)]
    for n, (suffix, field, value) in enumerate(cases):
        folder = tmp_path / f"m{n}"
        shutil.copytree(tmp_path / "base", folder)
        path = folder / bases[suffix].name
        if suffix.startswith(".nii"):
            _edit_nifti(path, field, value)
        else:
            _edit_text(path, suffix, field, value)
        yield path, suffix, field, value


def _outcome_ok(record: dict, expected: str, field: str) -> bool:
    if record["outcome"] == "read":
        return expected in ("read", "either")
    if record["outcome"] != "refused" or record["type"] not in ("CorruptFileError", "UnsupportedFormatError"):
        return False
    return expected == "either" or (expected == "refuse" and f"'{field}'" in record["message"])


def test_every_damaged_header_field_is_refused_or_read_never_a_crash(tmp_path):
    cases = list(_mutations(tmp_path))
    records = read_in_child([c[0] for c in cases])
    wrong = []
    for path, suffix, field, value in cases:
        expected = _READS.get((suffix, field, value), "refuse")  # np.nan: the same object
        if not _outcome_ok(records[str(path)], expected, field):
            wrong.append((suffix, field, value, expected, records[str(path)]))
    assert not wrong, "\n".join(map(str, wrong))
    assert len(cases) > 150
    for record in records.values():
        assert "\n" not in record.get("message", "")


def test_random_header_values_never_crash(tmp_path):
    cases = list(_mutations(tmp_path, random.Random(14)))
    records = read_in_child([c[0] for c in cases])
    bad = [r for r in records.values() if r["outcome"] == "bug"]
    assert not bad and len(records) == len(cases), bad


def test_valid_files_pass_and_size_limit_is_configurable(tmp_path, monkeypatch):
    bases = _bases(tmp_path)
    for path in bases.values():
        check_header(path)
    monkeypatch.setenv(MAX_BYTES_ENV, "100")
    for path in bases.values():
        with pytest.raises(CorruptFileError, match=f"GiB limit.*{MAX_BYTES_ENV}"):
            check_header(path)


def test_nifti2_and_list_data_files(tmp_path):
    vol = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nib.save(nib.Nifti2Image(vol, np.eye(4)), tmp_path / "n2.nii")
    check_header(tmp_path / "n2.nii")
    for z in range(4):
        (tmp_path / f"s{z}.raw").write_bytes(vol[:, :, z].T.tobytes())
    header = "NDims = 3\nDimSize = 2 3 4\nElementType = MET_FLOAT\nElementDataFile = LIST\n"
    (tmp_path / "l.mhd").write_text(header + "".join(f"s{z}.raw\n" for z in range(4)))
    records = read_in_child([tmp_path / "l.mhd"])
    assert records[str(tmp_path / "l.mhd")]["outcome"] == "read"
    (tmp_path / "bad.mhd").write_text(header + "s0.raw\n../s1.raw\n")
    with pytest.raises(CorruptFileError, match="outside the header's folder"):
        check_header(tmp_path / "bad.mhd")
