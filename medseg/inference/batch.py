"""Batch prediction over a folder: resumable, atomic, one failure never stops the rest."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg import errors
from medseg.errors import MedsegError
from medseg.inference.channels import ChannelOptions, blank_channels, read_case
from medseg.inference.discovery import CaseInput, discover
from medseg.inference.postprocess import PostprocessOptions
from medseg.io.atomic import remove_stale_temporaries, write_text_atomic
from medseg.io.formats import format_named, is_2d_name
from medseg.progress import track

log = logging.getLogger(__name__)

#: Masks and probability maps of volumes are written as NIfTI (the table's first NIfTI suffix).
_VOLUME_SUFFIX = format_named("nifti").suffixes[0]

#: Exit status of ``medseg predict`` when some cases failed.
EXIT_SOME_FAILED = errors.EXIT_SOME_FAILED

#: Cases each queue of the overlapped pipeline holds (see :func:`predict_folder`).
QUEUE_SIZE = 1


@dataclass
class CaseResult:
    id: str
    input: str
    status: str  # ok | skipped (output exists) | ignored (not a scan, expected) | failed
    output: str | None = None
    shape: list[int] | None = None
    seconds: float | None = None
    error: str | None = None
    extra_outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


@dataclass
class BatchResult:
    results: list[CaseResult]

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else 0

    def table(self) -> str:
        """Markdown summary: case, shape, seconds, status."""
        lines = ["| case | shape | seconds | status |", "|---|---|---|---|"]
        for r in self.results:
            shape = "x".join(map(str, r.shape)) if r.shape else ""
            secs = f"{r.seconds:.1f}" if r.seconds is not None else ""
            status = f"{r.status}: {r.error}" if r.status in ("failed", "ignored") else r.status
            lines.append(f"| {r.id} | {shape} | {secs} | {status} |")
        ok = sum(r.status == "ok" for r in self.results)
        skipped = sum(r.status == "skipped" for r in self.results)
        ignored = sum(r.status == "ignored" for r in self.results)
        failed = len(self.failed)
        lines.append(f"\n{ok} predicted, {skipped} already done, {ignored} ignored, {failed} failed")
        return "\n".join(lines)


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def predict_folder(
    predictor: Any,
    input_path: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    probabilities: bool = False,
    postprocessing: PostprocessOptions | None = None,
    formats: tuple[str, ...] | None = None,
    resample_uneven: bool = False,
    overlap_io: bool = True,
    queue_size: int = QUEUE_SIZE,
    channels: ChannelOptions | None = None,
) -> BatchResult:
    """Predict every scan under ``input_path`` into ``output_dir``.

    The mask follows the input's kind: ``<case>.nii.gz`` for volumes, and for 2D pictures
    (PNG, TIFF, JPEG, BMP) a picture of the same size, ``<case>.png`` (labels up to 255) or
    ``<case>.tif`` (more labels, or a multi-page input). ``formats`` names further outputs
    (default: none beyond the mask); ``nifti`` adds ``<case>.nii.gz`` for a 2D input.

    Cases whose outputs are complete (the mask and, written last, its ``<case>.json``) are
    skipped unless ``overwrite``; a case an earlier, killed run left half-done is redone.
    Each output is written atomically. Under torchrun the cases are shared out by rank
    (``cases[rank::world]``) and rank 0 merges the per-rank records into ``predictions.json``.
    A user error (:class:`~medseg.errors.MedsegError`, or an ``OSError`` writing an output)
    fails its case only; the results keep the input order.

    With ``overlap_io`` (the default) the cases flow through three threads joined by two queues of
    ``queue_size`` cases: a reader (read the scan, :meth:`Predictor.prepare`), the calling thread
    (:meth:`Predictor.infer`, the network) and a writer (:meth:`Predictor.finish`, the mask, the
    exports and the sidecar), so reading the next case and writing the previous one overlap with
    the network. Memory stays bounded: at most ``queue_size + 1`` prepared cases wait ahead of the
    network, and ``queue_size + 1`` predicted ones (source scan and labels, and for a case the
    plan resampled its softmax on the network's grid, up to
    :data:`~medseg.inference.inversion.SMOOTH_INVERSION_MAX_BYTES`; the preprocessed voxels are
    dropped after the network) wait for or are in the writer, so at most ``2 * queue_size + 3``
    cases are held at once (5 by default) instead of one. ``overlap_io=False`` runs the same
    stages one case at a time.

    For a multi-channel model, ``channels`` (default: the names the predictor carries, else
    ``channel_0``..., missing channels refused) names the channels in order: the files of one case
    (``<case>_0000``... or ``<case>_<name>``) are read as one case (:mod:`medseg.inference.channels`),
    and what stood in for a missing channel is recorded in its sidecar.

    Raises:
        ConfigError: ``queue_size`` below 1.
    """
    if queue_size < 1:
        raise errors.ConfigError(f"queue_size must be >= 1, got {queue_size}")
    out_dir = Path(output_dir)
    options = channels or ChannelOptions.of_predictor(predictor)
    cases, skipped = discover(input_path, exclude=out_dir, channel_names=options.names)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)  # outputs a killed earlier run was writing when it died
    rank, world = _rank_world()
    if world > 1:
        _init_group()
        stale = out_dir / f".predictions.rank{rank}.json"
        stale.unlink(missing_ok=True)  # from an interrupted earlier run
    results: list[CaseResult] = []
    if rank == 0:
        results.extend(
            CaseResult(s.path.name, str(s.path), "ignored" if s.ignored else "failed", error=s.reason)
            for s in skipped
        )
    jobs = [_new_job(case, out_dir, formats, overwrite) for case in cases[rank::world]]
    stages = _Stages(predictor, out_dir, probabilities, postprocessing, resample_uneven, options)
    if overlap_io:
        _run_overlapped(jobs, stages, queue_size)
    else:
        _run_sequential(jobs, stages)
    results.extend(_result(job) for job in jobs)
    _write_record(out_dir, results, rank, world, predictor)
    if world > 1:
        import torch.distributed as dist

        if rank == 0:
            results = _merged(out_dir, world)
        else:
            dist.barrier()
        dist.barrier()  # rank 0 has merged
        dist.destroy_process_group()
    return BatchResult(results)


@dataclass
class _Job:
    """One case on its way through the stages; ``result`` is set once it is done (or failed)."""

    case: CaseInput
    two_d: bool  # the mask is a picture too
    wanted: tuple[str, ...]  # further output formats
    result: CaseResult | None = None
    seconds: float = 0.0  # time spent in the stages (queue waits excluded)
    prepared: Any = None
    labels: Any = None
    probabilities: Any = None
    notes: dict[str, Any] = field(default_factory=dict)  # for the sidecar: the channels used, warnings

    def fail(self, exc: MedsegError) -> None:
        log.warning("%s failed: %s", self.case.id, exc)
        self.result = CaseResult(
            self.case.id, str(self.case.path), "failed", error=str(exc), seconds=round(self.seconds, 2)
        )
        self.prepared = self.labels = self.probabilities = None


def _result(job: _Job) -> CaseResult:
    """The job's result; one the pipeline never finished (it cannot happen) is listed as failed."""
    if job.result is None:
        return CaseResult(job.case.id, str(job.case.path), "failed", error="not predicted (pipeline stopped)")
    return job.result


