"""``medseg compare``: several evaluations side by side, with paired per-case differences.

Each run is an evaluation folder, or a run folder holding ``evaluation/``. For every
class (and for all classes, through the per-case mean over classes) and for Dice, IoU,
boundary IoU, HD95, ASSD and NSD the comparison lists each run's mean ± sd, and for every
run after the first the mean paired difference to the first run over the cases both
evaluated, with the two-sided Wilcoxon signed-rank p-value. Boundary metrics (boundary IoU,
HD95, ASSD, NSD) are highlighted: they show how architectural choices change boundary
quality where Dice barely moves. A table gives each run's dataset-level IoU per class and
mIoU (intersections and unions pooled over cases), and when every run has a
``boundary_error.json`` over the same bins, ``compare_error_curve.png`` overlays their error
rates against the distance to the reference boundary. Evaluations made with
``medseg evaluate --lesions`` (same lesion settings in every run) add the lesion-wise Dice,
the lesion-wise HD95 and the detection F1 at the first IoU threshold, paired per case in
the same way.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputNotFoundError, MedsegError
from medseg.evaluation.results import EvaluationResult, load_evaluation
from medseg.evaluation.summary import describe
from medseg.reporting.boundary_error import comparable_curves, error_curve_png
from medseg.reporting.compare_render import (
    COMPARED_METRICS,
    ERROR_CURVE_PNG,
    comparison_html,
    comparison_markdown,
    comparison_png,
    metric_info,
)

log = logging.getLogger(__name__)

__all__ = ["COMPARED_METRICS", "Comparison", "ComparisonRow", "compare_runs", "paired_difference"]

ALL_CLASSES = "all classes"


@dataclass
class ComparisonRow:
    """One class and metric across runs."""

    class_id: int | None
    class_name: str
    metric: str
    stats: list[dict[str, Any]]
    diffs: list[dict[str, Any] | None]

    @property
    def boundary(self) -> bool:
        """Boundary IoU, HD95, ASSD and NSD are boundary metrics."""
        return metric_info(self.metric)[2]


@dataclass
class Comparison:
    """The comparison of several evaluations (the first one is the baseline)."""

    names: list[str]
    folders: list[Path]
    rows: list[ComparisonRow] = field(default_factory=list)
    results: list[EvaluationResult] = field(default_factory=list)
    distance_unit: str = "mm"
    error_curves: dict[str, dict[str, Any]] | None = None

    def to_markdown(self) -> str:
        """The side-by-side table as Markdown (boundary metrics in bold)."""
        return comparison_markdown(self)

    def to_csv(self) -> str:
        """Long-format CSV: one line per class, metric and run."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            [
                "class_id",
                "class_name",
                "metric",
                "run",
                "n",
                "n_nonfinite",
                "mean",
                "std",
                "median",
                "min",
                "max",
                "n_pairs",
                "mean_diff_vs_first",
                "wilcoxon_p",
                "boundary_metric",
            ]
        )
        for row in self.rows:
            for n, (name, stats) in enumerate(zip(self.names, row.stats)):
                diff = row.diffs[n] or {}
                writer.writerow(
                    [
                        "" if row.class_id is None else row.class_id,
                        row.class_name,
                        row.metric,
                        name,
                        stats["n"],
                        stats["n_nonfinite"],
                        *(_num(stats.get(k)) for k in ("mean", "std", "median", "min", "max")),
                        diff.get("n_pairs", ""),
                        _num(diff.get("mean_diff")),
                        _num(diff.get("p_value")),
                        int(row.boundary),
                    ]
                )
        return buf.getvalue()

    def write(self, out_dir: str | Path) -> Path:
        """Write compare.md, compare.csv, compare.html, compare.png (and, when every run has a
        boundary_error.json, compare_error_curve.png) atomically into ``out_dir``."""
        from medseg.io.atomic import write_bytes_atomic, write_text_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png = comparison_png(self)
        curve = error_curve_png(self.error_curves) if self.error_curves else None
        write_text_atomic(out / "compare.md", self.to_markdown())
        write_text_atomic(out / "compare.csv", self.to_csv())
        write_bytes_atomic(out / "compare.png", png)
        if curve is not None:
            write_bytes_atomic(out / ERROR_CURVE_PNG, curve)
        write_text_atomic(out / "compare.html", comparison_html(self, png, curve))
        return out


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value))


