"""Shared helpers for the export tests: independent validators and a synthetic series."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.dicom_factory import base_dataset, regular_positions, write_series

ARTIFACTS = os.environ.get("MEDSEG_TEST_ARTIFACTS")


def dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    """Run dicom3tools' dciodvfy; returns (error lines, warning lines). Skips when absent."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: apt-get install dicom3tools")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, warnings


def assert_dciodvfy_clean(path: Path) -> list[str]:
    """No ``Error`` line from dciodvfy (warnings are returned for reporting)."""
    errors, warnings = dciodvfy_errors(path)
    assert not errors, f"dciodvfy errors for {path.name}:\n" + "\n".join(errors)
    return warnings


def segimage2itkimage() -> str:
    """Path of dcmqi's segimage2itkimage (the converter 3D Slicer uses); skips when absent."""
    candidates = [shutil.which("segimage2itkimage"), str(Path(sys.executable).parent / "segimage2itkimage")]
    try:
        import dcmqi  # the PyPI wheel ships the binary inside the package

        candidates.append(str(Path(dcmqi.__file__).parent / "bin" / "segimage2itkimage"))
    except ImportError:
        pass
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    pytest.skip("dcmqi's segimage2itkimage is not installed (pip install dcmqi)")


def dcmqi_read(seg_path: Path, out_dir: Path) -> tuple[list[Path], dict]:
    """Convert a SEG with segimage2itkimage: one NIfTI per segment plus the meta JSON."""
    exe = segimage2itkimage()
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [exe, "--inputDICOM", str(seg_path), "--outputDirectory", str(out_dir), "-t", "nifti"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = json.loads((out_dir / "meta.json").read_text())
    files = sorted(out_dir.glob("*.nii.gz"), key=lambda p: int(p.name.split(".")[0]))
    return files, meta


def embed_exactly(
    array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, target_shape
) -> np.ndarray:
    """Place ``array`` (on a grid that is a permutation/flip and integer shift of the target
    grid) onto the target grid, with plain numpy; fails when the grids do not align."""
    m = np.linalg.solve(target_affine, affine)  # source voxel -> target voxel
    r = np.rint(m[:3, :3]).astype(int)
    assert np.allclose(m[:3, :3], r, atol=1e-3), f"grids are not axis-aligned:\n{m}"
    assert np.allclose(m[:3, 3], np.rint(m[:3, 3]), atol=1e-2), f"grids are shifted by a fraction:\n{m}"
    offset = np.rint(m[:3, 3]).astype(int)
    source_axis = [int(np.flatnonzero(r[a])[0]) for a in range(3)]  # target axis a <- source axis
    moved = np.transpose(array, source_axis)
    lo = []
    for a in range(3):
        if r[a, source_axis[a]] < 0:
            moved = np.flip(moved, axis=a)
            lo.append(offset[a] - (moved.shape[a] - 1))
        else:
            lo.append(offset[a])
    out = np.zeros(tuple(target_shape), dtype=array.dtype)
    dst, src = [], []
    for a in range(3):
        start, stop = max(lo[a], 0), min(lo[a] + moved.shape[a], int(target_shape[a]))
        dst.append(slice(start, stop))
        src.append(slice(start - lo[a], stop - lo[a]))
    assert moved[tuple(src)].sum() == moved.sum(), "labelled voxels fall outside the target grid"
    out[tuple(dst)] = moved[tuple(src)]
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def keep_artifact(path: Path) -> None:
    """Copy a picture to $MEDSEG_TEST_ARTIFACTS when set (to look at it after the run)."""
    if ARTIFACTS:
        Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(ARTIFACTS) / path.name)


@dataclass
class Synthetic:
    """A synthetic oblique CT series and a label map drawn in DICOM pixel space per file."""

    folder: Path
    series: object  # SyntheticSeries
    frames: dict[str, np.ndarray]  # SOPInstanceUID -> label frame [row, column]
    order: list[int]  # file indices ascending along the normal
    rows: int
    cols: int

    def label_volume_array(self) -> np.ndarray:
        """The label map in medseg's documented voxel order, built here independently:
        array[c, Rows-1-r, k] = frame_k[r, c], slices ascending along the normal."""
        out = np.zeros((self.cols, self.rows, len(self.order)), dtype=np.uint8)
        for k, f in enumerate(self.order):
            frame = self.frames[self.series.sop_uids[f]]
            out[:, :, k] = frame.T[:, ::-1]
        return out


def draw_frames(rows: int, cols: int, n: int) -> list[np.ndarray]:
    """Label frames with islands, holes and an absent class (2): label 1 is a ring (a hole)
    plus a separate island; label 3 a disc; label 4 a small square on one slice."""
    rr, cc = np.mgrid[0:rows, 0:cols]
    frames = []
    for k in range(n):
        f = np.zeros((rows, cols), dtype=np.uint8)
        if 0 < k < n - 1:
            d = np.hypot(rr - rows * 0.4, cc - cols * 0.35)
            f[(d < 7 + k % 2) & (d >= 3)] = 1  # ring with a hole
            f[rows - 6 : rows - 3, 2:5] = 1  # island
            f[np.hypot(rr - rows * 0.6, cc - cols * 0.75) < 4.5] = 3
        if k == 1:
            f[2:4, cols - 4 : cols - 2] = 4
        frames.append(f)
    return frames


def make_synthetic(
    folder: Path,
    rows: int = 28,
    cols: int = 32,
    n: int = 5,
    oblique: bool = True,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
) -> Synthetic:
    """Write the series (CT values: soft tissue where labelled, fat elsewhere)."""
    if oblique:
        a, b = np.radians(20), np.radians(15)  # an orthonormal, doubly oblique pair
        row_dir = (np.cos(a), np.sin(a), 0.0)
        col_dir = (-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), -np.sin(b))
    else:
        row_dir, col_dir = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    normal = np.cross(row_dir, col_dir)
    positions = regular_positions((-20.0, 10.0, 30.0), normal, 2.5, n)
    frames = draw_frames(rows, cols, n)
    values = [np.where(f > 0, 1064, 924).astype(np.int16) for f in frames]  # stored + (-1024)
    study, _ = base_dataset()  # one study and frame of reference for every file
    series = write_series(
        folder,
        positions,
        row_dir=row_dir,
        col_dir=col_dir,
        rows=rows,
        cols=cols,
        pixel_spacing=pixel_spacing,
        intercept=-1024,
        values=values,
        extra={
            "PatientAge": "054Y",
            "PatientWeight": "71",
            "PatientComments": "private comment",
            "StudyDescription": "CHEST",
            "OtherPatientIDs": "OTHER-1",
            "PatientBirthDate": "19700101",
            "PatientSex": "F",
            "AccessionNumber": "ACC1",
            "StudyID": "S1",
            "StudyTime": "101010",
            "ReferringPhysicianName": "Ref^Doc",
            "PositionReferenceIndicator": "XY",
        },
        series_number=7,
        study=study,
    )
    depth = [float(np.dot(p, normal)) for p in series.positions]
    order = [int(i) for i in np.argsort(depth)]
    return Synthetic(folder, series, {series.sop_uids[i]: frames[i] for i in range(n)}, order, rows, cols)


LABELS = {
    "labels": [
        {"index": 1, "name": "liver"},
        {"index": 2, "name": "kidney_left"},
        {"index": 3, "name": "Tumour", "color": [255, 0, 0]},
        {"index": 4, "name": "my_marker"},
    ]
}
