"""A time budget spent on a fold ensemble instead of one run, with the commands a user runs:

    medseg plan MANIFEST -o OUT/plan/plan.yaml --budget MINUTES/K --folds K
    medseg train OUT/plan/plan.yaml -o OUT/run --folds all      (K folds, MINUTES in all)
    medseg crossval OUT/run                                      (out-of-fold Dice, post-processing)

then the fold ensemble (``medseg predict -m OUT/run``'s predictor: the folds' mean probabilities,
with the post-processing chosen out of fold) predicts the manifest's held-out ``split: test``
cases, scored with ``medseg evaluate``. Every command runs with torch's threads, alone on the
machine, as a user's would.

Besides the held-out Dice it records the out-of-fold Dice of every training case (each predicted
by the one fold model that did not train on it, not by the ensemble), raw and with the
post-processing chosen on them. Both are optimistic: each fold keeps the checkpoint that scored best
on those cases, and the post-processing is chosen on them. From the post-processed values, a
bootstrap of test sets as large as the held-out one gives the share whose mean Dice reaches
``--target``: an illustration of how much a test set that small varies, not a prediction.

    python benchmarks/fold_ensemble.py --manifest data_manifests/lgg_brain_mri.json --minutes 30 \\
        --folds 5 --output /tmp/medseg_bench/ensemble_lgg --target 0.82 \\
        --json benchmarks/results/fold_ensemble_lgg.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, dump, machine
from benchmarks.plan_choice import held_out


def _medseg(*args: str, log: Path) -> None:
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "medseg", *args], stdout=out, stderr=subprocess.STDOUT)
    if code.returncode:
        sys.exit(f"medseg {args[0]} failed: see {log}")


def oof_dice(evaluation: Path, label: int) -> dict[str, float]:
    """Dice per case of class ``label``, from a ``medseg evaluate`` folder."""
    from medseg.evaluation.results import load_evaluation

    return {r.case: r.dice for r in load_evaluation(evaluation).rows if r.class_id == label}


def oof_dice_postprocessed(run: Path, options: dict[str, Any] | None, label: int) -> dict[str, float]:
    """Dice per case of class ``label`` once the post-processing chosen out of fold (``options``:
    ``postprocessing.json``'s ``options``) is applied to each out-of-fold label map, as
    ``medseg predict -m RUN`` applies it to new cases."""
    from medseg.evaluation.metrics import dice
    from medseg.inference.postprocess import PostprocessOptions, postprocess
    from medseg.io import read_volume

    chosen = PostprocessOptions.from_dict(options or {})
    out = {}
    for pred_path in sorted((run / "crossval" / "oof").glob("*.nii.gz")):
        case = pred_path.name[: -len(".nii.gz")]
        pred = read_volume(pred_path)
        ref = read_volume(run / "references" / pred_path.name).array
        labels = postprocess(pred.array.astype(np.int16), tuple(pred.spacing), chosen)
        out[case] = dice(labels == label, ref == label)
    return out


def chance_of_target(values: list[float], size: int, target: float, draws: int = 100_000) -> float:
    """Bootstrap share of ``size``-case test sets, drawn with replacement from ``values`` (new
    patients who score like these), whose mean Dice is at least ``target`` (``draws`` sets, fixed
    seed), rounded to 2 significant figures: an illustration, not a prediction."""
    v = np.asarray(values, dtype=float)
    if size < 1 or v.size == 0:
        raise ValueError(f"test sets of {size} cases drawn from {v.size} values")
    rng = np.random.default_rng(0)
    share = float(np.mean(v[rng.integers(0, v.size, (draws, size))].mean(axis=1) >= target))
    return float(f"{share:.2g}")


def fold_summaries(run: Path) -> list[dict[str, Any]]:
    """Steps trained and best validation Dice of each fold, from its metrics.csv."""
    out = []
    for metrics in sorted(run.glob("fold_*/metrics.csv")):
        with metrics.open() as f:
            rows = list(csv.DictReader(f))
        if rows:
            dice = [float(r["val_dice_mean"]) for r in rows if r.get("val_dice_mean")]
            best = round(max(dice), 4) if dice else None
            out.append({"fold": metrics.parent.name, "steps": int(rows[-1]["step"]), "best_val_dice": best})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--minutes", type=float, default=30.0, help="the whole budget, shared by the folds")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--output", required=True)
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--target", type=float, default=0.82, help="Dice the held-out mean should reach")
    ap.add_argument("--json")
    args = ap.parse_args()
    out = Path(args.output)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    plan, run = out / "plan" / "plan.yaml", out / "run"
    per_fold = args.minutes / args.folds
    common = ["--data-root", args.data_root, "--device", args.device]
    t0 = time.monotonic()
    budget = ["--budget", str(per_fold), "--folds", str(args.folds)]
    _medseg("plan", args.manifest, "-o", str(plan), *budget, *common, log=out / "plan.log")
    _medseg(
        "train", str(plan), "-o", str(run), "--folds", "all", "--device", args.device, log=out / "train.log"
    )
    train_minutes = (time.monotonic() - t0) / 60
    _medseg("crossval", str(run), "--device", args.device, "--no-report", log=out / "crossval.log")
    cv = json.loads((run / "crossval" / "crossval.json").read_text())
    from medseg.evaluation.oof import run_labels

    label = min(run_labels(run))  # the first foreground class (the LGG abnormality)
    oof = oof_dice(run / "crossval" / "evaluation", label)
    oof_post = oof_dice_postprocessed(run, (cv.get("postprocessing") or {}).get("options"), label)
    test = held_out(run, Path(args.manifest), args.data_root, out / "test", args.device)
    values = list(oof_post.values())  # post-processed as medseg predict -m RUN post-processes
    result = {
        "benchmark": "fold_ensemble",
        "manifest": args.manifest,
        "budget_minutes": args.minutes,
        "folds": args.folds,
        "minutes_per_fold": round(per_fold, 2),
        "wall_minutes_plan_and_training": round(train_minutes, 1),
        "folds_trained": fold_summaries(run),
        "postprocessing": cv.get("postprocessing"),
        "oof": {
            "cases": len(values),
            "dice_mean": round(float(np.mean(values)), 4),
            "dice_median": round(float(np.median(values)), 4),
            "per_case": {k: round(v, 4) for k, v in sorted(oof_post.items())},
            "before_postprocessing": {
                "dice_mean": round(float(np.mean(list(oof.values()))), 4),
                "dice_median": round(float(np.median(list(oof.values()))), 4),
                "per_case": {k: round(v, 4) for k, v in sorted(oof.items())},
            },
            "fold_mean_dice": cv.get("fold_mean_dice"),
        },
        "held_out": test,
        "target": args.target,
        "chance_of_target": {
            "subset_size": test["cases"],
            "share": chance_of_target(values, test["cases"], args.target),
        },
        "machine": machine(),
        "command": shlex.join(["python", *sys.argv]),
    }
    dump(result, args.json)


if __name__ == "__main__":
    main()
