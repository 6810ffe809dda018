"""The result of an evaluation: per-case rows, summary, and the files of an evaluation folder.

An evaluation folder holds ``metrics.csv`` (one row per case and class),
``summary.json`` (statistics per class and overall), ``evaluation.json`` (the
settings), ``boundary_error.json`` (the error rate against the distance to the reference
boundary, see :mod:`~medseg.evaluation.boundary`) and, for 2D label images,
``confusion_matrix.csv``. Every file is written
atomically. :func:`load_evaluation` reads such a folder back (``medseg report`` and
``medseg compare`` use it).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from medseg.errors import CorruptFileError, InputNotFoundError
from medseg.evaluation.summary import ConfusionMatrix, describe, iou_summary

__all__ = [
    "CSV_COLUMNS",
    "METRIC_COLUMNS",
    "OPTIONAL_COLUMNS",
    "SUMMARY_METRICS",
    "EvaluationResult",
    "MetricRow",
    "format_value",
    "load_evaluation",
    "summarise",
]

#: Numeric columns of metrics.csv, in order.
METRIC_COLUMNS = (
    "dice",
    "iou",
    "hd95",
    "assd",
    "nsd",
    "volume_pred_ml",
    "volume_ref_ml",
    "abs_volume_diff_ml",
    "rel_volume_diff",
    "boundary_iou",
)
#: Every column of metrics.csv, in order.
CSV_COLUMNS = ("case", "class_id", "class_name", *METRIC_COLUMNS, "pred_path", "ref_path")
#: Columns that evaluation folders written before them lack (read back as NaN).
OPTIONAL_COLUMNS = ("boundary_iou",)
#: Metrics summarised in summary.json.
SUMMARY_METRICS = (
    "dice",
    "iou",
    "boundary_iou",
    "hd95",
    "assd",
    "nsd",
    "abs_volume_diff_ml",
    "rel_volume_diff",
)


@dataclass
class MetricRow:
    """Metrics of one class in one case (a row of metrics.csv).

    Volumes are in ml for 3D cases; for 2D label images the ``volume_*`` fields hold
    areas in mm², or in pixels when the image carries no spacing (PNG, TIFF).
    """

    case: str
    class_id: int
    class_name: str
    dice: float
    iou: float
    boundary_iou: float
    hd95: float
    assd: float
    nsd: float
    volume_pred_ml: float
    volume_ref_ml: float
    abs_volume_diff_ml: float
    rel_volume_diff: float
    pred_path: str
    ref_path: str

    @classmethod
    def of(
        cls, case: str, class_id: int, class_name: str, m: Any, scale: float, pred_path: str, ref_path: str
    ) -> MetricRow:
        """The row of one class's metrics ``m`` (:class:`~medseg.evaluation.metrics.ClassMetrics`-like:
        dice, iou, boundary_iou, hd95, assd, nsd and sizes in mm³/mm²), volumes scaled by ``scale``
        (ml per mm³)."""
        return cls(
            case=case,
            class_id=class_id,
            class_name=class_name,
            dice=m.dice,
            iou=m.iou,
            boundary_iou=m.boundary_iou,
            hd95=m.hd95,
            assd=m.assd,
            nsd=m.nsd,
            volume_pred_ml=m.size_pred * scale,
            volume_ref_ml=m.size_ref * scale,
            abs_volume_diff_ml=m.abs_size_diff * scale,
            rel_volume_diff=m.rel_size_diff,
            pred_path=pred_path,
            ref_path=ref_path,
        )

    @property
    def ref_empty(self) -> bool:
        """The reference has no voxel of this class."""
        return self.volume_ref_ml == 0

    @property
    def pred_empty(self) -> bool:
        """The prediction has no voxel of this class."""
        return self.volume_pred_ml == 0

    def to_dict(self) -> dict[str, Any]:
        """The row as a dictionary keyed by CSV column."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def format_value(value: Any) -> str:
    """CSV text of a value: floats at full precision, ``inf``/``nan`` spelled out."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summarise(rows: list[MetricRow], labels: Mapping[int, str], volume_unit: str = "ml") -> dict[str, Any]:
    """Statistics per class and overall (all case/class rows pooled) of :data:`SUMMARY_METRICS`,
    with the counts of empty references/predictions per class, and ``miou``: the mean IoU over
    classes per case and pooled (:func:`~medseg.evaluation.summary.iou_summary`)."""
    classes: dict[str, Any] = {}
    for label, name in labels.items():
        subset = [r for r in rows if r.class_id == label]
        classes[str(label)] = {
            "name": name,
            "n_cases": len(subset),
            "n_ref_empty": sum(r.ref_empty for r in subset),
            "n_pred_empty": sum(r.pred_empty for r in subset),
            "n_both_empty": sum(r.ref_empty and r.pred_empty for r in subset),
            "metrics": {m: describe(getattr(r, m) for r in subset) for m in SUMMARY_METRICS},
        }
    overall = {
        "n_rows": len(rows),
        "n_cases": len({r.case for r in rows}),
        "metrics": {m: describe(getattr(r, m) for r in rows) for m in SUMMARY_METRICS},
    }
    return {"classes": classes, "overall": overall, "miou": iou_summary(rows, labels, volume_unit)}


@dataclass
class EvaluationResult:
    """Everything an evaluation produced.

    Attributes:
        rows: One :class:`MetricRow` per case and class, sorted by case then class.
        labels: The evaluated labels ``{id: name}``.
        summary: Statistics (see :func:`summarise`) plus settings and unmatched cases.
        settings: What was evaluated and how (folders, tolerance, labels, units).
        unmatched_pred: Case ids with a prediction but no reference.
        unmatched_ref: Case ids with a reference but no prediction.
        confusion: Pooled pixel confusion matrix (2D label images only).
        output: The folder the result was written to, if any.
        boundary_error: The content of boundary_error.json (error rate against the distance to the
            reference boundary, :func:`~medseg.evaluation.boundary.pooled_errors_json`), if made.
    """

    rows: list[MetricRow]
    labels: dict[int, str]
    summary: dict[str, Any]
    settings: dict[str, Any]
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_ref: list[str] = field(default_factory=list)
    confusion: ConfusionMatrix | None = None
    output: Path | None = None
    boundary_error: dict[str, Any] | None = None

    @property
    def cases(self) -> list[str]:
        """Evaluated case ids in order."""
        return list(dict.fromkeys(r.case for r in self.rows))

    @property
    def volume_unit(self) -> str:
        """Unit of the volume columns: ``"ml"`` (3D), ``"mm2"`` or ``"px2"`` (2D areas)."""
        return str(self.settings.get("volume_unit", "ml"))

    def case_mean(self, metric: str = "dice") -> dict[str, float]:
        """Mean of ``metric`` over the classes of each case (non-finite values skipped)."""
        out: dict[str, float] = {}
        for case in self.cases:
            values = [getattr(r, metric) for r in self.rows if r.case == case]
            finite = [v for v in values if math.isfinite(v)]
            out[case] = sum(finite) / len(finite) if finite else math.nan
        return out

    def metrics_csv(self) -> str:
        """The text of metrics.csv."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows:
            writer.writerow([format_value(getattr(row, c)) for c in CSV_COLUMNS])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """Per-class table (mean ± sd) as Markdown, followed by notes on unmatched cases."""
        from medseg.evaluation.markdown import evaluation_markdown

        return evaluation_markdown(self)

    def write(self, folder: str | Path) -> Path:
        """Write metrics.csv, summary.json, evaluation.json (and confusion_matrix.csv,
        boundary_error.json) atomically."""
        from medseg.io.atomic import write_text_atomic

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "metrics.csv", self.metrics_csv())
        write_text_atomic(out / "summary.json", json.dumps(_json_safe(self.summary), indent=2) + "\n")
        write_text_atomic(out / "evaluation.json", json.dumps(_json_safe(self.settings), indent=2) + "\n")
        if self.boundary_error is not None:
            text = json.dumps(_json_safe(self.boundary_error), indent=2) + "\n"
            write_text_atomic(out / "boundary_error.json", text)
        if self.confusion is not None:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(self.confusion.to_csv_rows())
            write_text_atomic(out / "confusion_matrix.csv", buf.getvalue())
        self.output = out
        return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"cannot read {path}: {exc}", hint="re-run medseg evaluate") from exc
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} does not hold a JSON object", hint="re-run medseg evaluate")
    return data


