"""Batch prediction over a folder: resumable, atomic, one failure never stops the rest."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg import errors
from medseg.errors import MedsegError
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
    """
    out_dir = Path(output_dir)
    cases, skipped = discover(input_path, exclude=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)  # outputs a killed earlier run was writing when it died
    rank, world = _rank_world()
    if world > 1:
        _init_group()
        stale = out_dir / f".predictions.rank{rank}.json"
        stale.unlink(missing_ok=True)  # from an interrupted earlier run
    mine = cases[rank::world]
    results: list[CaseResult] = []
    if rank == 0:
        results.extend(
            CaseResult(s.path.name, str(s.path), "ignored" if s.ignored else "failed", error=s.reason)
            for s in skipped
        )
    for case in track(mine, "predicting"):
        results.append(
            _predict_case(
                case, predictor, out_dir, formats, probabilities, postprocessing, overwrite, resample_uneven
            )
        )
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


def _predict_case(
    case: CaseInput,
    predictor: Any,
    out_dir: Path,
    formats: tuple[str, ...] | None,
    probabilities: bool,
    postprocessing: PostprocessOptions | None,
    overwrite: bool,
    resample_uneven: bool,
) -> CaseResult:
    """Predict one case into ``out_dir`` (skipped when its outputs are complete); a user error
    fails this case only."""
    from medseg.io import write_volume
    from medseg.io.isolated import read_isolated

    two_d = case.series is None and is_2d_name(case.path)  # the mask is a picture too
    target = out_dir / f"{case.id}{_VOLUME_SUFFIX}"
    done = [p for p in _mask_candidates(out_dir, case.id, two_d) if p.exists()]
    # the sidecar is written last: without it, an earlier run died mid-case and it is redone
    if done and (out_dir / f"{case.id}.json").is_file() and not overwrite:
        return CaseResult(case.id, str(case.path), "skipped", output=str(done[0]))
    wanted = formats if formats is not None else (() if two_d else ("nifti",))
    t0 = time.monotonic()
    try:
        # in a worker process: a native crash fails this case only (issue #14)
        image = read_isolated(case.path, series=case.series, resample_uneven=resample_uneven)
        prediction = predictor.predict(image, probabilities=probabilities, postprocessing=postprocessing)
        if two_d:
            target = out_dir / f"{case.id}{_picture_suffix(prediction.labels)}"
        write_volume(prediction.labels, target)
        extra = []
        if prediction.probabilities is not None:
            p = out_dir / f"{case.id}_probabilities{_VOLUME_SUFFIX}"
            write_volume(prediction.probabilities, p)
            extra.append(str(p))
        if wanted:
            extra.extend(_export_formats(case, prediction, out_dir, wanted, predictor, target))
        write_text_atomic(
            out_dir / f"{case.id}.json",
            json.dumps({"input": str(case.path), "series": case.series, **prediction.info}, indent=2),
        )
    except MedsegError as exc:
        log.warning("%s failed: %s", case.id, exc)
        return CaseResult(
            case.id, str(case.path), "failed", error=str(exc), seconds=round(time.monotonic() - t0, 2)
        )
    shape = list(prediction.labels.shape)
    seconds = round(time.monotonic() - t0, 2)
    return CaseResult(case.id, str(case.path), "ok", str(target), shape, seconds, extra_outputs=extra)


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
    from medseg.export import ExportOptions, MaskExporter, parse_formats

    wanted = [f for f in parse_formats(formats) if out_dir / f"{case.id}{f.suffix}" != written]
    if not wanted:
        return []
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