def _new_job(case: CaseInput, out_dir: Path, formats: tuple[str, ...] | None, overwrite: bool) -> _Job:
    """The job of ``case``: already done (skipped) when its outputs are complete."""
    two_d = case.series is None and is_2d_name(case.path)
    wanted = formats if formats is not None else (() if two_d else ("nifti",))
    job = _Job(case, two_d, tuple(wanted))
    done = [p for p in _mask_candidates(out_dir, case.id, two_d) if p.exists()]
    # the sidecar is written last: without it, an earlier run died mid-case and it is redone
    if done and (out_dir / f"{case.id}.json").is_file() and not overwrite:
        job.result = CaseResult(case.id, str(case.path), "skipped", output=str(done[0]))
    return job


@dataclass
class _Stages:
    """The three stages of one case; each fails the job (never raises) on a user error."""

    predictor: Any
    out_dir: Path
    probabilities: bool
    postprocessing: PostprocessOptions | None
    resample_uneven: bool
    channels: ChannelOptions

    def read(self, job: _Job) -> None:
        """Read the scan (or its channel files) in the isolated reader and preprocess it (CPU)."""
        if job.result is not None:
            return
        with _timed(job):
            # in a worker process: a native crash fails this case only (issue #14)
            image = read_case(job.case, self.channels, self.resample_uneven)
            job.prepared = self.predictor.prepare(image.volume)
            blank_channels(job.prepared.case.image, image.zeros)  # zeros after normalisation
            job.notes = image.notes

    def infer(self, job: _Job) -> None:
        """Run the network; the preprocessed voxels are dropped afterwards (only the record is kept)."""
        if job.result is not None:
            return
        with _timed(job):
            job.labels, job.probabilities = self.predictor.infer(job.prepared, self.probabilities)
            job.prepared.case = replace(job.prepared.case, image=np.empty(0, np.float32))

    def write(self, job: _Job) -> None:
        """Map back, post-process, write the mask, the exports and, last, the sidecar."""
        if job.result is not None:
            return
        with _timed(job, writing=True):
            prediction = self.predictor.finish(
                job.prepared, job.labels, job.probabilities, self.postprocessing
            )
            job.prepared = job.labels = job.probabilities = None
            target, extra = _write_outputs(job, prediction, self.out_dir, self.predictor)
            shape = list(prediction.labels.shape)
            job.result = CaseResult(
                job.case.id, str(job.case.path), "ok", str(target), shape, extra_outputs=extra
            )
        if job.result.status == "ok":
            job.result.seconds = round(job.seconds, 2)


