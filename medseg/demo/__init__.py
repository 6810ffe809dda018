"""``medseg demo``: the whole job, end to end, on the embedded real sample.

1. Train the 3D U-Net hippocampus pipeline on the 36 sample training cases for a bounded time.
2. Predict the 10 held-out sample cases on their own grids (NIfTI masks).
3. Evaluate them against the reference labels (Dice, IoU, HD95, ASSD, NSD) with overlay PNGs.
4. Write the HTML report of the run (curves, metrics, worst and best cases).
5. Export one predicted case to DICOM SEG, on a DICOM MR series written from its NIfTI scan
   (the MSD data exist only as NIfTI), and read the SEG back to check it.
6. CT: copy the embedded TotalSegmentator CT (DICOM, JPEG2000) with stable UIDs (it ships with
   blank study and series UIDs), draw its organ labels on the abdomen window and export them
   to DICOM SEG on that series.

Everything lands in one output folder; :func:`run_demo` returns a :class:`DemoResult` with the
figures and paths.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg.data import sample_path
from medseg.errors import ConfigError, MedsegError

if TYPE_CHECKING:
    from medseg.config.schema import PipelineConfig
    from medseg.volume import Volume

log = logging.getLogger(__name__)

PIPELINE = Path(__file__).resolve().parent / "hippocampus_unet3d.yaml"
#: Sub-folders the demo writes (and replaces with ``overwrite``).
OUTPUTS = ("run", "predictions", "dicom", "ct", "summary.json")


@dataclass
class DemoResult:
    """Figures and paths of a demo run."""

    output: str
    dice: dict[str, float]  # class name -> mean Dice over the held-out cases
    n_train: int
    n_test: int
    train_minutes: float
    total_minutes: float
    steps: int
    device: str
    report: str
    predictions: str
    overlays: str
    seg: str | None  # None when the model predicted nothing to export
    seg_source_series: str | None
    ct_overlay: str
    ct_seg: str
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> str:
        """A short Markdown summary: Dice per class and the paths to open."""
        dice = " | ".join(f"{k} {v:.3f}" for k, v in self.dice.items())
        return "\n".join(
            [
                f"medseg demo: {self.n_train} training cases, {self.steps} steps in "
                f"{self.train_minutes:.1f} min on {self.device}; {self.total_minutes:.1f} min in all.",
                f"Held-out Dice ({self.n_test} cases): {dice}",
                "",
                "Open:",
                f"  report         {self.report}",
                f"  masks (NIfTI)  {self.predictions}",
                f"  overlays       {self.overlays}",
                f"  DICOM SEG      {self.seg}",
                f"    on series    {self.seg_source_series}",
                f"  CT overlay     {self.ct_overlay}",
                f"  CT organs SEG  {self.ct_seg}",
            ]
        )


def _prepare_output(output: Path, overwrite: bool) -> None:
    existing = [output / name for name in OUTPUTS if (output / name).exists()]
    if existing and not overwrite:
        raise MedsegError(
            f"{output} already holds a demo ({existing[0].name})",
            hint="pass --overwrite to replace it, or choose another --output",
        )
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def demo_config(minutes: float, overrides: Sequence[str] = ()) -> PipelineConfig:
    """The demo pipeline (:data:`PIPELINE`) with the training budget set to ``minutes``
    and any ``key=value`` overrides (as ``medseg train --set``)."""
    from medseg.config import load_pipeline

    if not minutes > 0:
        raise ConfigError(f"--minutes must be > 0, got {minutes}")
    sample = sample_path("hippocampus")
    return load_pipeline(
        PIPELINE, [f"training.max_minutes={minutes}", f"data.manifest={sample / 'dataset.json'}", *overrides]
    )


def run_demo(
    output: str | Path = "medseg_demo",
    minutes: float = 5.0,
    device: str = "auto",
    overwrite: bool = False,
    overrides: Sequence[str] = (),
) -> DemoResult:
    """Run the demo end to end (see the module docstring) and return its figures.

    Args:
        output: Folder to write into (created).
        minutes: Training wall-clock budget in minutes.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        overwrite: Replace an earlier demo in ``output``.
        overrides: ``key=value`` changes to the demo pipeline (``training.seed=7``...).

    Raises:
        MedsegError: ``output`` already holds a demo (without ``overwrite``), a bad budget,
            or a device that is not available.
    """
    from medseg.device import resolve_device
    from medseg.export.prepare import EmptyMaskError
    from medseg.training import Trainer

    t_start = time.monotonic()
    out = Path(output).resolve()
    config = demo_config(minutes, overrides)
    dev = resolve_device(device)
    _prepare_output(out, overwrite)
    sample = sample_path("hippocampus")
    run = out / "run"
    timings: dict[str, float] = {}

    log.info("1/6 training the 3D U-Net on the %s sample for up to %.1f min (%s)", sample.name, minutes, dev)
    t0 = time.monotonic()
    last = Trainer(config, run, data_root=sample, device=str(dev)).fit()
    timings["train"] = time.monotonic() - t0

    log.info("2/6 predicting the held-out cases")
    t0 = time.monotonic()
    predictions = _predict(run, sample / "imagesTs", out / "predictions", str(dev))
    timings["predict"] = time.monotonic() - t0

    log.info("3/6 evaluating against the reference labels")
    t0 = time.monotonic()
    result = _evaluate(predictions, sample, run / "evaluation", config.labels)
    timings["evaluate"] = time.monotonic() - t0

    log.info("4/6 writing the HTML report")
    from medseg.reporting.report import build_report

    report = build_report(run)

    t0 = time.monotonic()
    case_dice = result.case_mean("dice")
    case = max(result.cases, key=lambda c: (np.nan_to_num(case_dice[c], nan=-1.0), c))
    log.info("5/6 exporting the best case, %s, to DICOM SEG", case)
    try:
        seg, series_dir = export_case_seg(
            sample / "imagesTs" / f"{case}.nii.gz",
            predictions / f"{case}.nii.gz",
            config.labels,
            out / "dicom",
        )
    except EmptyMaskError:
        log.warning("the model predicted no hippocampus at all: no SEG to export (train longer: --minutes)")
        seg = series_dir = None
    timings["export"] = time.monotonic() - t0

    log.info("6/6 CT example: abdomen window and organ labels to DICOM SEG")
    t0 = time.monotonic()
    ct_overlay, ct_seg = ct_example(out / "ct")
    timings["ct"] = time.monotonic() - t0

    classes = result.summary["classes"]
    dice = {c["name"]: round(float(c["metrics"]["dice"]["mean"]), 4) for c in classes.values()}
    demo = DemoResult(
        output=str(out),
        dice=dice,
        n_train=len(json.loads((sample / "dataset.json").read_text())["training"]),
        n_test=len(result.cases),
        train_minutes=round(timings["train"] / 60, 2),
        total_minutes=round((time.monotonic() - t_start) / 60, 2),
        steps=int(last.get("step", 0)),
        device=str(dev),
        report=str(report),
        predictions=str(predictions),
        overlays=str(run / "evaluation" / "overlays"),
        seg=str(seg) if seg else None,
        seg_source_series=str(series_dir) if series_dir else None,
        ct_overlay=str(ct_overlay),
        ct_seg=str(ct_seg),
        timings={k: round(v, 1) for k, v in timings.items()},
    )
    from medseg.io.atomic import write_text_atomic

    write_text_atomic(out / "summary.json", demo.to_json())
    return demo


def _predict(run: Path, images: Path, out: Path, device: str) -> Path:
    from medseg.inference import Predictor
    from medseg.inference.batch import predict_folder

    predictor = Predictor.from_run(run, device=device)
    batch = predict_folder(predictor, images, out)
    if batch.failed:
        raise MedsegError(f"prediction failed for {batch.failed[0].id}: {batch.failed[0].error}")
    return out


def _evaluate(predictions: Path, sample: Path, out: Path, labels: dict[int, str] | None) -> object:
    from medseg.evaluation import evaluate
    from medseg.reporting.cases import write_case_overlays

    names = {k: v for k, v in (labels or {}).items() if k > 0}
    result = evaluate(
        predictions, sample / "labelsTs", labels=names, output=out, image_dir=sample / "imagesTs"
    )
    write_case_overlays(result, out / "overlays", window=None)
    return result


def export_case_seg(
    image_path: Path, mask_path: Path, labels: dict[int, str] | None, out: Path
) -> tuple[Path, Path]:
    """Write the scan as a DICOM MR series and the mask as a DICOM SEG on it; check the SEG.

    Returns:
        (the SEG file, the series folder).
    """
    from medseg.export import ExportOptions, export_mask, read_label_object
    from medseg.io import read_volume
    from medseg.io.dicom import write_dicom_series

    case = mask_path.name.split(".")[0]
    series_dir = out / f"{case}_mr"
    write_dicom_series(
        read_volume(image_path), series_dir, modality="MR", series_description=f"medseg demo {case}"
    )
    names = {k: v for k, v in (labels or {}).items() if k > 0}
    options = ExportOptions(model_name="demo 3D U-Net")
    seg = export_mask(mask_path, series_dir, "seg", names, out / f"{case}.seg.dcm", options)
    back = read_label_object(seg, series_dir)
    mask = read_volume(mask_path)
    if not np.array_equal(_on_grid(back, mask), mask.array):
        raise MedsegError(f"the DICOM SEG {seg} does not read back to the mask it was written from")
    return seg, series_dir


def _on_grid(volume: Volume, grid: Volume) -> np.ndarray:
    """``volume``'s array on ``grid``'s voxel order (the two differ by axis flips/permutations)."""
    from medseg.export.reference import place_on_grid

    return place_on_grid(volume, grid.affine, grid.array.shape, "demo volume", "its scan's grid")


#: What the stable UIDs of the embedded CT sample are derived from (see :func:`ct_sample_uid`).
CT_UID_SOURCE = "medseg demo sample totalsegmentator_ct"


def ct_sample_uid(kind: str) -> str:
    """A UID of the embedded CT sample, the same in every run and on every machine.

    The sample ships de-identified, with StudyInstanceUID and SeriesInstanceUID blanked;
    the demo owns it, so it gives it fixed UIDs (``kind`` is ``"study"``, ``"series"``...)
    derived from :data:`CT_UID_SOURCE` with pydicom's ``generate_uid(entropy_srcs=...)``.
    """
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[CT_UID_SOURCE, kind]))


def ct_series(out: Path) -> Path:
    """Copy the embedded CT series into ``out`` with stable, complete identifiers.

    Blank StudyInstanceUID/SeriesInstanceUID get :func:`ct_sample_uid` values; blank
    SOPInstanceUID/SOPClassUID get the file meta's (which the standard makes equal). The
    pixel data (JPEG 2000) is copied as stored. The copy files into a PACS like any series.

    Returns:
        ``out``.
    """
    import pydicom

    from medseg.io.atomic import atomic_output

    fixed = {"StudyInstanceUID": ct_sample_uid("study"), "SeriesInstanceUID": ct_sample_uid("series")}
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted((sample_path("totalsegmentator_ct") / "dicom").iterdir()):
        ds = pydicom.dcmread(source)
        for keyword, value in fixed.items():
            if not str(ds.get(keyword, "") or ""):
                setattr(ds, keyword, value)
        for keyword, meta in (
            ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
            ("SOPClassUID", "MediaStorageSOPClassUID"),
        ):
            if not str(ds.get(keyword, "") or ""):
                setattr(ds, keyword, ds.file_meta[meta].value)
        with atomic_output(out / source.name) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    return out


def ct_example(out: Path) -> tuple[Path, Path]:
    """Overlay and DICOM SEG of the embedded TotalSegmentator CT and its organ labels.

    The SEG references ``out/dicom``, the sample series with stable UIDs (:func:`ct_series`).
    """
    from medseg.export import ExportOptions, export_mask
    from medseg.io import read_volume
    from medseg.reporting.overlay import overlay

    root = sample_path("totalsegmentator_ct")
    labels = {int(k): v for k, v in json.loads((root / "labels.json").read_text()).items()}
    series = ct_series(out / "dicom")
    ct = read_volume(series)
    organs = read_volume(root / "organs.nii.gz")
    organs_on_ct = type(organs)(_on_grid(organs, ct), ct.affine, organs.meta)
    png = out / "ct_organs.png"
    overlay(ct, organs_on_ct, None, png, labels, window="abdomen", title="TotalSegmentator example CT")
    options = ExportOptions(model_name="TotalSegmentator")
    seg = export_mask(organs, series, "seg", labels, out / "ct_organs.seg.dcm", options)
    return png, seg
