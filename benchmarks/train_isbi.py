"""2D U-Net on ISBI 2012 EM: train on slices 0-19 for a wall-clock budget, score slices 20-23.

    python benchmarks/train_isbi.py --minutes 18 [--pipeline pipelines/isbi2012_unet2d.yaml] [--json out.json]

Reports the pixel error (share of misclassified pixels, membrane vs cell) and the membrane Dice on the
four held-out slices, predicted through the same Predictor as `medseg predict`.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, dump, machine, planned_pipeline


def main() -> None:
    from medseg.config import load_pipeline
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest
    from medseg.inference import Predictor
    from medseg.training import Trainer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(REPO / "pipelines" / "isbi2012_unet2d.yaml"))
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--minutes", type=float, default=18.0)
    ap.add_argument("--output", default="/tmp/medseg_bench/isbi")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--plan", metavar="MANIFEST", help="train what `medseg plan MANIFEST --budget MINUTES` writes instead"
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medseg").setLevel(logging.INFO)
    plan_seconds = None
    if args.plan:  # the planner's pipeline, planned now for this budget (kept beside the run)
        args.pipeline, plan_seconds = planned_pipeline(
            args.plan, args.minutes, args.data_root, f"{args.output}_plan"
        )
    config = load_pipeline(args.pipeline, [f"training.max_minutes={args.minutes}", *args.set])
    run = Path(args.output)
    if run.exists():
        shutil.rmtree(run)
    t0 = time.monotonic()
    last = Trainer(config, run, data_root=args.data_root, device=args.device).fit()
    train_minutes = (time.monotonic() - t0) / 60
    manifest = load_manifest(config.data.manifest, args.data_root)
    predictor = Predictor.from_run(run, device=args.device, tta=not args.no_tta)
    errors, dices, seconds = [], [], []
    for case in manifest.split("val"):
        loaded = load_case(case, manifest)
        t1 = time.monotonic()
        pred = predictor.predict(loaded.image).labels.array
        seconds.append(time.monotonic() - t1)
        ref = loaded.label.array
        errors.append(float((pred != ref).mean()))
        p, r = pred == 1, ref == 1
        dices.append(2.0 * float((p & r).sum()) / float(p.sum() + r.sum()))
    dump(
        {
            "benchmark": "isbi2012_em_2d",
            "pipeline": Path(args.pipeline).name,
            "overrides": args.set,
            "planned_from": args.plan,
            "plan_seconds": plan_seconds,
            "budget_minutes": args.minutes,
            "train_minutes": round(train_minutes, 2),
            "epochs_done": int(last.get("epoch", -1)) + 1,
            "steps_done": int(last.get("step", 0)),
            "held_out_slices": [c.id for c in manifest.split("val")],
            "pixel_error": round(float(np.mean(errors)), 4),
            "membrane_dice": round(float(np.mean(dices)), 4),
            "seconds_per_slice": round(float(np.mean(seconds)), 3),
            "tta": not args.no_tta,
            "machine": machine(),
            "command": shlex.join(["python", *sys.argv]),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