@contextmanager
def _timed(job: _Job, writing: bool = False) -> Iterator[None]:
    """Time one stage of ``job``, and fail the job on a user error (when ``writing``, an
    ``OSError`` counts as one: a full disk, a path that is a folder...); anything else is a
    bug and propagates."""
    t0 = time.monotonic()
    try:
        yield
    except MedsegError as exc:
        job.seconds += time.monotonic() - t0
        job.fail(exc)
    except OSError as exc:
        if not writing:
            raise
        job.seconds += time.monotonic() - t0
        where = f" {exc.filename}" if exc.filename else ""
        job.fail(MedsegError(f"cannot write{where}: {exc.strerror or exc}", hint=_OS_HINT))
    else:
        job.seconds += time.monotonic() - t0


_OS_HINT = "check the output folder: free space, permissions, and no folder where a file should go"


def _write_outputs(job: _Job, prediction: Any, out_dir: Path, predictor: Any) -> tuple[Path, list[str]]:
    """Write the mask, the probabilities, the exports and, last, the sidecar ``<case>.json``;
    returns the mask's path and the other outputs."""
    from medseg.io import write_volume

    case = job.case
    suffix = _picture_suffix(prediction.labels) if job.two_d else _VOLUME_SUFFIX
    target = out_dir / f"{case.id}{suffix}"
    write_volume(prediction.labels, target)
    extra = []
    if prediction.probabilities is not None:
        p = out_dir / f"{case.id}_probabilities{_VOLUME_SUFFIX}"
        write_volume(prediction.probabilities, p)
        extra.append(str(p))
    if job.wanted:
        extra.extend(_export_formats(case, prediction, out_dir, job.wanted, predictor, target))
    write_text_atomic(
        out_dir / f"{case.id}.json",
        json.dumps(
            {"input": str(case.path), "series": case.series, **job.notes, **prediction.info}, indent=2
        ),
    )
    return target, extra


# ---------------------------------------------------------------------------------------------
#: Seconds a blocked queue operation waits before it checks whether the pipeline stopped.
_POLL_S = 0.1
#: Seconds to wait for the stage threads when the pipeline stops early (they are daemons).
_JOIN_S = 5.0
_END = object()  # sentinel: no more jobs


def _run_sequential(jobs: list[_Job], stages: _Stages) -> None:
    """Each case through the three stages in turn, one at a time."""
    for job in track(jobs, "predicting"):
        stages.read(job)
        stages.infer(job)
        stages.write(job)


def _run_overlapped(jobs: list[_Job], stages: _Stages, queue_size: int) -> None:
    """Reader thread -> bounded queue -> network (this thread) -> bounded queue -> writer thread.

    Every stage catches user errors into its job, so one case never stops the rest. A bug (any
    other exception) in a thread stops the pipeline and is re-raised here; no thread waits on
    a queue forever: each puts the end sentinel when it leaves, and every wait checks ``stop``.
    """
    to_infer: queue.Queue[Any] = queue.Queue(queue_size)
    to_write: queue.Queue[Any] = queue.Queue(queue_size)
    stop = threading.Event()
    crashed: list[BaseException] = []

    def reader() -> None:
        try:
            for job in jobs:
                stages.read(job)
                if not _put(to_infer, job, stop):
                    return
        except BaseException as exc:  # a bug: stop the pipeline and re-raise in the main thread
            crashed.append(exc)
            stop.set()
        finally:
            _put(to_infer, _END, stop)

    def writer() -> None:
        try:
            while (job := _get(to_write, stop)) is not _END:
                stages.write(job)
        except BaseException as exc:
            crashed.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=reader, name="medseg-predict-reader", daemon=True),
        threading.Thread(target=writer, name="medseg-predict-writer", daemon=True),
    ]
    for t in threads:
        t.start()
    finished = False
    try:
        if any(job.result is None for job in jobs):
            _warm_up(stages.predictor)  # build the network while the first case is read
        for job in track(_drain(to_infer, stop), "predicting", total=len(jobs)):
            stages.infer(job)
            if not _put(to_write, job, stop):
                break
        finished = True
    finally:
        if not finished:
            stop.set()
        _put(to_write, _END, stop)
        deadline = None if finished and not stop.is_set() else time.monotonic() + _JOIN_S
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    if crashed:
        raise crashed[0]


