"""Batch prediction over a folder: resumable, atomic, one failure never stops the rest."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.inference.discovery import CaseInput, discover
from medseg.inference.postprocess import PostprocessOptions
from medseg.io.atomic import write_text_atomic
from medseg.progress import track

log = logging.getLogger(__name__)

#: Exit status of ``medseg predict`` when some cases failed.
EXIT_SOME_FAILED = 14


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
    formats: tuple[str, ...] = ("nifti",),
    resample_uneven: bool = False,
) -> BatchResult:
    """Predict every scan under ``input_path`` into ``output_dir``.

    Cases whose output exists are skipped unless ``overwrite``. Each output is written
    atomically. Under torchrun the cases are shared out by rank (``cases[rank::world]``)
    and rank 0 merges the per-rank records into ``predictions.json``.
    """
    from medseg.io import read_volume, write_volume

    out_dir = Path(output_dir)
    cases, skipped = discover(input_path, exclude=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
        target = out_dir / f"{case.id}.nii.gz"
        if target.exists() and not overwrite:
            results.append(CaseResult(case.id, str(case.path), "skipped", output=str(target)))
            continue
        t0 = time.monotonic()
        try:
            image = read_volume(case.path, series=case.series, resample_uneven=resample_uneven)
            prediction = predictor.predict(image, probabilities=probabilities, postprocessing=postprocessing)
            write_volume(prediction.labels, target)
            extra = []
            if prediction.probabilities is not None:
                p = out_dir / f"{case.id}_probabilities.nii.gz"
                write_volume(prediction.probabilities, p)
                extra.append(str(p))
            extra.extend(_export_dicom(case, prediction, out_dir, formats, predictor))
            write_text_atomic(
                out_dir / f"{case.id}.json",
                json.dumps({"input": str(case.path), "series": case.series, **prediction.info}, indent=2),
            )
            results.append(
                CaseResult(
                    case.id,
                    str(case.path),
                    "ok",
                    str(target),
                    list(prediction.labels.shape),
                    round(time.monotonic() - t0, 2),
                    extra_outputs=extra,
                )
            )
        except MedsegError as exc:
            results.append(
                CaseResult(
                    case.id, str(case.path), "failed", error=str(exc), seconds=round(time.monotonic() - t0, 2)
                )
            )
            log.warning("%s failed: %s", case.id, exc)
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


def _export_dicom(
    case: CaseInput, prediction: Any, out_dir: Path, formats: tuple[str, ...], predictor: Any
) -> list[str]:
    wanted = [f for f in formats if f != "nifti"]
    if not wanted:
        return []
    if case.series is None:
        raise MedsegError(
            f"{case.id}: {', '.join(wanted)} export needs a DICOM input series",
            hint="predict DICOM series, or use --format nifti for NIfTI inputs",
        )
    from medseg.export import export_mask

    written = []
    for fmt in wanted:
        suffix = {"dicom-seg": ".seg.dcm", "rtstruct": ".rtstruct.dcm"}[fmt]
        path = out_dir / f"{case.id}{suffix}"
        export_mask(
            prediction.labels,
            case.path,
            fmt,
            predictor.plan.labels,
            path,
            model_name=predictor.model_name,
            series=case.series,
        )
        written.append(str(path))
    return written


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
