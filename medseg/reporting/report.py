"""``medseg report``: one self-contained HTML page for a run folder or an evaluation folder.

The page reads like a results page. First the per-class summary table, an interactive
3D viewer of the cases (NiiVue, see :mod:`medseg.reporting.viewer`) and overlays of the
worst and best cases by mean Dice; the lesion-wise results when the evaluation has them
(:mod:`medseg.reporting.lesions`); then the per-case metrics table (sortable by any
column), the training curves (run folders) and, folded away, the configuration and plan.
Images and volumes are embedded as data URIs and every script is inline, so the file
opens in a browser without network access.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from medseg.errors import InputNotFoundError, MedsegError
from medseg.evaluation.markdown import miou_notes, pooled_iou_text
from medseg.evaluation.results import EvaluationResult, load_evaluation
from medseg.reporting.boundary_error import error_curve_section
from medseg.reporting.html import Cell, esc, img_tag, number_cell, page, stats_cell, table

log = logging.getLogger(__name__)

__all__ = ["ReportSource", "build_report", "evaluation_section", "report_title", "resolve_source"]


@dataclass
class ReportSource:
    """What a report is made of: a run folder and/or an evaluation folder."""

    path: Path
    run_dir: Path | None
    evaluation_dir: Path | None


def _is_evaluation_dir(path: Path) -> bool:
    if (path / "evaluation.json").is_file():
        return True
    csv_path = path / "metrics.csv"
    if not csv_path.is_file():
        return False
    with csv_path.open(encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return header.startswith("case,")


def resolve_source(path: str | Path) -> ReportSource:
    """Classify ``path`` as an evaluation folder or a run folder (optionally with evaluation/).

    Raises:
        InputNotFoundError: the path does not exist or is neither kind of folder.
    """
    p = Path(path)
    if not p.is_dir():
        raise InputNotFoundError(f"{p} is not a folder", hint="give a run folder or an evaluation folder")
    if _is_evaluation_dir(p):
        return ReportSource(p, None, p)
    is_run = any((p / name).is_file() for name in ("config.yaml", "plan.json", "metrics.csv"))
    evaluation = p / "evaluation"
    if is_run:
        return ReportSource(p, p, evaluation if _is_evaluation_dir(evaluation) else None)
    raise InputNotFoundError(
        f"{p} is neither a run folder (config.yaml, metrics.csv) nor an evaluation folder (metrics.csv, "
        "evaluation.json)",
        hint="write an evaluation folder with: medseg evaluate --pred P --ref R --output FOLDER",
    )


def _summary_table(result: EvaluationResult) -> str:
    unit = result.settings.get("distance_unit", "mm")
    tol = result.settings.get("nsd_tolerance_mm", 1.0)
    vol = {"ml": "ml", "mm2": "mm²", "px2": "px²"}.get(result.volume_unit, result.volume_unit)
    band = result.settings.get("boundary_band_mm")
    header = ["class", "cases", "Dice", "IoU", f"HD95 ({unit})", f"ASSD ({unit})", f"NSD @ {tol:g} {unit}"]
    header += [f"boundary IoU @ {band:g} {unit}" if band else "boundary IoU", "IoU pooled"]
    header += [f"|ΔV| ({vol})", "relative ΔV"]
    groups: list[tuple[str, int | None, dict]] = [
        (f"{name} ({cid})", cid, result.summary["classes"][str(cid)]) for cid, name in result.labels.items()
    ]
    if len(result.labels) > 1:
        groups.append(("all classes", None, result.summary["overall"]))
    rows = []
    for title, cid, group in groups:
        m = group["metrics"]
        both = group.get("n_both_empty", 0)
        name = esc(title) + (f"<br><small>{both} empty in both (count as perfect)</small>" if both else "")
        rows.append(
            [
                Cell(name, None, "text"),
                Cell(str(m["dice"]["n"]), str(m["dice"]["n"])),
                stats_cell(m["dice"], 3),
                stats_cell(m["iou"], 3),
                stats_cell(m["hd95"], 2),
                stats_cell(m["assd"], 2),
                stats_cell(m["nsd"], 3),
                stats_cell(m.get("boundary_iou"), 3),
                Cell(esc(pooled_iou_text(result.summary.get("miou"), cid))),
                stats_cell(m["abs_volume_diff_ml"], 2),
                stats_cell(m["rel_volume_diff"], 3),
            ]
        )
    return table(header, rows, sortable=False)


def _cases_table(result: EvaluationResult) -> str:
    unit = result.settings.get("distance_unit", "mm")
    vol = {"ml": "ml", "mm2": "mm²", "px2": "px²"}.get(result.volume_unit, result.volume_unit)
    header = ["case", "class", "Dice", "IoU", f"HD95 ({unit})", f"ASSD ({unit})", "NSD", "boundary IoU"]
    header += [f"V pred ({vol})", f"V ref ({vol})", f"|ΔV| ({vol})", "rel ΔV"]
    rows = []
    for r in result.rows:
        rows.append(
            [
                r.case,
                r.class_name,
                number_cell(r.dice),
                number_cell(r.iou),
                number_cell(r.hd95, 3),
                number_cell(r.assd, 3),
                number_cell(r.nsd),
                number_cell(r.boundary_iou),
                number_cell(r.volume_pred_ml, 3),
                number_cell(r.volume_ref_ml, 3),
                number_cell(r.abs_volume_diff_ml, 3),
                number_cell(r.rel_volume_diff, 3),
            ]
        )
    return '<div class="scroll">' + table(header, rows, sortable=True, table_id="cases") + "</div>"


def _confusion_table(result: EvaluationResult) -> str:
    cm = result.confusion
    if cm is None:
        return ""
    header = ["reference \\ prediction", *cm.names]
    rows = [
        [name, *(Cell(str(int(v)), str(int(v))) for v in cm.matrix[i])] for i, name in enumerate(cm.names)
    ]
    iou = cm.iou()
    text = ", ".join(
        f"{esc(n)} {iou[label]:.4f}" for label, n in zip(cm.labels, cm.names) if not math.isnan(iou[label])
    )
    return (
        "<h3>Pixel confusion matrix (all cases pooled)</h3>"
        + table(header, rows)
        + f"<p>IoU per class (pooled pixels): {text}. Mean IoU over foreground classes: "
        f"<b>{cm.mean_iou():.4f}</b>; with background: {cm.mean_iou(include_background=True):.4f}.</p>"
    )


def _ranked(result: EvaluationResult, n_cases: int) -> tuple[list[str], list[str], list[str]]:
    """``(worst n, best n, every case by mean Dice ascending)``; cases without a Dice come last."""
    means = result.case_mean("dice")
    ranked = [c for _, c in sorted((v, c) for c, v in means.items() if not math.isnan(v))]
    unranked = [c for c in result.cases if c not in ranked]
    if not ranked or n_cases == 0:
        return [], [], ranked + unranked
    n = min(n_cases, max(1, len(ranked) // 2)) if len(ranked) > 1 else 1
    worst = ranked[:n]
    best = [c for c in reversed(ranked[-n:]) if c not in worst]
    return worst, best, ranked + unranked


def _case_figures(result: EvaluationResult, worst: list[str], best: list[str], window: object | None) -> str:
    from medseg.reporting.cases import render_case

    if not worst and not best:
        return ""
    means = result.case_mean("dice")
    parts = [
        "<h2>Worst and best cases</h2><p>Ranked by the mean Dice over classes. Reference: solid contours; "
        "prediction: dashed contours; slices through the centre of the reference.</p>"
    ]
    for title, cases in ((f"Worst {len(worst)}", worst), (f"Best {len(best)}", best)):
        if not cases:
            continue
        parts.append(f"<h3>{esc(title)}</h3>")
        for case in cases:
            caption = f"{esc(case)}: mean Dice {means[case]:.4f}"
            try:
                picture = render_case(result, case, window=window)
            except MedsegError as exc:
                log.warning("no overlay for %s: %s", case, exc)
                parts.append(f'<p class="note">{caption}: no overlay ({esc(exc)})</p>')
                continue
            image = img_tag(picture.png, f"overlay of {case}")
            parts.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    return "".join(parts)


def _viewer(
    result: EvaluationResult, worst: list[str], best: list[str], order: list[str], window: object | None
) -> str:
    """The NiiVue viewer: every case (worst first) when few, else the worst and best ones."""
    from medseg.reporting.viewer import MAX_VIEWER_CASES, viewer_section

    cases = order if len(order) <= MAX_VIEWER_CASES else worst + best
    return viewer_section(result, cases, window) if cases else ""


def _summary_section(result: EvaluationResult) -> str:
    """Heading, settings line, per-class summary table and notes about unmatched cases."""
    s = result.settings
    tol = s.get("nsd_tolerance_mm", 1.0)
    unit = s.get("distance_unit", "mm")
    parts = [
        "<h2>Evaluation</h2>",
        f'<p class="meta">{len(result.cases)} cases, {len(result.labels)} classes; predictions '
        f"<code>{esc(s.get('pred_dir', '?'))}</code>, references <code>{esc(s.get('ref_dir', '?'))}</code>; "
        f"NSD tolerance {tol:g} {esc(unit)}; HD95 = 95th percentile symmetric Hausdorff distance"
        f"{'; predictions resampled onto the reference grid' if s.get('resample_pred') else ''}.</p>",
        "<h3>Summary per class (mean ± sample sd over cases)</h3>",
        _summary_table(result),
        "<p><small>Empty masks: both empty count as Dice = NSD = boundary IoU = 1 and distances 0; when only "
        "one is empty Dice = NSD = boundary IoU = 0 and HD95/ASSD are infinite, left out of the means and "
        "counted as 'inf'. Boundary IoU: Cheng et al., CVPR 2021 (IoU of the inner bands of the masks). "
        "IoU pooled: intersections and unions summed over cases (the dataset-level IoU).</small></p>",
        *(f"<p>{esc(line)}</p>" for line in miou_notes(result.summary.get("miou"))),
    ]
    unmatched = []
    if result.unmatched_ref:
        unmatched.append(f"References without prediction: {esc(', '.join(result.unmatched_ref))}. ")
    if result.unmatched_pred:
        unmatched.append(f"Predictions without reference: {esc(', '.join(result.unmatched_pred))}.")
    if unmatched:
        parts.append('<p class="note">' + "".join(unmatched) + "</p>")
    return "".join(parts)


def evaluation_section(
    result: EvaluationResult, n_cases: int = 3, window: object | None = "auto", viewer: bool = True
) -> str:
    """HTML of an evaluation, results first: summary table, 3D viewer, worst/best overlays, the
    lesion-wise results (evaluations made with ``--lesions``), then the per-case table, the
    pooled confusion matrix and the error rate against the distance to the reference boundary."""
    worst, best, order = _ranked(result, n_cases)
    parts = [_summary_section(result)]
    if viewer:
        parts.append(_viewer(result, worst, best, order, window))
    parts.append(_case_figures(result, worst, best, window))
    if result.summary.get("lesions"):
        from medseg.reporting.lesions import lesion_section

        parts.append(lesion_section(result))
    parts.append("<h2>Per-case metrics</h2><p>Click a column header to sort.</p>")
    parts.append(_cases_table(result))
    parts.append(_confusion_table(result))
    parts.append(error_curve_section(result.boundary_error))
    return "".join(parts)


def _save_curves(png: bytes, path: Path) -> None:
    """Refresh the run's curves.png (a read-only run folder only costs the file)."""
    from medseg.reporting.figures import save_png

    try:
        save_png(png, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


def _curves_section(run_dir: Path) -> str:
    """The training curves (also refreshed as ``RUN/curves.png``), or nothing without metrics.csv."""
    from medseg.reporting.curves import has_validation, read_run_metrics, render_curves

    metrics_csv = run_dir / "metrics.csv"
    if not metrics_csv.is_file():
        return ""
    try:
        metrics = read_run_metrics(metrics_csv)
    except MedsegError as exc:
        return f'<h2>Training curves</h2><p class="note">{esc(exc)}</p>'
    png = render_curves(metrics, run_dir.resolve().name)
    _save_curves(png, run_dir / "curves.png")
    panels = "Loss, validation Dice per class and learning rate"
    if metrics.n_rows and not has_validation(metrics):
        panels = "Loss and learning rate (trained without validation)"
    return (
        "<h2>Training curves</h2>"
        f"<figure>{img_tag(png, 'training curves')}<figcaption>{panels} over {metrics.n_rows} logged "
        "rows.</figcaption></figure>"
    )


def _setup_section(run_dir: Path) -> str:
    """The configuration and the preprocessing plan, folded away (``<details>``)."""
    parts = []
    config = run_dir / "config.yaml"
    if config.is_file():
        text = config.read_text(encoding="utf-8", errors="replace")
        parts.append(
            f"<details><summary>Configuration (config.yaml)</summary><pre>{esc(text)}</pre></details>"
        )
    plan = run_dir / "plan.json"
    if plan.is_file():
        try:
            text = json.dumps(json.loads(plan.read_text(encoding="utf-8")), indent=2)
        except (OSError, ValueError):
            text = plan.read_text(encoding="utf-8", errors="replace")
        parts.append(
            f"<details><summary>Preprocessing plan (plan.json)</summary><pre>{esc(text)}</pre></details>"
        )
    return "<h2>Configuration</h2>" + "".join(parts) if parts else ""


def report_title(source: ReportSource) -> str:
    """The pipeline's ``name`` from the run's config.yaml, else the folder's name (the run's
    folder for ``RUN/evaluation``)."""
    import yaml

    folder = source.run_dir or source.path
    config = folder / "config.yaml"
    if config.is_file():
        try:
            data = yaml.safe_load(config.read_text(encoding="utf-8", errors="replace"))
        except yaml.YAMLError as exc:
            log.warning("cannot read the pipeline name from %s: %s", config, exc)
            data = None
        if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"].strip():
            return data["name"].strip()
    resolved = folder.resolve()
    if (
        source.run_dir is None
        and resolved.name == "evaluation"
        and (resolved.parent / "config.yaml").is_file()
    ):
        return report_title(ReportSource(resolved.parent, resolved.parent, resolved))
    return resolved.name


def build_report(
    path: str | Path,
    output: str | Path | None = None,
    n_cases: int = 3,
    window: object | None = "auto",
    viewer: bool = True,
) -> Path:
    """Write a self-contained HTML report of a run folder or an evaluation folder.

    The page reads like a results page: summary table, 3D viewer and worst/best cases
    first, then the per-case table, the training curves and, folded away, the
    configuration. For a run folder the training curves are also written to ``RUN/curves.png``.

    Args:
        path: A run folder (config.yaml, plan.json, metrics.csv, optional evaluation/) or an
            evaluation folder (metrics.csv, summary.json, evaluation.json).
        output: The HTML file to write (default: ``PATH/report.html``).
        n_cases: How many worst and best cases get an overlay.
        window: CT window of the overlays (preset, ``"L,W"``, ``"auto"`` or None for percentiles).
        viewer: Embed the interactive NiiVue viewer (about 2.3 MB of script plus the volumes).

    Returns:
        The written file.
    """
    from medseg import __version__
    from medseg.io.atomic import write_text_atomic

    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    source = resolve_source(path)
    title = f"medseg report: {report_title(source)}"
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Source <code>{esc(source.path.resolve())}</code>; generated {esc(created)} '
        f"by medseg {esc(__version__)}.</p>",
    ]
    if source.evaluation_dir is not None:
        body.append(evaluation_section(load_evaluation(source.evaluation_dir), n_cases, window, viewer))
    elif source.run_dir is not None:
        body.append(
            '<p class="note">This run has no evaluation/ folder yet: run <code>medseg evaluate --pred PRED '
            f"--ref REF --output {esc(source.run_dir / 'evaluation')}</code> to add metrics and overlays.</p>"
        )
    if source.run_dir is not None:
        body.append(_curves_section(source.run_dir))
        body.append(_setup_section(source.run_dir))
    out = Path(output) if output is not None else source.path / "report.html"
    write_text_atomic(out, page(title, "".join(body)))
    return out