def paired_difference(baseline: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
    """Mean of ``other - baseline`` over pairs where both are finite, and the two-sided
    Wilcoxon signed-rank p-value (None below 2 pairs; 1.0 when every difference is 0)."""
    from scipy import stats

    a, b = np.asarray(baseline, dtype=np.float64), np.asarray(other, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    out: dict[str, Any] = {
        "n_pairs": int(ok.sum()),
        "n_excluded": int((~ok).sum()),
        "mean_diff": float(d.mean()) if d.size else None,
        "p_value": None,
    }
    if d.size >= 2:
        if np.all(d == 0):
            out["p_value"] = 1.0
        else:
            try:
                out["p_value"] = float(stats.wilcoxon(d).pvalue)
            except ValueError:
                out["p_value"] = None
    return out


def _resolve(path: str | Path) -> tuple[str, Path]:
    p = Path(path)
    if (p / "metrics.csv").is_file() and (p / "evaluation.json").is_file():
        name = p.resolve().parent.name if p.resolve().name == "evaluation" else p.resolve().name
        return name, p
    if (p / "evaluation" / "metrics.csv").is_file():
        return p.resolve().name, p / "evaluation"
    if not p.exists():
        raise InputNotFoundError(f"{p} does not exist", hint="give evaluation folders or run folders")
    raise InputNotFoundError(
        f"{p} is neither an evaluation folder nor a run folder with evaluation/",
        hint=f"evaluate it first: medseg evaluate --pred PRED --ref REF --output {p / 'evaluation'}",
    )


def _values(result: EvaluationResult, metric: str, class_id: int | None) -> dict[str, float]:
    if class_id is None:
        return result.case_mean(metric)
    return {r.case: getattr(r, metric) for r in result.rows if r.class_id == class_id}


def _row(
    class_id: int | None, class_name: str, metric: str, per_run: list[dict[str, float]]
) -> ComparisonRow:
    """Statistics of each run and paired differences to the first run over the cases both evaluated."""
    stats = [describe(v.values()) for v in per_run]
    base = per_run[0]
    diffs: list[dict[str, Any] | None] = [None]
    for values in per_run[1:]:
        cases = sorted(base.keys() & values.keys())
        diffs.append(paired_difference([base[c] for c in cases], [values[c] for c in cases]))
    return ComparisonRow(class_id, class_name, metric, stats, diffs)


def _lesion_tables(
    results: Sequence[EvaluationResult], folders: Sequence[Path]
) -> list[dict[str, dict[tuple[str, int], float]]]:
    """Per run, the compared lesion columns (lesion_dice, lesion_hd95, F1 at the first IoU threshold)
    of metrics.csv; empty unless every run was evaluated with the same lesion settings."""
    from medseg.evaluation.lesion_results import read_lesion_values

    settings = [r.settings.get("lesions") for r in results]
    if not all(settings):
        return []
    keys = ("connectivity", "dilation", "max_hd95_mm", "min_volume", "iou_thresholds")
    if len({repr([s.get(k) for k in keys]) for s in settings if s}) > 1:
        log.warning("the runs were evaluated with different lesion settings: lesion rows left out")
        return []
    first = settings[0] or {}
    metrics = ["lesion_dice", "lesion_hd95", f"lesion_f1@{float(first['iou_thresholds'][0]):g}"]
    tables = [read_lesion_values(f) for f in folders]
    if not all(all(m in t for m in metrics) for t in tables):
        log.warning("an evaluation folder lacks lesion columns in metrics.csv: lesion rows left out")
        return []
    return [{m: t[m] for m in metrics} for t in tables]


def _lesion_values(
    table: dict[tuple[str, int], float], class_id: int | None, classes: Sequence[int]
) -> dict[str, float]:
    """Per case, the value of one class, or (``class_id`` None) the mean of the finite values over
    ``classes`` (NaN when none is finite)."""
    if class_id is not None:
        return {case: v for (case, cid), v in table.items() if cid == class_id}
    per_case: dict[str, list[float]] = {}
    for (case, cid), v in table.items():
        if cid in classes:
            per_case.setdefault(case, []).append(v)
    return {
        case: float(np.mean(f)) if (f := [v for v in vs if math.isfinite(v)]) else math.nan
        for case, vs in per_case.items()
    }


def _check_settings(results: Sequence[EvaluationResult]) -> None:
    """Raise :class:`MedsegError` unless every evaluation used the same NSD tolerance and boundary IoU
    band (evaluations written before the band was recorded are not checked for it)."""
    for key, what, option in (
        ("nsd_tolerance_mm", "NSD tolerances", "--nsd-tolerance"),
        ("boundary_band_mm", "boundary IoU bands", "--boundary-band"),
    ):
        values = {r.settings.get(key) for r in results}
        if key == "boundary_band_mm":
            values.discard(None)
        if len(values) > 1:
            raise MedsegError(
                f"the evaluations use different {what} ({', '.join(sorted(map(str, values)))} mm)",
                hint=f"evaluate every run with the same {option}",
            )


def compare_runs(paths: Sequence[str | Path], output: str | Path | None = None) -> Comparison:
    """Compare the evaluations of several runs; the first is the baseline of the differences.

    Evaluations written before boundary IoU existed compare with NaN boundary IoU (``n/a``) and no
    error curve. When every run was evaluated with ``--lesions`` and the same lesion settings, the rows
    also hold the lesion-wise Dice (higher is better), the lesion-wise HD95 (mm, lower is better) and the
    detection F1 at the first IoU threshold, paired per case like the other metrics.

    Args:
        paths: Evaluation folders, or run folders holding ``evaluation/`` (at least two).
        output: Folder to write compare.md, compare.csv, compare.html and compare.png into (and
            compare_error_curve.png when every run has boundary_error.json over the same bins).

    Raises:
        MedsegError: fewer than two runs, a folder without evaluation, no class in common, or
            different NSD tolerances or boundary IoU bands.
    """
    if len(paths) < 2:
        raise MedsegError(
            "compare needs at least two runs", hint="give two or more run or evaluation folders"
        )
    resolved = [_resolve(p) for p in paths]
    names: list[str] = []
    for name, _ in resolved:
        unique, k = name, 2
        while unique in names:
            unique, k = f"{name}_{k}", k + 1
        names.append(unique)
    results = [load_evaluation(folder) for _, folder in resolved]
    common = [c for c in results[0].labels if all(c in r.labels for r in results[1:])]
    if not common:
        raise MedsegError(
            f"the evaluations share no class ({', '.join(str(sorted(r.labels)) for r in results)})",
            hint="evaluate the runs with the same --labels",
        )
    _check_settings(results)
    comparison = Comparison(
        names,
        [f for _, f in resolved],
        results=results,
        distance_unit=results[0].settings.get("distance_unit", "mm"),
        error_curves=comparable_curves(names, [r.boundary_error for r in results]),
    )
    groups: list[tuple[int | None, str]] = [(c, results[0].labels[c]) for c in common]
    if len(common) > 1:
        groups.append((None, ALL_CLASSES))
    lesions = _lesion_tables(results, [f for _, f in resolved])
    for class_id, class_name in groups:
        for metric in COMPARED_METRICS:
            per_run = [_values(r, metric, class_id) for r in results]
            comparison.rows.append(_row(class_id, class_name, metric, per_run))
        for metric in lesions[0] if lesions else ():
            per_run = [_lesion_values(t[metric], class_id, common) for t in lesions]
            comparison.rows.append(_row(class_id, class_name, metric, per_run))
    if output is not None:
        comparison.write(output)
    return comparison
