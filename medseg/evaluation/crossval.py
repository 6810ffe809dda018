"""Cross-validation results of a run made by ``medseg train --folds``: :func:`cross_validate`.

The out-of-fold (OOF) predictions of every fold (``RUN/fold_<k>/validation``, each case predicted
by the one model that did not train on it) are evaluated together against ``RUN/references``
with :func:`medseg.evaluation.workflow.evaluate`. The Dice of a fold is the mean over its
validation cases, per class, and over the classes; the pooled Dice the same over every OOF case.
The post-processing is chosen from the same predictions
(:mod:`medseg.inference.postprocess_selection`) into ``RUN/postprocessing.json``, which
``medseg predict -m RUN`` applies.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.evaluation.oof import _record, choose_run_postprocessing, oof_cases, run_labels
from medseg.evaluation.results import EvaluationResult
from medseg.io.atomic import write_text_atomic

log = logging.getLogger(__name__)

CROSSVAL_FILE = "crossval.json"


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links: a copy
        shutil.copy2(src, dst)


def _gather(run: Path, by_fold: Mapping[int, list[str]], oof_dir: Path) -> None:
    """Every fold's OOF label maps in one folder (hard links, else copies); stale ones removed."""
    from medseg.training.fold_layout import fold_dir

    oof_dir.mkdir(parents=True, exist_ok=True)
    wanted = {
        f"{cid}.nii.gz": fold_dir(run, f) / "validation" / f"{cid}.nii.gz"
        for f, cs in by_fold.items()
        for cid in cs
    }
    for p in oof_dir.iterdir():
        if p.name not in wanted:
            p.unlink()
    for name, src in wanted.items():
        _link(src, oof_dir / name)


def _dice_table(result: EvaluationResult, cases: list[str]) -> dict[str, Any]:
    """Mean Dice per class over ``cases`` and the mean over classes."""
    chosen = set(cases)
    per_class = {}
    for label, name in result.labels.items():
        values = [r.dice for r in result.rows if r.class_id == label and r.case in chosen]
        per_class[name] = float(np.mean(values)) if values else float("nan")
    finite = [v for v in per_class.values() if not np.isnan(v)]
    return {
        "n_cases": len(chosen),
        "dice": per_class,
        "mean": float(np.mean(finite)) if finite else float("nan"),
    }


@dataclass
class CrossValidation:
    """What :func:`cross_validate` found.

    Attributes:
        run_dir: The cross-validation run.
        k: The number of folds.
        per_fold: ``{fold: {"n_cases", "dice": {class name: mean}, "mean"}}`` for every fold evaluated.
        pooled: The same over every OOF case.
        missing: Folds without OOF predictions (not trained or not finished).
        evaluation: The evaluation of the pooled OOF predictions.
        postprocessing: The content of postprocessing.json.
        output: The folder written (crossval.json, evaluation/, oof/, report.html).
        report: The HTML report, when written.
    """

    run_dir: Path
    k: int
    per_fold: dict[int, dict[str, Any]]
    pooled: dict[str, Any]
    missing: list[int]
    evaluation: EvaluationResult
    postprocessing: dict[str, Any]
    output: Path
    report: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        means = [v["mean"] for v in self.per_fold.values()]
        return {
            "run_dir": str(self.run_dir.resolve()),
            "k": self.k,
            "folds_evaluated": sorted(self.per_fold),
            "folds_missing": self.missing,
            "per_fold": {str(f): v for f, v in sorted(self.per_fold.items())},
            "pooled": self.pooled,
            "fold_mean_dice": {
                "mean": float(np.mean(means)),
                "sd": float(np.std(means, ddof=1)) if len(means) > 1 else None,
            },
            "postprocessing": self.postprocessing,
        }

    def table(self) -> str:
        """A plain-text table: Dice per class for each fold and pooled."""
        names = list(self.pooled["dice"])
        lines = ["fold   cases  " + "  ".join(f"{n[:12]:>12}" for n in names) + "          mean"]
        rows = [(str(f), v) for f, v in sorted(self.per_fold.items())] + [("pooled", self.pooled)]
        for title, v in rows:
            cells = "  ".join(f"{v['dice'][n]:12.4f}" for n in names)
            lines.append(f"{title:<6} {v['n_cases']:>5}  {cells}  {v['mean']:12.4f}")
        if self.missing:
            lines.append(f"folds without out-of-fold predictions: {self.missing}")
        return "\n".join(lines)


def cross_validate(
    run_dir: str | Path,
    output: str | Path | None = None,
    device: str = "auto",
    report: bool = True,
    n_cases: int = 3,
    window: object | None = "auto",
    viewer: bool = True,
    min_gain: float | None = None,
) -> CrossValidation:
    """Evaluate a cross-validation run: Dice per fold and pooled over the OOF predictions, the
    post-processing choice, and an HTML report.

    Finished folds whose OOF predictions are missing are predicted first (that needs the data).

    Args:
        run_dir: A run folder made by ``medseg train --folds`` (:func:`~medseg.training.folds.train_folds`).
        output: Where to write ``crossval.json``, ``evaluation/`` (as ``medseg evaluate``), ``oof/``
            (the pooled OOF label maps) and ``report.html`` (default ``RUN/crossval``).
        device: For OOF predictions still to make.
        report: Write ``report.html``.
        n_cases, window, viewer: As :func:`medseg.reporting.report.build_report`.
        min_gain: The post-processing margin (default
            :data:`~medseg.inference.postprocess_selection.MIN_GAIN`).

    Raises:
        InputNotFoundError: not a cross-validation run.
        MedsegError: no fold has OOF predictions.
    """
    from medseg.evaluation.workflow import evaluate
    from medseg.training.folds import fold_dir, fold_state, predict_out_of_fold

    run = Path(run_dir)
    record = _record(run)
    k = int(record["k"])
    for f in range(k):
        state = fold_state(fold_dir(run, f))
        if state.finished and not state.oof_done:
            predict_out_of_fold(run, f, device=device)
    by_fold = oof_cases(run)
    missing = [f for f in range(k) if f not in by_fold]
    if not by_fold:
        raise MedsegError(
            f"no fold of {run} has finished training", hint="train with --folds all (or --resume)"
        )
    if missing:
        log.warning(
            "folds %s have no out-of-fold predictions: cross-validation over folds %s only",
            missing,
            sorted(by_fold),
        )
    out = Path(output) if output is not None else run / "crossval"
    _gather(run, by_fold, out / "oof")
    labels = run_labels(run)
    result = evaluate(out / "oof", run / "references", labels=labels, output=out / "evaluation")
    per_fold = {f: _dice_table(result, cases) for f, cases in sorted(by_fold.items())}
    pooled = _dice_table(result, [c for cases in by_fold.values() for c in cases])
    selection = choose_run_postprocessing(run, min_gain)
    cv = CrossValidation(run, k, per_fold, pooled, missing, result, selection.to_dict(), out)
    write_text_atomic(out / CROSSVAL_FILE, json.dumps(cv.to_dict(), indent=2))
    if report:
        from medseg.reporting.crossval import write_crossval_report

        cv.report = write_crossval_report(cv, out / "report.html", n_cases, window, viewer)
    return cv
