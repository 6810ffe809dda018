"""2D or 3D chosen by cross-validation, end to end on a real dataset, with the commands a user runs:

    medseg plan MANIFEST -o OUT/plan/plan.yaml --budget MINUTES --folds K   (LGG: 2D + plan_3d.yaml)
    medseg train OUT/plan/plan.yaml    -o OUT/2d --folds all               (both at once, one
    medseg train OUT/plan/plan_3d.yaml -o OUT/3d --folds all                torch thread each)
    medseg crossval OUT/2d OUT/3d -o OUT/chosen                            (configuration.json)

(the folder of each run is named after its configuration: the primary's and the alternative's)

then the chosen configuration (``medseg predict -m OUT/chosen``'s predictor) and each run's own fold
ensemble predict the manifest's held-out ``split: test`` cases, scored with ``medseg evaluate``.

    python benchmarks/plan_choice.py --manifest data_manifests/lgg_brain_mri.json --minutes 6 \\
        --folds 5 --output /tmp/bench/choice_lgg --json benchmarks/results/plan_choice_lgg.json

``--minutes`` is the budget per fold (so each configuration trains ``K x MINUTES``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, dump, machine


def _medseg(*args: str, log: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = log.open("w") if log else None
    return subprocess.Popen(
        [sys.executable, "-m", "medseg", *args], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def held_out(model: Path, manifest: Path, data_root: str, folder: Path, device: str) -> dict[str, Any]:
    """Predict the test cases with ``model`` (a run or a chosen configuration) and score them."""
    from benchmarks.train_tumour import pooled_dice
    from medseg.data.cases import load_case, read_label
    from medseg.data.manifest import load_manifest
    from medseg.evaluation import evaluate
    from medseg.inference.ensemble import load_predictor
    from medseg.io import write_volume

    m = load_manifest(manifest, data_root)
    predictor = load_predictor(model, device=device)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "pred").mkdir(parents=True)
    (folder / "ref").mkdir()
    for case in m.split("test"):
        image = load_case(case, m, with_label=False).image
        pred = predictor.predict(image).labels
        write_volume(pred, folder / "pred" / f"{case.id}.nii.gz")
        write_volume(read_label(case.label, None, m.label_map), folder / "ref" / f"{case.id}.nii.gz")
    labels = {k: v for k, v in m.labels.items() if k > 0}
    result = evaluate(folder / "pred", folder / "ref", labels=labels, output=folder / "evaluation")
    dice = {name: result.summary["classes"][str(k)]["metrics"]["dice"] for k, name in labels.items()}
    return {
        "model": getattr(predictor, "model_name", str(model)),
        "cases": len(m.split("test")),
        "dice_mean": {n: round(float(d["mean"]), 4) for n, d in dice.items()},
        "dice_median": {n: round(float(d["median"]), 4) for n, d in dice.items()},
        "dice_pooled": pooled_dice(folder, labels),
        "per_case": {
            f"{r.case} {labels[r.class_id]}": round(float(r.dice), 4)
            for r in result.rows
            if r.class_id in labels
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget per fold")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--output", required=True)
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--device", default="cpu", help="cpu or cuda, for plan, train and crossval alike")
    ap.add_argument("--json")
    args = ap.parse_args()
    out = Path(args.output)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    plan = out / "plan" / "plan.yaml"
    budget = ["--budget", str(args.minutes), "--folds", str(args.folds), "--data-root", args.data_root]
    if _medseg("plan", args.manifest, "-o", str(plan), *budget, "--device", args.device).wait():
        sys.exit("medseg plan failed")
    alternatives = sorted(plan.parent.glob("plan_[23]d.yaml"))
    if not alternatives:
        sys.exit(f"the plan of {args.manifest} proposes one configuration only: nothing to choose")
    import yaml

    primary = f"{yaml.safe_load(plan.read_text())['model']['spatial_dims']}d"
    runs = {primary: plan, alternatives[0].stem[len("plan_") :]: alternatives[0]}
    t0 = time.monotonic()
    procs = [
        _medseg(
            "train",
            str(p),
            "-o",
            str(out / k),
            "--folds",
            "all",
            "--device",
            args.device,
            log=out / f"train_{k}.log",
        )
        for k, p in runs.items()
    ]
    codes = [p.wait() for p in procs]  # both finish (or fail) before anything else happens
    if any(codes):
        sys.exit(f"training failed: see {out}/train_*.log")
    train_minutes = (time.monotonic() - t0) / 60
    if _medseg(
        "crossval", *(str(out / k) for k in runs), "-o", str(out / "chosen"), "--device", args.device
    ).wait():
        sys.exit("medseg crossval failed")
    choice = json.loads((out / "chosen" / "configuration.json").read_text())
    manifest = Path(args.manifest)
    result = {
        "benchmark": "plan_choice",
        "manifest": args.manifest,
        "minutes_per_fold": args.minutes,
        "folds": args.folds,
        "wall_minutes_training": round(train_minutes, 1),
        "candidates": [{k: c[k] for k in ("name", "dice", "mean", "n_cases")} for c in choice["candidates"]],
        "chosen": choice["chosen"]["name"],
        "postprocessing": choice["postprocessing"].get("options"),
        "held_out": {
            "chosen": held_out(out / "chosen", manifest, args.data_root, out / "test_chosen", args.device),
            **{k: held_out(out / k, manifest, args.data_root, out / f"test_{k}", args.device) for k in runs},
        },
        "machine": {**machine(), "torch_threads": 1},  # each medseg process: OMP_NUM_THREADS=1
        "command": shlex.join(["python", *sys.argv]),
    }
    dump(result, args.json)


if __name__ == "__main__":
    main()
