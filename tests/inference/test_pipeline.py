"""The overlapped prediction pipeline of ``predict_folder``: same outputs as one case at a time,
one bad case (unreadable, unwritable) fails alone, bugs in a stage never hang it, and the
reader never runs more than ``queue_size + 1`` cases ahead of the network."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medseg.inference import Predictor
from medseg.inference.batch import BatchResult, predict_folder
from tests.fixtures.models import make_run

#: A run that hangs longer than this is a hung pipeline.
HANG_S = 120.0


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("pipeline") / "run")


def _predictor(run: Path, cls: type[Predictor] = Predictor) -> Predictor:
    return cls.from_run(run, device="cpu", backend="torch", precision="fp32")


def _folder(root: Path, n: int, broken: tuple[int, ...] = ()) -> Path:
    """``n`` small NIfTI scans ``c0.nii.gz``...; the indices in ``broken`` are not gzip at all."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        p = root / f"c{i}.nii.gz"
        if i in broken:
            p.write_bytes(b"\x1f\x8b\x08 not really gzip")
            continue
        shape = (18 + i, 20, 14)
        affine = np.diag([1.0 + 0.1 * i, 1.0, 2.0, 1.0])
        nib.save(nib.Nifti1Image(rng.normal(size=shape).astype(np.float32), affine), p)
    return root


