"""Tumour benchmarks: train a pipeline for a fixed budget, predict its test cases, score them voxel-wise,
lesion-wise and (for region pipelines, or with --regions) region by region.

    python benchmarks/train_tumour.py --pipeline pipelines/lgg_unet2d.yaml --minutes 30 \
        [--set augmentation.channel_dropout_p=0.3 ...] [--missing post-contrast] [--threads 1] \
        [--json out.json]
    python benchmarks/train_tumour.py --plan data_manifests/lidc_nodules.json [--configuration 2d|3d] ...

``--plan MANIFEST`` trains what ``medseg plan MANIFEST --budget MINUTES`` writes (planned here, with
the torch threads of the run, kept in ``<output>_plan/``), unedited unless ``--set`` reverts a
decision (the per-decision ablation: ``benchmarks/plan_ablation.py``).

Trains on the manifest's ``train`` cases (``val`` for checkpoint selection when there are any), then
predicts every ``test`` case with the kept checkpoint through the same Predictor as ``medseg predict``
(labels on each scan's own grid) and runs ``medseg evaluate``'s evaluation on them: Dice per class,
BraTS 2023 lesion-wise Dice and HD95, detection sensitivity / precision / F1 and false positives per
case. ``--missing NAME`` also predicts the test cases with that channel missing (zeros after
normalisation, as ``medseg predict --missing-channel zeros``) and scores them the same way.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, dump, machine, planned_pipeline


def _summary(result: Any, labels: dict[int, str]) -> dict[str, Any]:
    """The figures the benchmark reports, from an evaluation result's summary."""
    summary = result.summary
    out: dict[str, Any] = {"dice": {}, "lesions": {}}
    for label, name in labels.items():
        out["dice"][name] = summary["classes"][str(label)]["metrics"]["dice"]
    for lesion in (summary.get("lesions") or {}).values():
        out["lesions"][lesion["name"]] = {
            "lesion_dice": lesion["lesion_dice"],
            "lesion_hd95": lesion["lesion_hd95"],
            "n_ref_lesions": lesion["n_ref_lesions"],
            "fp_per_case": lesion["fp_per_case"],
            "detection": lesion["detection"],
            "strata": lesion.get("strata"),
        }
    if summary.get("regions"):
        out["regions"] = summary["regions"]
    return out


def pooled_dice(folder: Path, labels: dict[int, str]) -> dict[str, float]:
    """Dice of every class over all test voxels at once (2 sum|P & R| / (sum|P| + sum|R|)), from the
    label maps in ``folder/pred`` and ``folder/ref``: unlike the per-case mean, a small lesion missed
    weighs by its size."""
    import numpy as np

    from medseg.io import read_volume

    inter = {k: 0 for k in labels}
    total = {k: 0 for k in labels}
    refs = sorted((folder / "ref").glob("*.nii.gz"))
    if not refs:
        raise FileNotFoundError(f"no reference label maps in {folder / 'ref'}")
    for ref_path in refs:
        ref = np.asarray(read_volume(ref_path).array)
        pred = np.asarray(read_volume(folder / "pred" / ref_path.name).array)
        for k in labels:
            inter[k] += int(np.logical_and(pred == k, ref == k).sum())
            total[k] += int((pred == k).sum() + (ref == k).sum())
    return {name: round(2 * inter[k] / total[k], 4) if total[k] else 1.0 for k, name in labels.items()}


