"""Reading in a worker process: a native crash fails one input, the rest go on (issue #14)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import ConfigError, CorruptFileError, ReaderCrashedError
from medseg.io import read_volume
from medseg.io.isolated import READER_ENV, TIMEOUT_ENV, IsolatedReader
from tests.fixtures.models import make_run
from tests.inference import crashing_reader

REPO = Path(__file__).resolve().parents[2]
HANDED = REPO / "tests" / "io" / "data" / "ndims_1e30_segfault.mha"


def _nifti(path: Path, shape=(20, 18, 12)) -> Path:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def test_a_crash_fails_one_read_and_the_next_read_works(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(READER_ENV, crashing_reader.NAME)
    good = _nifti(tmp_path / "good.nii.gz")
    (tmp_path / "segfault.nii.gz").write_bytes(good.read_bytes())
    (tmp_path / "logs.nii.gz").write_bytes(good.read_bytes())
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08 not gzip")
    with IsolatedReader() as reader:
        np.testing.assert_array_equal(reader.read(good).array, read_volume(good).array)
        with pytest.raises(
            ReaderCrashedError, match=r"segfault.nii.gz: reader crashed \(signal 11, SIGSEGV\)"
        ):
            reader.read(tmp_path / "segfault.nii.gz")
        with pytest.raises(CorruptFileError) as info:  # errors come back with their hint
            reader.read(tmp_path / "bad.nii.gz")
        assert info.value.hint
        with caplog.at_level(logging.WARNING):
            assert reader.read(tmp_path / "logs.nii.gz").array.shape == (20, 18, 12)
        assert "a warning from the reader process" in caplog.text


def test_a_hanging_reader_is_killed_after_the_time_limit(tmp_path, monkeypatch):
    """A native reader that loops forever on one input (ITK did, on a damaged compressed
    MetaImage) costs that input the time limit, not the batch."""
    monkeypatch.setenv(READER_ENV, crashing_reader.NAME)
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    good = _nifti(tmp_path / "good.nii.gz")
    (tmp_path / "hang.nii.gz").write_bytes(good.read_bytes())
    with IsolatedReader() as reader:
        reader.read(good)  # the worker's start is not part of the limit under test
        t0 = time.monotonic()
        with pytest.raises(ReaderCrashedError, match=r"hang.nii.gz: reader gave no answer in 3 s \(killed\)"):
            reader.read(tmp_path / "hang.nii.gz")
        assert time.monotonic() - t0 < 60  # killed, not waited for (the reader sleeps an hour)
        np.testing.assert_array_equal(reader.read(good).array, read_volume(good).array)
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="MEDSEG_READ_TIMEOUT"), IsolatedReader() as reader:
        reader.read(good)


def test_worker_is_reused_and_reads_exactly(tmp_path):
    """One worker serves every case (its start is paid once) and returns the very volume a
    direct read gives; the per-case cost is measured in docs/benchmarks.md, not asserted here."""
    paths = [_nifti(tmp_path / f"c{i}.nii.gz") for i in range(5)]
    volumes, pids = [], set()
    with IsolatedReader() as reader:
        for p in paths:
            volumes.append(reader.read(p))
            pids.add(reader._process.pid)
    for p, v in zip(paths, volumes):
        direct = read_volume(p)
        np.testing.assert_array_equal(v.array, direct.array)
        np.testing.assert_array_equal(v.affine, direct.affine)
        assert v.array.dtype == direct.array.dtype
    assert len(pids) == 1


def test_batch_survives_a_reader_crash(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "segfault", "z"):
        _nifti(inputs / f"{name}.nii.gz")
    (inputs / "ndims_1e30.mha").write_bytes(HANDED.read_bytes())  # refused, never reaches SimpleITK
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1", **{READER_ENV: crashing_reader.NAME})
    argv = ["predict", "-m", str(run), "-i", str(inputs), "-o", str(out), "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-m", "medseg", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 14, proc.stderr
    assert "Traceback" not in proc.stderr
    cases = {c["id"]: c for c in json.loads((out / "predictions.json").read_text())["cases"]}
    assert cases["a"]["status"] == cases["z"]["status"] == "ok"
    assert (out / "a.nii.gz").exists() and (out / "z.nii.gz").exists()
    crashed = cases["segfault"]
    assert crashed["status"] == "failed"
    assert crashed["error"].startswith("segfault.nii.gz: reader crashed (signal 11, SIGSEGV)")
    assert "\n" not in crashed["error"]
    handed = cases["ndims_1e30"]
    assert handed["status"] == "failed" and "header field 'NDims'" in handed["error"]