def _float(text: str | None) -> float:
    """A CSV cell as a float (NaN when empty or missing)."""
    return math.nan if text is None or text == "" else float(text)


def _read_rows(csv_path: Path) -> list[MetricRow]:
    """The rows of a metrics.csv (columns of :data:`OPTIONAL_COLUMNS` may be missing: NaN)."""
    rows: list[MetricRow] = []
    try:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            present = reader.fieldnames or []
            missing = [c for c in CSV_COLUMNS if c not in present and c not in OPTIONAL_COLUMNS]
            if missing:
                raise CorruptFileError(f"{csv_path} lacks the columns {', '.join(missing)}")
            for rec in reader:
                rows.append(
                    MetricRow(
                        case=rec["case"],
                        class_id=int(rec["class_id"]),
                        class_name=rec["class_name"],
                        **{c: _float(rec.get(c)) for c in METRIC_COLUMNS},
                        pred_path=rec["pred_path"],
                        ref_path=rec["ref_path"],
                    )
                )
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise CorruptFileError(f"cannot read {csv_path}: {exc}", hint="re-run medseg evaluate") from exc
    return rows


def load_evaluation(folder: str | Path) -> EvaluationResult:
    """Read an evaluation folder written by :func:`medseg.evaluation.evaluate`.

    Raises:
        InputNotFoundError: the folder or its metrics.csv is missing.
        CorruptFileError: a file that cannot be parsed.
    """
    root = Path(folder)
    csv_path = root / "metrics.csv"
    if not csv_path.is_file():
        raise InputNotFoundError(
            f"{root} is not an evaluation folder (no metrics.csv)",
            hint="write one with: medseg evaluate --pred P --ref R --output FOLDER",
        )
    rows = _read_rows(csv_path)
    settings = _read_json(root / "evaluation.json") if (root / "evaluation.json").is_file() else {}
    labels = {int(k): str(v) for k, v in (settings.get("labels") or {}).items()}
    if not labels:
        labels = {r.class_id: r.class_name for r in sorted(rows, key=lambda r: r.class_id)}
    unit = str(settings.get("volume_unit", "ml"))
    summary = (
        _read_json(root / "summary.json")
        if (root / "summary.json").is_file()
        else summarise(rows, labels, unit)
    )
    if "miou" not in summary:  # written before it existed
        summary["miou"] = iou_summary(rows, labels, unit)
    confusion = None
    if summary.get("confusion_matrix"):
        confusion = ConfusionMatrix.from_dict(summary["confusion_matrix"])
    unmatched = summary.get("unmatched", {})
    return EvaluationResult(
        rows=rows,
        labels=labels,
        summary=summary,
        settings=settings,
        unmatched_pred=list(unmatched.get("pred", [])),
        unmatched_ref=list(unmatched.get("ref", [])),
        confusion=confusion,
        output=root,
        boundary_error=(
            _read_json(root / "boundary_error.json") if (root / "boundary_error.json").is_file() else None
        ),
    )
