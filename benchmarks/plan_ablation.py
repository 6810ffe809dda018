"""What each planned decision contributes: train the plan as written, then with one decision
reverted at a time, and score every run on the held-out (``split: test``) patients.

    python benchmarks/plan_ablation.py --manifest data_manifests/lidc_nodules.json --minutes 6 \\
        --output /tmp/bench/ablation_lidc --json benchmarks/results/plan_ablation_lidc.json

The plan is made once for this budget (``medseg plan --budget MINUTES``, probed with one torch
thread: a short budget gives a smaller plan than ``--budget 30``) into ``OUTPUT/plan``; every
variant trains that YAML through ``benchmarks/train_tumour.py`` with ``--set`` overrides (one torch
thread each, ``--parallel`` runs at a time: 2 on a 2-core machine, or 1 each for two datasets run
at the same time, as measured), and ``--collect`` gathers the per-variant results into one JSON
with the difference to the planned run. A revert that would not change the YAML (the plan already
holds the generic value) is left out and listed. What "reverted" means, per decision (:data:`REVERTS`):

- target spacing: no resampling, each case on its own grid (where the plan keeps every grid
  because the label round trip costs too much: the median spacing, nnU-Net's rule);
- resolution (a plan coarsened for the budget, ``medseg.planning.resolution``): the plan made
  again at the full resolution (patch, network and batch planned there), in place of the target
  spacing revert;
- normalisation: the generic per-case z-score (where the plan z-scores CT crops: nnU-Net's CT
  scheme);
- patch and network: the hand-tuned hippocampus recipe's (patch 40 x 56 x 40, U-Net [16 ... 128]
  pooling every axis), as if a recipe of another dataset were reused (the planned batch is kept);
- batch size: 2 (the fixed 3D default);
- mirror axes: every axis (nnU-Net's and MONAI's default); test-time mirroring follows the trained
  axes, so this row changes inference too;
- foreground oversampling: none (uniform patches);
- channel substitution: off (no copied channels in training);
- dimensionality: the plan's other configuration (3D for a 2D primary, or 2D);
- test-time mirroring: off (no retraining: the planned model predicts again);
- post-processing chosen on the validation cases: off (no retraining: the planned model predicts
  again without it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, dump, machine

HIPPOCAMPUS_RECIPE = {"patch_size": [40, 56, 40], "features": [16, 32, 64, 128]}


def _revert_spacing(cfg: dict, fp: dict) -> list[str] | str:
    target = cfg["preprocessing"].get("target_spacing")
    cases = fp.get("cases") or []
    if target is None:  # the label round trip withdrew resampling: the revert resamples (nnU-Net)
        if not cases or all(c["spacing"] == cases[0]["spacing"] for c in cases):
            return "every case has the same spacing: nothing to resample"
        if cfg["model"]["spatial_dims"] != 3:
            return "3D configurations only"
        median = [round(float(v), 5) for v in fp["summary"]["median_spacing"]]
        return [f"preprocessing.target_spacing={json.dumps(median)}"]
    if cases and all(c["spacing"][: len(target)] == list(target) for c in cases):
        return "every case is on the target spacing already: not resampling changes nothing"
    return ["preprocessing.target_spacing=null"]


def _revert_normalization(cfg: dict, fp: dict) -> list[str] | str:
    planned = cfg["preprocessing"].get("normalization")
    ct = any(c.get("looks_like") == "ct" for c in fp["summary"]["channels"])
    if planned == "zscore" and ct:  # CT crops z-scored per case: back to nnU-Net's CT scheme
        return ['preprocessing.normalization="ct"']
    if planned == "zscore":
        return "the plan already holds the generic value (z-score)"
    return ['preprocessing.normalization="zscore"']


def _revert_network(cfg: dict, fp: dict) -> list[str] | str:
    if cfg["model"]["spatial_dims"] != 3:
        return "3D configurations only (the recipe is 3D)"
    return [
        f"training.patch_size={HIPPOCAMPUS_RECIPE['patch_size']}",
        f"model.params={{features: {HIPPOCAMPUS_RECIPE['features']}}}",
    ]


def _revert_value(key: str, generic: Any, what: str) -> Any:
    section, field = key.split(".")

    def revert(cfg: dict, fp: dict) -> list[str] | str:
        value = generic(cfg) if callable(generic) else generic
        planned = cfg[section].get(field)
        if planned == value or (planned is None and value in (0, 0.0)):
            return f"the plan already holds the generic value ({what})"
        return [f"{key}={json.dumps(value)}"]

    return revert


#: decision -> (what the revert sets, a function (planned config, fingerprint) -> the --set
#: overrides, or why there is nothing to revert)
REVERTS: dict[str, tuple[str, Any]] = {
    "target_spacing": ("no resampling; the median spacing where the plan keeps every grid", _revert_spacing),
    "normalization": ("per-case z-score (CT crops: nnU-Net's CT scheme)", _revert_normalization),
    "patch_and_network": ("the hippocampus recipe's patch and U-Net", _revert_network),
    "batch_size": ("batch 2", _revert_value("training.batch_size", 2, "batch 2")),
    "mirror_axes": (
        "every axis",
        _revert_value(
            "augmentation.flip_axes", lambda c: list(range(c["model"]["spatial_dims"])), "every axis"
        ),
    ),
    "foreground_oversample": (
        "uniform patches",
        _revert_value("training.foreground_oversample", 0.0, "uniform patches"),
    ),
    "channel_substitution": (
        "no copied channels in training",
        _revert_value("augmentation.channel_substitution_p", 0.0, "no channel substitution"),
    ),
}


def make_plan(manifest: str, minutes: float, data_root: str, folder: Path) -> tuple[Path, float]:
    import time

    import torch

    from medseg.planning.api import plan_dataset

    torch.set_num_threads(1)  # the threads each run trains with
    path = folder / "plan.yaml"
    t0 = time.monotonic()
    plan_dataset(manifest, path, budget_minutes=minutes, device="cpu", data_root=data_root)
    seconds = round(time.monotonic() - t0, 2)
    full_resolution_plan(manifest, minutes, data_root, path)
    return path, seconds


def full_resolution_plan(manifest: str, minutes: float, data_root: str, plan: Path) -> None:
    """``<plan folder>/full_resolution/plan.yaml``: the plan made again with the budget's
    coarsening off, kept only when the plan was coarsened (the ``resolution`` revert)."""
    import shutil

    import yaml

    from medseg.planning import resolution
    from medseg.planning.api import plan_dataset

    folder = plan.parent / "full_resolution"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    saved, resolution.MIN_PASSES = resolution.MIN_PASSES, 0.0
    try:
        plan_dataset(manifest, folder / "plan.yaml", budget_minutes=minutes, data_root=data_root)
    finally:
        resolution.MIN_PASSES = saved
    planned, full = (yaml.safe_load(p.read_text())["preprocessing"] for p in (plan, folder / "plan.yaml"))
    if planned["target_spacing"] == full["target_spacing"]:
        shutil.rmtree(folder)


def variants(plan: Path) -> tuple[dict[str, tuple[Path, list[str]]], dict[str, str]]:
    """The runs to make, ``name -> (pipeline, --set overrides)``: ``planned``, one per revert that
    changes the YAML, and ``dimensionality`` (the planned alternative, 2D or 3D) when the plan has one;
    and the reverts left out, with why."""
    import yaml

    cfg = yaml.safe_load(plan.read_text())
    fp = json.loads((plan.parent / "fingerprint.json").read_text())
    runs: dict[str, tuple[Path, list[str]]] = {"planned": (plan, [])}
    skipped = {}
    for name, (_, make) in REVERTS.items():
        sets = make(cfg, fp)
        if isinstance(sets, str):
            skipped[name] = sets
        else:
            runs[name] = (plan, sets)
    full = plan.parent / "full_resolution" / "plan.yaml"
    if full.is_file():
        runs["resolution"] = (full, [])
        runs.pop("target_spacing", None)
        skipped["target_spacing"] = "the plan was coarsened for the budget: see resolution"
    else:
        skipped["resolution"] = "the plan was not coarsened for the budget"
    alternative = next(iter(sorted(plan.parent.glob(f"{plan.stem}_[23]d.yaml"))), None)
    if alternative is not None:
        runs["dimensionality"] = (alternative, [])
    else:
        skipped["dimensionality"] = "the plan proposes one configuration only"
    return runs, skipped


def run_variant(name: str, variant: tuple[Path, list[str]], args: argparse.Namespace) -> Path:
    pipeline, sets = variant
    out = Path(args.output) / name
    result = Path(args.output) / "results" / f"{name}.json"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "train_tumour.py"),
        "--pipeline",
        str(pipeline),
        "--minutes",
        str(args.minutes),
        "--threads",
        "1",
        "--data-root",
        args.data_root,
        "--output",
        str(out),
        "--json",
        str(result),
    ]
    for s in sets:
        cmd += ["--set", s]
    log = Path(args.output) / f"{name}.log"
    with log.open("w") as fh:
        code = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    if code.returncode:  # recorded, and the other variants go on
        result.parent.mkdir(parents=True, exist_ok=True)
        result.with_suffix(".failed").write_text(f"exit {code.returncode}: see {log}\n")
    return result


def _score(result: dict) -> dict[str, Any]:
    test = result["test"]
    name = next(iter(test["dice"]))
    return {
        "dice_mean": round(test["dice"][name]["mean"], 4),
        "dice_median": round(test["dice"][name]["median"], 4),
        "dice_pooled": test.get("dice_pooled", {}).get(name),
        "dice_keep_largest": round(result["test_keep_largest"]["dice"][name]["mean"], 4),
        "steps": result["steps_done"],
        "cases": test["cases"],
    }


def tta_off(args: argparse.Namespace) -> dict[str, Any] | None:
    """The planned model predicting the test cases again without test-time mirroring (into
    ``planned/test_no_tta``); None when the plan mirrors nothing at test time."""
    from benchmarks.train_tumour import predict_and_score
    from medseg.config import load_pipeline

    run = Path(args.output) / "planned"
    config = load_pipeline(run / "config.yaml")
    if not config.inference.tta or not config.augmentation.flip_axes:
        return None
    shutil.rmtree(run / "test_no_tta", ignore_errors=True)
    manifest = Path(config.data.manifest)
    return predict_and_score(run, manifest, Path(args.data_root), None, None, tta=False, folder="test_no_tta")


def postprocessing_off(args: argparse.Namespace) -> dict[str, Any] | None:
    """The planned model predicting the test cases again without the post-processing chosen on its
    validation cases (into ``planned/test_no_postprocessing``); None when nothing was chosen."""
    from benchmarks.train_tumour import predict_and_score
    from medseg.config import load_pipeline
    from medseg.inference.choice_record import recorded_postprocessing
    from medseg.inference.postprocess import PostprocessOptions

    run = Path(args.output) / "planned"
    chosen = recorded_postprocessing(run)
    if chosen is None or not chosen.active:
        return None
    config = load_pipeline(run / "config.yaml")
    shutil.rmtree(run / "test_no_postprocessing", ignore_errors=True)
    return predict_and_score(
        run,
        Path(config.data.manifest),
        Path(args.data_root),
        None,
        None,
        folder="test_no_postprocessing",
        postprocessing=PostprocessOptions(),
    )


def _planned_values(cfg: dict, sets: list[str]) -> dict[str, Any]:
    """What the plan holds at the keys a revert sets."""
    out = {}
    for s in sets:
        node: Any = cfg
        for part in s.split("=", 1)[0].split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[s.split("=", 1)[0]] = node
    return out


def _plan_summary(cfg: dict) -> dict[str, Any]:
    t = cfg["training"]
    return {
        "spatial_dims": cfg["model"]["spatial_dims"],
        "features": cfg["model"]["params"].get("features"),
        "patch_size": t["patch_size"],
        "batch_size": t.get("batch_size"),
        "target_spacing": cfg["preprocessing"].get("target_spacing"),
        "normalization": cfg["preprocessing"].get("normalization"),
        "flip_axes": cfg["augmentation"].get("flip_axes"),
        "foreground_oversample": t.get("foreground_oversample"),
    }


def _command_file(args: argparse.Namespace) -> Path:
    return Path(args.output) / "command.txt"


def collect(args: argparse.Namespace, plan: Path, plan_seconds: float | None) -> dict[str, Any]:
    import yaml

    runs, skipped = variants(plan)
    folder = Path(args.output) / "results"
    cfg = yaml.safe_load(plan.read_text())
    rows = {}
    for name, (pipeline, sets) in runs.items():
        path = folder / f"{name}.json"
        if path.is_file():
            rows[name] = {
                "pipeline": pipeline.name,
                "sets": sets,
                "planned_values": _planned_values(cfg, sets),
                **_score(json.loads(path.read_text())),
            }
    base = rows.get("planned")
    if base:
        for row in rows.values():
            for key in ("dice_mean", "dice_pooled", "dice_keep_largest"):
                if row.get(key) is not None and base.get(key) is not None:
                    row[f"{key}_change"] = round(row[key] - base[key], 4)
    tta = folder / "tta_off.json"
    no_pp = folder / "postprocessing_off.json"
    return {
        "benchmark": "plan_ablation",
        "manifest": args.manifest,
        "budget_minutes": args.minutes,
        "plan_seconds": plan_seconds,
        "plan": _plan_summary(cfg),
        "variants": rows,
        "failed": {p.stem: p.read_text().strip() for p in sorted(folder.glob("*.failed"))},
        "tta_off": json.loads(tta.read_text()) if tta.is_file() else None,
        "postprocessing_off": json.loads(no_pp.read_text()) if no_pp.is_file() else None,
        "not_run": skipped,
        "reverts": {
            **{k: v[0] for k, v in REVERTS.items()},
            "dimensionality": "the planned alternative",
            "resolution": "the full resolution, planned again",
        },
        "machine": machine(),
        # the command that trained the variants (not a later --collect)
        "command": _command_file(args).read_text().strip()
        if _command_file(args).is_file()
        else shlex.join(["python", *sys.argv]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget of every variant")
    ap.add_argument("--output", required=True, help="working folder (plan, runs, per-variant results)")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    ap.add_argument("--only", help="comma-separated variants to run (default: all not yet done)")
    ap.add_argument("--collect", action="store_true", help="only gather the results made so far")
    ap.add_argument("--json", help="write the gathered result here")
    args = ap.parse_args()
    out = Path(args.output)
    plan = out / "plan" / "plan.yaml"
    seconds_file = out / "plan" / "seconds.txt"
    made_for = out / "plan" / "made_for.json"  # a folder planned for another dataset or budget is refused
    wanted = {"manifest": str(Path(args.manifest).resolve()), "minutes": args.minutes}
    if not plan.is_file():
        plan, seconds = make_plan(args.manifest, args.minutes, args.data_root, out / "plan")
        seconds_file.write_text(str(seconds))
        made_for.write_text(json.dumps(wanted))
    elif made_for.is_file() and json.loads(made_for.read_text()) != wanted:
        sys.exit(f"{out} holds a plan for {made_for.read_text()}: use another --output")
    plan_seconds = float(seconds_file.read_text()) if seconds_file.is_file() else None
    if not args.collect:
        _command_file(args).write_text(shlex.join(["python", *sys.argv]) + "\n")
        runs, _ = variants(plan)
        wanted = args.only.split(",") if args.only else list(runs)
        todo = [n for n in wanted if n in runs and not (out / "results" / f"{n}.json").is_file()]
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            list(pool.map(lambda n: run_variant(n, runs[n], args), todo))
        for name, again in (("tta_off", tta_off), ("postprocessing_off", postprocessing_off)):
            if (out / "planned" / "test").is_dir() and not (out / "results" / f"{name}.json").is_file():
                scores = again(args)
                if scores is not None:
                    dump(scores, str(out / "results" / f"{name}.json"))
    dump(collect(args, plan, plan_seconds), args.json)


if __name__ == "__main__":
    main()