def _warm_up(predictor: Any) -> None:
    """Build the predictor's runner (export, compile) while the first case is read.

    Raises:
        MedsegError: the backend cannot run this model here (a missing package, int8 without
            its calibration data, a network that does not export): the whole command is refused
            in one line, rather than every case failing alike.
    """
    if hasattr(predictor, "runner"):
        _ = predictor.runner


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item``, waiting while the queue is full; False if the pipeline stopped first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item, or ``_END`` once the pipeline has stopped."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def _drain(q: queue.Queue[Any], stop: threading.Event) -> Iterator[_Job]:
    """The jobs of ``q`` up to the end sentinel (or until the pipeline stops)."""
    while (job := _get(q, stop)) is not _END:
        yield job


def _mask_candidates(out_dir: Path, case_id: str, two_d: bool) -> list[Path]:
    """Where the mask of a case may already be (a 2D input's mask is a PNG or a TIFF)."""
    if two_d:
        return [out_dir / f"{case_id}{format_named(n).suffixes[0]}" for n in ("png", "tiff")]
    return [out_dir / f"{case_id}{_VOLUME_SUFFIX}"]


def _picture_suffix(labels: Any) -> str:
    """``.png`` for one slice of 8-bit labels (up to 255), else ``.tif`` (16-bit labels or pages)."""
    one_slice = labels.spatial_shape[2] == 1 and labels.array.ndim == 3
    name = "png" if one_slice and labels.array.dtype in (np.uint8, np.bool_) else "tiff"
    return format_named(name).suffixes[0]


def _export_formats(
    case: CaseInput,
    prediction: Any,
    out_dir: Path,
    formats: tuple[str, ...],
    predictor: Any,
    written: Path,
) -> list[str]:
    """Write ``<case><suffix>`` for each registered format of ``formats`` except the one whose
    file is ``written`` already (the label volume); returns the paths written.

    Raises:
        MedsegError: a format that needs the source DICOM series for a non-DICOM input
            (checked before any is written), or a writer's error.
    """
    from medseg.export.registry import parse_formats

    wanted = [f for f in parse_formats(formats) if out_dir / f"{case.id}{f.suffix}" != written]
    if not wanted:
        return []
    from medseg.export import ExportOptions, MaskExporter  # DICOM machinery: only when a format needs it

    options = ExportOptions(model_name=predictor.model_name, series=case.series)
    exporter = MaskExporter(wanted, predictor.plan.labels, options)
    reference = case.path if case.series is not None else None
    paths = exporter(prediction.labels, reference, out_dir, stem=case.id, overwrite=True)
    return [str(p) for p in paths.values()]


def _write_record(out_dir: Path, results: list[CaseResult], rank: int, world: int, predictor: Any) -> None:
    record = {"model": getattr(predictor, "model_name", None), "cases": [r.to_dict() for r in results]}
    name = "predictions.json" if world == 1 else f".predictions.rank{rank}.json"
    write_text_atomic(out_dir / name, json.dumps(record, indent=2))


def _init_group() -> None:
    """A gloo group (CPU) just to synchronise the ranks of a torchrun batch."""
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=24))


def _merged(out_dir: Path, world: int) -> list[CaseResult]:
    import torch.distributed as dist

    dist.barrier()  # every rank has written its record
    results, model = [], None
    for r in range(world):
        p = out_dir / f".predictions.rank{r}.json"
        data = json.loads(p.read_text())
        model = model or data.get("model")
        results.extend(CaseResult(**c) for c in data["cases"])
        p.unlink()
    results.sort(key=lambda r: r.id)
    write_text_atomic(
        out_dir / "predictions.json",
        json.dumps({"model": model, "cases": [r.to_dict() for r in results]}, indent=2),
    )
    return results
