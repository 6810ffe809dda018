"""Accuracy and speed of each inference backend/precision on held-out cases, against float32 torch.

    python benchmarks/backend_agreement.py --model /tmp/medseg_bench/hippocampus \\
        [--manifest data_manifests/msd_hippocampus.json --split val] \\
        [--variants torch:fp32,auto,openvino:bf16,torch:bf16,onnxruntime:int8,openvino:int8] [--tta/--no-tta]

Every case is read once and predicted by every variant in turn (the order rotates from case to
case, so timings interleave). For each variant: the share of voxels whose label differs from the
float32 torch prediction (pooled over cases), Dice per class against the reference labels and its
change from float32, and the median seconds per case (``Predictor.predict``: preprocessing,
sliding window, mapping back to the scan's grid). The first variant is the reference.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, dump, machine


def _dice(pred: np.ndarray, ref: np.ndarray, cls: int) -> float:
    p, r = pred == cls, ref == cls
    denom = int(p.sum()) + int(r.sum())
    return 1.0 if denom == 0 else 2.0 * float((p & r).sum()) / denom


def main() -> None:
    from medseg.data.cases import read_label
    from medseg.data.manifest import load_manifest
    from medseg.inference import Predictor
    from medseg.io import read_volume

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", default=str(REPO / "data_manifests" / "msd_hippocampus.json"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--variants", default="torch:fp32,auto,torch:bf16,onnxruntime:int8,openvino:int8")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    manifest = load_manifest(Path(args.manifest), Path(args.data_root))
    cases = manifest.split(args.split)
    classes = sorted(c for c in manifest.labels if c > 0)
    predictors = {}
    for v in args.variants.split(","):
        backend, _, precision = v.strip().partition(":")
        p = Predictor.from_run(
            args.model, device="cpu", tta=args.tta, backend=backend, precision=precision or "auto"
        )
        name = f"{p.backend.name}:{p.precision.value}" + (" (auto)" if backend == "auto" else "")
        _ = p.runner  # export / calibrate / compile before timing
        predictors[name] = p
    names = list(predictors)
    stats = {n: {"seconds": [], "differ": 0, "dice": {c: [] for c in classes}} for n in names}
    voxels = 0
    for i, case in enumerate(cases):
        image = read_volume(case.images[0])
        ref = read_label(case.label, None, manifest.label_map).array
        labels = {}
        for n in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.perf_counter()
            labels[n] = predictors[n].predict(image).labels.array
            stats[n]["seconds"].append(time.perf_counter() - t0)
        voxels += labels[names[0]].size
        for n in names:
            stats[n]["differ"] += int((labels[n] != labels[names[0]]).sum())
            for c in classes:
                stats[n]["dice"][c].append(_dice(labels[n], ref, c))
    base = {c: float(np.mean(stats[names[0]]["dice"][c])) for c in classes}
    from medseg.inference.predictor import _find_checkpoint
    from medseg.training.checkpoint import load_checkpoint

    state = load_checkpoint(_find_checkpoint(Path(args.model), "best"))
    trained = {
        "steps": int(state.get("step", 0)),
        "budget_minutes": state["config"]["training"].get("max_minutes"),
    }
    result = {
        "model": args.model,
        "cases": len(cases),
        "trained": trained,
        "tta": args.tta,
        "reference": names[0],
        "variants": {
            n: {
                "seconds_per_case": round(statistics.median(s["seconds"]), 4),
                "labels_differ_share": s["differ"] / voxels,
                "dice": {manifest.labels[c]: round(float(np.mean(s["dice"][c])), 4) for c in classes},
                "dice_change": {
                    manifest.labels[c]: round(float(np.mean(s["dice"][c])) - base[c], 4) for c in classes
                },
            }
            for n, s in stats.items()
        },
        "machine": machine(),
        "command": shlex.join(["python", *sys.argv]),
    }
    dump(result, args.json)


if __name__ == "__main__":
    main()