def _within(seconds: float, fn: Any, *args: Any, **kwargs: Any) -> BatchResult:
    """Run ``fn`` in a thread; fail the test if it has not returned after ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"predict_folder did not return within {seconds} s (hung pipeline)"
    if "error" in box:
        raise box["error"]
    return box["result"]


def _status(result: BatchResult) -> dict[str, str]:
    return {r.id: r.status for r in result.results}


def _sidecar(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    data.pop("seconds")  # the one timing field
    return data


def test_overlapped_and_sequential_runs_write_the_same_files(run, tmp_path):
    src = _folder(tmp_path / "in", 4)
    predictor = _predictor(run)
    seq = predict_folder(predictor, src, tmp_path / "seq", probabilities=True, overlap_io=False)
    ovl = _within(HANG_S, predict_folder, predictor, src, tmp_path / "ovl", probabilities=True)
    assert [r.id for r in ovl.results] == [r.id for r in seq.results] == ["c0", "c1", "c2", "c3"]
    assert set(_status(ovl).values()) == {"ok"} and ovl.exit_code == 0
    names = sorted(p.name for p in (tmp_path / "seq").iterdir() if p.name != "predictions.json")
    assert names == sorted(p.name for p in (tmp_path / "ovl").iterdir() if p.name != "predictions.json")
    assert len(names) == 12  # mask, probabilities and sidecar of each case
    for name in names:
        a, b = tmp_path / "seq" / name, tmp_path / "ovl" / name
        if name.endswith(".json"):
            assert _sidecar(a) == _sidecar(b), name
        else:  # the voxels and header bytes, whatever the gzip time stamp
            assert gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes()), name
    for r_seq, r_ovl in zip(seq.results, ovl.results, strict=True):
        assert (r_seq.shape, Path(r_seq.output).name) == (r_ovl.shape, Path(r_ovl.output).name)
        assert r_ovl.seconds is not None and r_ovl.seconds > 0
    # a rerun skips every finished case, in the same order
    again = _within(HANG_S, predict_folder, predictor, src, tmp_path / "ovl")
    assert [(r.id, r.status) for r in again.results] == [(f"c{i}", "skipped") for i in range(4)]


def test_an_unreadable_case_in_the_middle_fails_alone(run, tmp_path):
    src = _folder(tmp_path / "in", 5, broken=(2,))
    out = tmp_path / "out"
    result = _within(HANG_S, predict_folder, _predictor(run), src, out)
    assert [r.id for r in result.results] == [f"c{i}" for i in range(5)]
    assert _status(result) == {"c0": "ok", "c1": "ok", "c2": "failed", "c3": "ok", "c4": "ok"}
    assert "cannot read NIfTI" in result.results[2].error and result.exit_code == 14
    assert not (out / "c2.nii.gz").exists() and not (out / "c2.json").exists()
    for i in (0, 1, 3, 4):
        assert nib.load(out / f"c{i}.nii.gz").shape == (18 + i, 20, 14)
    record = json.loads((out / "predictions.json").read_text())
    assert [c["status"] for c in record["cases"]] == ["ok", "ok", "failed", "ok", "ok"]


def test_a_write_error_fails_that_case_only_and_the_pipeline_ends(run, tmp_path):
    src = _folder(tmp_path / "in", 4)
    out = tmp_path / "out"
    (out / "c1.nii.gz").mkdir(parents=True)  # a folder where the mask should go
    result = _within(HANG_S, predict_folder, _predictor(run), src, out)
    assert _status(result) == {"c0": "ok", "c1": "failed", "c2": "ok", "c3": "ok"}
    assert "cannot write" in result.results[1].error
    assert not (out / "c1.json").exists()  # no sidecar: the case is redone next time
    assert all((out / f"c{i}.json").is_file() for i in (0, 2, 3))
    assert not list(out.glob(".*.tmp"))


class _SlowPredictor(Predictor):
    """The network stage waits until the reader is ``bound`` cases ahead (or has read all, or 10 s
    passed), then a little longer, and records how far ahead the reader got."""

    bound = 0
    total = 0

    def infer(self, prepared, probabilities=False):
        k = len(self.ahead)  # the index of the case at the network
        deadline = time.monotonic() + 10.0
        while self.reads[0] - (k + 1) < self.bound and self.reads[0] < self.total:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        time.sleep(0.1)  # time to run further ahead, were it not held back
        self.ahead.append(self.reads[0] - (k + 1))  # read (or being read) beyond this case
        return super().infer(prepared, probabilities)


@pytest.mark.parametrize("queue_size", [1, 2])
def test_the_reader_stays_within_the_queue_bound(run, tmp_path, monkeypatch, queue_size):
    import medseg.io.isolated
    from medseg.io import read_volume

    src = _folder(tmp_path / "in", 7)
    predictor = _predictor(run, _SlowPredictor)
    predictor.reads, predictor.ahead = [0], []
    predictor.bound, predictor.total = queue_size + 1, 7

    def counting_read(path, **kwargs):
        predictor.reads[0] += 1
        return read_volume(path, **kwargs)

    monkeypatch.setattr(medseg.io.isolated, "read_isolated", counting_read)
    result = _within(HANG_S, predict_folder, predictor, src, tmp_path / "out", queue_size=queue_size)
    assert set(_status(result).values()) == {"ok"}
    assert len(predictor.ahead) == 7
    # queue_size cases in the queue and one in the reader's hands; and it does read that far ahead
    assert max(predictor.ahead) == queue_size + 1, predictor.ahead


class _BugError(RuntimeError):
    pass


@pytest.mark.parametrize("stage", ["prepare", "infer", "finish"])
def test_a_bug_in_any_stage_is_raised_not_hung(run, tmp_path, stage):
    src = _folder(tmp_path / "in", 5)
    predictor = _predictor(run)
    real = getattr(predictor, stage)
    calls = [0]

    def buggy(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            raise _BugError(f"bug in {stage}")
        return real(*args, **kwargs)

    setattr(predictor, stage, buggy)
    with pytest.raises(_BugError, match=f"bug in {stage}"):
        _within(HANG_S, predict_folder, predictor, src, tmp_path / "out")
    assert not [t for t in threading.enumerate() if t.name.startswith("medseg-predict-") and t.is_alive()]


def test_a_user_error_in_the_network_stage_fails_that_case_only(run, tmp_path):
    from medseg.errors import MedsegError

    src = _folder(tmp_path / "in", 3)
    predictor = _predictor(run)
    real = predictor.infer

    def picky(prepared, probabilities=False):
        if prepared.image.shape[0] == 19:  # c1
            raise MedsegError("the network refuses c1", hint="a test")
        return real(prepared, probabilities)

    predictor.infer = picky
    result = _within(HANG_S, predict_folder, predictor, src, tmp_path / "out")
    assert _status(result) == {"c0": "ok", "c1": "failed", "c2": "ok"}
    assert result.results[1].error == "the network refuses c1; a test"


def test_queue_size_below_one_is_a_user_error(run, tmp_path):
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="queue_size"):
        predict_folder(_predictor(run), _folder(tmp_path / "in", 1), tmp_path / "out", queue_size=0)
