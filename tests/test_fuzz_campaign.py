"""A short seeded run of the reader fuzz campaign (benchmarks/fuzz_readers.py runs the long one).

Every reader family gets mutated inputs (truncated files, flipped bytes, wrong VRs, missing or
contradictory tags and fields, absurd sizes and spacings, NaN and Inf, empty sequences); each is
read in a worker process with a 2 GiB address-space cap and a time limit. Every input must read
correctly or be refused with one of medseg's own one-line errors.
"""

from __future__ import annotations

import pytest

from benchmarks.fuzz.families import FAMILIES, SHARED
from benchmarks.fuzz.runner import FINDINGS, Worker, run_family

#: Families whose seeds all come from ../shared (the others also have seeds written here).
NEEDS_SHARED = {"dicom-series", "dicom-seg", "dicom-rtstruct"}
INPUTS = 40

# mutating DICOM through pydicom warns about every invalid value it is asked to write
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def worker():
    w = Worker(memory_gb=2.0)
    w.start()
    yield w
    w.stop()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_short_campaign_finds_nothing(name, worker, tmp_path):
    if name in NEEDS_SHARED and not (SHARED / "cases").is_dir():
        pytest.skip(f"{name} seeds come from ../shared/cases and ../shared/datasets, which are absent")
    result = run_family(FAMILIES[name], INPUTS, seed=1129, worker=worker, findings_dir=tmp_path)
    assert result.inputs == INPUTS
    assert result.outcomes["ok"] + result.outcomes["refused"] == INPUTS, result.findings
    assert not any(result.outcomes[k] for k in FINDINGS), result.findings


def test_the_harness_reports_a_crash_and_recovers(worker, tmp_path):
    """A reader that segfaults is reported as a crash, and the next input gets a new worker
    (so a clean campaign means something)."""
    assert worker.read("crash-test", tmp_path / "x", timeout=30)["outcome"] == "crash"
    assert worker.read("manifest", tmp_path / "missing.json", timeout=30)["outcome"] == "refused"
