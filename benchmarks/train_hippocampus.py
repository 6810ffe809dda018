"""3D U-Net on MSD Task04 Hippocampus: fixed 80/20 split, fixed wall-clock budget, Dice per class.

    python benchmarks/train_hippocampus.py --minutes 28 [--pipeline pipelines/hippocampus_unet3d.yaml]
        [--set training.deep_supervision=true ...] [--no-tta] [--json out.json]

Trains on the 166 training cases of data_manifests/msd_hippocampus.json for the budget, then predicts
the 42 held-out cases with the best checkpoint (through the same Predictor as `medseg predict`, on each
scan's own grid) and reports Dice per class against the reference labels (with mirror TTA and, from the
same checkpoint, without), the training and prediction times, and the machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, dump, machine, planned_pipeline


def dice(pred: np.ndarray, ref: np.ndarray, cls: int) -> float:
    p, r = pred == cls, ref == cls
    denom = p.sum() + r.sum()
    return 1.0 if denom == 0 else 2.0 * float((p & r).sum()) / float(denom)


def evaluate_run(run: Path, manifest_path: Path, data_root: Path, tta: bool, split: str = "val") -> dict:
    """Predict the held-out cases of a run and compute Dice per class on the source grids."""
    from medseg.data.cases import read_label
    from medseg.data.manifest import load_manifest
    from medseg.inference import Predictor
    from medseg.io import read_volume

    manifest = load_manifest(manifest_path, data_root)
    predictor = Predictor.from_run(run, device="auto", tta=tta)
    classes = sorted(c for c in manifest.labels if c > 0)
    per_class: dict[int, list[float]] = {c: [] for c in classes}
    seconds = []
    for case in manifest.split(split):
        image = read_volume(case.images[0])
        t0 = time.monotonic()
        labels = predictor.predict(image).labels.array
        seconds.append(time.monotonic() - t0)
        ref = read_label(case.label, None, manifest.label_map).array
        for c in classes:
            per_class[c].append(dice(labels, ref, c))
    return {
        "cases": len(seconds),
        "dice": {manifest.labels[c]: round(float(np.mean(v)), 4) for c, v in per_class.items()},
        "dice_std": {manifest.labels[c]: round(float(np.std(v)), 4) for c, v in per_class.items()},
        "seconds_per_case": round(float(np.mean(seconds)), 3),
        "tta": tta,
    }


def main() -> None:
    from medseg.config import load_pipeline
    from medseg.training import Trainer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(REPO / "pipelines" / "hippocampus_unet3d.yaml"))
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--minutes", type=float, default=28.0, help="training wall-clock budget")
    ap.add_argument("--output", default="/tmp/medseg_bench/hippocampus")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--plan", metavar="MANIFEST", help="train what `medseg plan MANIFEST --budget MINUTES` writes instead"
    )
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medseg").setLevel(logging.INFO)
    import shutil

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
    result = {
        "benchmark": "msd_hippocampus_3d",
        "pipeline": Path(args.pipeline).name,
        "overrides": args.set,
        "planned_from": args.plan,
        "plan_seconds": plan_seconds,
        "budget_minutes": args.minutes,
        "train_minutes": round(train_minutes, 2),
        "epochs_done": int(last.get("epoch", -1)) + 1,
        "steps_done": int(last.get("step", 0)),
        "val_dice_last_epoch": last.get("val_dice_mean"),
        **evaluate_run(run, Path(config.data.manifest), Path(args.data_root), tta=not args.no_tta),
        # the same checkpoint without mirroring: the test-time-augmentation lever
        "dice_no_tta": None
        if args.no_tta
        else evaluate_run(run, Path(config.data.manifest), Path(args.data_root), tta=False)["dice"],
        "machine": machine(),
        "command": shlex.join(["python", *sys.argv]),
    }
    dump(result, args.json)


if __name__ == "__main__":
    main()
