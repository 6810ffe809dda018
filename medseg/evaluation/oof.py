"""Out-of-fold (OOF) predictions of a cross-validation run and the post-processing chosen from
them: :func:`choose_run_postprocessing` writes ``RUN/postprocessing.json`` (read by
``medseg predict -m RUN``). Used by :func:`medseg.training.folds.train_folds` once every fold is
done and by :mod:`medseg.evaluation.crossval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.errors import InputNotFoundError, MedsegError
from medseg.io.atomic import write_text_atomic


def _record(run: Path) -> dict[str, Any]:
    from medseg.training.fold_layout import read_folds

    record = read_folds(run)
    if record is None:
        raise InputNotFoundError(
            f"{run} is not a cross-validation run (no folds.json)",
            hint="train one with: medseg train PIPELINE -o RUN --folds all",
        )
    return record


def run_labels(run_dir: str | Path) -> dict[int, str]:
    """The foreground labels ``{value: name}`` a cross-validation run predicts: its regions' painted
    values for a region model, else the classes of its plan.

    Raises:
        InputNotFoundError: no fold holds a plan.json yet.
    """
    import yaml

    from medseg.training.fold_layout import fold_dir
    from medseg.transforms.preprocess import Plan

    run = Path(run_dir)
    for f in range(int(_record(run)["k"])):
        folder = fold_dir(run, f)
        if (folder / "plan.json").is_file():
            config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
            regions = config.get("regions") or []
            if regions:
                return {int(r["value"]): str(r["name"]) for r in regions}
            plan = Plan.from_json((folder / "plan.json").read_text(encoding="utf-8"))
            return {int(k): str(v) for k, v in plan.labels.items() if int(k) != 0}
    raise InputNotFoundError(f"no fold of {run} has been trained yet", hint="train the folds first")


def oof_cases(run_dir: str | Path) -> dict[int, list[str]]:
    """The case ids of each fold whose out-of-fold predictions are complete (oof.json)."""
    from medseg.training.fold_layout import OOF_MARKER, fold_dir

    run = Path(run_dir)
    out = {}
    for f in range(int(_record(run)["k"])):
        marker = fold_dir(run, f) / "validation" / OOF_MARKER
        if marker.is_file():
            out[f] = [str(c) for c in json.loads(marker.read_text(encoding="utf-8"))["cases"]]
    return out


def choose_run_postprocessing(run_dir: str | Path, min_gain: float | None = None) -> Any:
    """Choose the post-processing of a cross-validation run from its OOF predictions and write
    ``RUN/postprocessing.json`` (the choices, the mean OOF Dice of each class before and after,
    every candidate's, the folds and the rule).

    Returns:
        The :class:`~medseg.inference.postprocess_selection.PostprocessSelection`.

    Raises:
        MedsegError: no fold has OOF predictions yet.
    """
    from medseg.evaluation.labelmaps import read_labels
    from medseg.inference.ensemble import POSTPROCESSING_FILE
    from medseg.inference.postprocess_selection import MIN_GAIN, select_postprocessing
    from medseg.training.fold_layout import fold_dir

    run = Path(run_dir)
    by_fold = oof_cases(run)
    if not by_fold:
        raise MedsegError(f"{run} has no out-of-fold predictions yet", hint="finish training the folds first")

    def pairs():
        for f, cases in sorted(by_fold.items()):
            for cid in cases:
                ref = read_labels(run / "references" / f"{cid}.nii.gz")
                pred = read_labels(fold_dir(run, f) / "validation" / f"{cid}.nii.gz")
                yield pred.array, ref.array, ref.spacing

    gain = MIN_GAIN if min_gain is None else float(min_gain)
    selection = select_postprocessing(pairs(), run_labels(run), min_gain=gain)
    selection.extra = {"folds": sorted(by_fold), "n_cases": sum(len(c) for c in by_fold.values())}
    write_text_atomic(run / POSTPROCESSING_FILE, json.dumps(selection.to_dict(), indent=2))
    return selection