def predict_and_score(
    run: Path,
    manifest_path: Path,
    data_root: Path,
    missing: str | None,
    regions: str | None,
    tta: bool | None = None,
    folder: str | None = None,
    postprocessing: Any = None,
) -> dict[str, Any]:
    """Predict the manifest's test cases with the run's model and evaluate them into
    ``run/<folder>`` (default ``test``, or ``test_missing``); ``tta`` overrides the run's
    test-time mirroring, ``postprocessing`` the post-processing chosen for the run (default: the
    choice recorded in ``run/postprocessing.json``, as ``medseg predict``)."""
    import numpy as np

    from medseg.data.cases import load_case, read_label
    from medseg.data.manifest import load_manifest
    from medseg.evaluation import evaluate
    from medseg.inference import Predictor
    from medseg.inference.channels import blank_channels
    from medseg.io import write_volume

    manifest = load_manifest(manifest_path, data_root)
    predictor = Predictor.from_run(run, device="auto", **({} if tta is None else {"tta": tta}))
    zeros = []
    if missing:
        names = [c.casefold() for c in manifest.channels]
        zeros = [names.index(missing.casefold())]
    labels = {k: v for k, v in manifest.labels.items() if k > 0}
    tmp = run / (folder or ("test_missing" if missing else "test"))  # predictions, references, evaluation
    (tmp / "pred").mkdir(parents=True)
    (tmp / "ref").mkdir()
    seconds = []
    for case in manifest.split("test"):
        loaded = load_case(case, manifest, with_label=False)
        t0 = time.monotonic()
        prepared = predictor.prepare(loaded.image)
        blank_channels(prepared.case.image, zeros)
        lab, _ = predictor.infer(prepared)
        pred = predictor.finish(prepared, lab, postprocessing=postprocessing).labels
        seconds.append(time.monotonic() - t0)
        write_volume(pred, tmp / "pred" / f"{case.id}.nii.gz")
        ref = read_label(case.label, None, manifest.label_map)
        write_volume(ref, tmp / "ref" / f"{case.id}.nii.gz")
    result = evaluate(
        tmp / "pred", tmp / "ref", labels=labels, lesions=True, regions=regions, output=tmp / "evaluation"
    )
    return {
        "cases": len(seconds),
        "missing_channel": missing,
        "seconds_per_case": round(float(np.mean(seconds)), 3),
        "dice_pooled": pooled_dice(tmp, labels),
        "per_case": {
            f"{r.case} {labels[r.class_id]}": round(float(r.dice), 4)
            for r in result.rows
            if r.class_id in labels
        },
        **_summary(result, labels),
    }


def keep_largest_scores(run: Path, regions: str | None) -> dict[str, Any]:
    """The test predictions of ``run`` with only the largest component of each class kept (the
    rule for single-lesion data, fixed in advance, not tuned on these cases), scored again."""
    from medseg.evaluation import evaluate
    from medseg.inference.postprocess import PostprocessOptions, postprocess
    from medseg.io import read_volume, write_volume
    from medseg.volume import Volume

    src, out = run / "test", run / "test_keep_largest"
    (out / "pred").mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "pred").glob("*.nii.gz")):
        vol = read_volume(path)
        arr = postprocess(vol.array, vol.spacing, PostprocessOptions(keep_largest=True))
        write_volume(Volume(arr.astype(vol.array.dtype), vol.affine, vol.meta), out / "pred" / path.name)
    classes = json.loads((src / "evaluation" / "summary.json").read_text())["classes"]
    labels = {int(k): c["name"] for k, c in classes.items()}
    result = evaluate(
        out / "pred", src / "ref", labels=labels, lesions=True, regions=regions, output=out / "evaluation"
    )
    (out / "ref").unlink(missing_ok=True)
    (out / "ref").symlink_to((src / "ref").resolve())
    return {"dice_pooled": pooled_dice(out, labels), **_summary(result, labels)}


def rescore(json_path: Path, regions: str | None) -> None:
    """Add the keep-largest scores to a saved result (``--rescore``)."""
    result = json.loads(json_path.read_text())
    run = Path(shlex.split(result["command"])[shlex.split(result["command"]).index("--output") + 1])
    result["test_keep_largest"] = keep_largest_scores(run, regions)
    classes = json.loads((run / "test" / "evaluation" / "summary.json").read_text())["classes"]
    result["test"]["dice_pooled"] = pooled_dice(run / "test", {int(k): c["name"] for k, c in classes.items()})
    json_path.write_text(json.dumps(result, indent=2) + "\n")


