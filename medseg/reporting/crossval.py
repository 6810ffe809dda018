"""The HTML report of a cross-validation run (``medseg crossval``): Dice per fold and pooled, the
post-processing chosen out-of-fold, then the evaluation of the pooled out-of-fold predictions as
``medseg report`` shows an evaluation (:func:`~medseg.reporting.report.evaluation_section`)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medseg.reporting.html import Cell, esc, number_cell, page, table


def _folds_table(cv: Any) -> str:
    names = list(cv.pooled["dice"])
    header = ["fold", "cases", *(f"Dice {n}" for n in names), "mean Dice"]
    rows = []
    for title, v in [(f"fold {f}", v) for f, v in sorted(cv.per_fold.items())] + [
        ("pooled out-of-fold", cv.pooled)
    ]:
        rows.append(
            [
                Cell(esc(title), None, "text"),
                Cell(str(v["n_cases"]), str(v["n_cases"])),
                *(number_cell(v["dice"][n]) for n in names),
                number_cell(v["mean"]),
            ]
        )
    return table(header, rows, sortable=False)


def _postprocessing_table(pp: dict[str, Any]) -> str:
    header = ["class", "chosen", "OOF Dice before", "OOF Dice after", "candidates tried"]
    rows = []
    for label, c in pp["classes"].items():
        if c["applied"]:
            parts = ["keep largest"] if c["keep_largest"] else []
            parts += [f"remove < {c['min_size_mm3']:.4g} mm³"] if c["min_size_mm3"] > 0 else []
            chosen = " + ".join(parts)
        else:
            chosen = "none"
        rows.append(
            [
                Cell(esc(f"{c['name']} ({label})"), None, "text"),
                Cell(esc(chosen), None, "text"),
                number_cell(c["dice_before"]),
                number_cell(c["dice_after"]),
                Cell(str(len(c["candidates"])), str(len(c["candidates"]))),
            ]
        )
    return table(header, rows, sortable=False)


def crossval_section(cv: Any) -> str:
    """The cross-validation part of the page: folds table, fold spread and post-processing."""
    d = cv.to_dict()
    spread = d["fold_mean_dice"]
    sd = "" if spread["sd"] is None or math.isnan(spread["sd"]) else f" ± {spread['sd']:.4f} (sd over folds)"
    missing = (
        f'<p class="note">Folds without out-of-fold predictions (not finished): {esc(cv.missing)}.</p>'
        if cv.missing
        else ""
    )
    pp = cv.postprocessing
    return (
        f"<h2>Cross-validation ({cv.k} folds)</h2>"
        "<p>Each case is predicted by the one fold model that did not train on it (out-of-fold). Dice of a "
        "fold: mean over its validation cases; pooled: mean over every out-of-fold case. Mean of the fold "
        f"means: {spread['mean']:.4f}{esc(sd)}.</p>"
        f"{_folds_table(cv)}{missing}"
        "<h2>Post-processing chosen out-of-fold</h2>"
        f"<p>Rule: {esc(pp['rule'])} (min_gain {pp['min_gain']:g}). Applied by <code>medseg predict -m "
        f"RUN</code>; recorded in <code>{esc(cv.run_dir / 'postprocessing.json')}</code>.</p>"
        f"{_postprocessing_table(pp)}"
    )


def write_crossval_report(
    cv: Any, path: str | Path, n_cases: int = 3, window: object | None = "auto", viewer: bool = True
) -> Path:
    """Write the self-contained HTML report of a :class:`~medseg.evaluation.crossval.CrossValidation`."""
    from medseg import __version__
    from medseg.io.atomic import write_text_atomic
    from medseg.reporting.report import ReportSource, evaluation_section, report_title

    title = f"medseg cross-validation: {report_title(ReportSource(cv.run_dir, cv.run_dir, None))}"
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Run <code>{esc(cv.run_dir.resolve())}</code>; generated {esc(created)} by medseg '
        f"{esc(__version__)}.</p>",
        crossval_section(cv),
        evaluation_section(cv.evaluation, n_cases, window, viewer),
    ]
    out = Path(path)
    write_text_atomic(out, page(title, "".join(body)))
    return out