def _plan(args: argparse.Namespace) -> tuple[str, float]:
    """``medseg plan --plan --budget MINUTES`` into ``<output>_plan/``: the pipeline to train (the 2D
    or 3D configuration with ``--configuration 2d|3d``, primary or alternative) and the seconds
    planning took."""
    folder = Path(f"{args.output}_plan")
    for old in folder.glob("plan*.yaml"):  # nothing of an earlier plan may be trained
        old.unlink()
    pipeline, seconds = planned_pipeline(args.plan, args.minutes, args.data_root, str(folder))
    if args.configuration != "primary":
        import yaml

        dims = int(args.configuration[0])
        if yaml.safe_load(Path(pipeline).read_text())["model"]["spatial_dims"] != dims:
            pipeline = str(Path(pipeline).with_name(f"plan_{args.configuration}.yaml"))
            if not Path(pipeline).is_file():
                sys.exit(f"the plan of {args.plan} has no {args.configuration.upper()} configuration")
    return pipeline, seconds


def main() -> None:
    import logging

    import torch

    from medseg.config import load_pipeline
    from medseg.training import Trainer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline")
    ap.add_argument("--plan", metavar="MANIFEST", help="train what `medseg plan MANIFEST` writes")
    ap.add_argument(
        "--configuration",
        choices=["primary", "2d", "3d"],
        default="primary",
        help="--plan: the planned 2D or 3D configuration (primary or alternative)",
    )
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    ap.add_argument("--output", help="run folder (replaced)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--missing", help="also score the test cases with this channel missing")
    ap.add_argument("--regions", help="also score these regions (run folder, pipeline YAML, dataset.json)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--rescore", metavar="JSON", help="only add keep-largest scores to this saved result")
    args = ap.parse_args()
    if args.rescore:
        rescore(Path(args.rescore), args.regions)
        return
    if not ((args.pipeline or args.plan) and args.output):
        ap.error("--pipeline (or --plan) and --output are needed (unless --rescore)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    import shutil

    plan_seconds = None
    if args.plan:  # planned now, for this budget and these threads
        args.pipeline, plan_seconds = _plan(args)
    config = load_pipeline(args.pipeline, [f"training.max_minutes={args.minutes}", *args.set])
    run = Path(args.output)
    if run.exists():
        shutil.rmtree(run)
    t0 = time.monotonic()
    last = Trainer(config, run, data_root=args.data_root, device=args.device).fit()
    train_minutes = (time.monotonic() - t0) / 60
    manifest = Path(config.data.manifest)
    regions = args.regions or (str(run) if config.regions else None)
    result = {
        "benchmark": config.name if args.plan else Path(args.pipeline).stem,
        "pipeline": Path(args.pipeline).name,
        "planned_from": args.plan,
        "plan_seconds": plan_seconds,
        "overrides": args.set,
        "budget_minutes": args.minutes,
        "train_minutes": round(train_minutes, 2),
        "epochs_done": int(last.get("epoch", -1)) + 1,
        "steps_done": int(last.get("step", 0)),
        "val_dice_last_epoch": last.get("val_dice_mean"),
        "test": predict_and_score(run, manifest, Path(args.data_root), None, regions),
    }
    chosen = run / "postprocessing.json"  # chosen on the validation cases; "test" applies it
    if chosen.is_file():
        record = json.loads(chosen.read_text())
        result["postprocessing_chosen"] = {
            c["name"]: {
                k: c[k] for k in ("applied", "keep_largest", "min_size_mm3", "dice_before", "dice_after")
            }
            for c in record["classes"].values()
        }
    result["test_keep_largest"] = keep_largest_scores(run, regions)
    if args.missing:
        result["test_missing"] = predict_and_score(run, manifest, Path(args.data_root), args.missing, regions)
    result["machine"] = machine()
    result["command"] = shlex.join(["python", *sys.argv])
    dump(result, args.json)


if __name__ == "__main__":
    main()
