"""The skip/dilation boundary study: every family at an equal wall-clock budget (issue: classic families).

    python benchmarks/architecture_study.py train --dataset isbi --minutes 0.2 [--only unet,fcn8s]
    python benchmarks/architecture_study.py evaluate [--dataset isbi]
    python benchmarks/architecture_study.py all --minutes 0.2 --device cuda   # all of it, then the page
    python benchmarks/architecture_study_report.py          # figures + docs/architecture_study.md

``train`` trains each variant of the study table (every registered family with its default size,
plus the ablations: the U-Net with its skips removed one level at a time and all at once, FCN-32s
against 16s against 8s, DeepLab v1/v2/v3 with and without atrous rates) on

* ``isbi``: ISBI 2012 EM, 2D, training slices 0-19, held-out slices 20-23, from
  ``pipelines/isbi2012_unet2d.yaml`` (its augmentation, loss, optimiser and schedule);
* ``hippocampus``: MSD Task04, 3D, the fixed 166/42 split, from ``pipelines/hippocampus_unet3d.yaml``
  (2D-only families are left out),

with the same wall-clock budget each (``training.max_minutes``; the schedule is stretched to it), no
validation during training (the held-out cases are the test set, so nothing is selected on them: the
last checkpoint is scored). Each run folder gets the predicted label maps of the held-out cases
(``predictions/``, on the source grid), for DeepLab v1/v2 and the U-Net on ISBI the class
probabilities (``probabilities/``, for the CRF on/off comparison), and ``study.json``: parameters,
forward FLOPs of one patch (``torch.utils.flop_counter``), optimiser steps done, the training step time
measured after training (median of timed steps at the training batch size), peak memory (CUDA: peak
allocated; CPU: the process's peak RSS, so run one variant per process there) and prediction time.

``evaluate`` scores every run with ``medseg evaluate`` (Dice, IoU, HD95, NSD at 1 mm, boundary IoU,
error against distance from the true boundary) into ``<run>/evaluation``, applies the dense CRF to the
saved probabilities (``<run>-crf``) and writes one ``medseg compare`` folder per table
(``<study>/<dataset>/compare-<table>``): families, skips, FCN variants, dilation, CRF.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, machine

log = logging.getLogger("architecture_study")
DEFAULT_OUT = Path("/tmp/medseg_bench/architecture_study")


@dataclass(frozen=True)
class Variant:
    """One trained configuration of the study."""

    name: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    tables: tuple[str, ...] = ("families",)
    dims: tuple[int, ...] = (2, 3)
    probabilities: bool = False  # keep the ISBI probabilities (CRF on/off)


@dataclass(frozen=True)
class Dataset:
    name: str
    pipeline: str
    dims: int
    skip_levels: int  # skip levels of the pipeline's U-Net
    workers: int = 1


DATASETS = {
    "isbi": Dataset("isbi", "pipelines/isbi2012_unet2d.yaml", 2, 4),
    "hippocampus": Dataset("hippocampus", "pipelines/hippocampus_unet3d.yaml", 3, 3),
}


def variants(dataset: Dataset) -> list[Variant]:
    """The study table for one dataset: families first, then the ablations."""
    rows = [
        Variant("unet", "unet", tables=("families", "skips"), probabilities=True),
        Variant("dynunet", "dynunet"),
        Variant("uctransnet", "uctransnet"),
        Variant("fcn8s", "fcn", {"variant": "8s"}, tables=("families", "fcn")),
        Variant("fcn16s", "fcn", {"variant": "16s"}, tables=("fcn",)),
        Variant("fcn32s", "fcn", {"variant": "32s"}, tables=("fcn",)),
        Variant("parsenet", "parsenet"),
        Variant("deeplabv1", "deeplabv1", tables=("families", "dilation"), probabilities=True),
        Variant("deeplabv2", "deeplabv2", tables=("families", "dilation"), probabilities=True),
        Variant("deeplabv3", "deeplabv3", tables=("families", "dilation")),
        Variant("deeplabv3plus", "deeplabv3plus"),
        Variant("pspnet", "pspnet"),
        Variant("enet", "enet", dims=(2,)),
        Variant("psanet", "psanet"),
        Variant("segformer", "segformer"),
        Variant("setr", "setr"),
        Variant("deeplabv1-noatrous", "deeplabv1", {"atrous": False}, ("dilation",), probabilities=True),
        Variant("deeplabv2-noatrous", "deeplabv2", {"atrous": False}, ("dilation",), probabilities=True),
        Variant("deeplabv3-noatrous", "deeplabv3", {"atrous": False}, ("dilation",)),
    ]
    n = dataset.skip_levels
    for level in range(n):
        flags = [i != level for i in range(n)]
        rows.append(Variant(f"unet-noskip{level + 1}", "unet", {"skip_connections": flags}, ("skips",)))
    rows.append(Variant("unet-noskips", "unet", {"skip_connections": False}, ("skips",)))
    return [v for v in rows if dataset.dims in v.dims]


# -- data ----------------------------------------------------------------------------------------
def study_manifest(dataset: Dataset, folder: Path) -> Path:
    """The pipeline's manifest with its held-out split renamed ``test``: trained on, never validated on."""
    from medseg.config import load_pipeline

    config = load_pipeline(REPO / dataset.pipeline)
    data = json.loads(Path(config.data.manifest).read_text())
    data["cases"] = [c for c in data["cases"] if c.get("label")]  # ISBI's unlabelled test slices
    for case in data["cases"]:
        if case.get("split") == "val":
            case["split"] = "test"
    path = folder / "manifest.json"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".manifest.{os.getpid()}.json")  # parallel streams: write, then rename
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    return path


def write_references(manifest_path: Path, data_root: Path, folder: Path) -> None:
    """Reference label maps of the held-out cases as NIfTI, on the source grid (after the label map)."""
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest
    from medseg.io import write_volume

    manifest = load_manifest(manifest_path, data_root)
    folder.mkdir(parents=True, exist_ok=True)
    for case in manifest.split("test"):
        loaded = load_case(case, manifest)
        write_volume(loaded.label, folder / f"{case.id}.nii.gz")
        write_volume(loaded.image, folder.parent / "images" / f"{case.id}.nii.gz")


# -- one run -------------------------------------------------------------------------------------
def measure_model(net: Any, patch: list[int], in_channels: int, batch: int, device: Any) -> dict[str, Any]:
    """Parameters, forward FLOPs of one patch, median training-step time and peak memory at ``batch``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = net.to(device)
    x1 = torch.randn(1, in_channels, *patch, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(x1)
    flops = int(counter.get_total_flops())
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-6, momentum=0.9)
    xb = torch.randn(batch, in_channels, *patch, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(10):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(xb)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.float().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "gflops_per_patch": round(flops / 1e9, 3),
        "step_seconds": round(float(np.median(times)), 4),
        "step_peak_memory_mib": round(peak, 1),
    }


def measure(args: argparse.Namespace) -> int:
    """``measure``: each variant's resources, one at a time on an otherwise idle device."""
    import torch

    from medseg.config import load_pipeline
    from medseg.device import resolve_device
    from medseg.models import build_model

    device = resolve_device(args.device)
    for name in args.dataset:
        dataset = DATASETS[name]
        base = load_pipeline(REPO / dataset.pipeline)
        n_out = len(base.labels or {})  # both study pipelines name their labels
        for v in _chosen(dataset, args):
            params = {**base.model.params, **v.params} if v.model == "unet" else dict(v.params)
            net = build_model(v.model, dataset.dims, 1, n_out, **params)
            stats = measure_model(net, base.training.patch_size, 1, base.training.batch_size, device)
            stats.update(
                device=str(device), batch_size=base.training.batch_size, patch=base.training.patch_size
            )
            folder = Path(args.output) / name / v.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "resources.json").write_text(json.dumps(stats, indent=2) + "\n")
            log.info("%s/%s: %s", name, v.name, stats)
            del net
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


def _chosen(dataset: Dataset, args: argparse.Namespace) -> list[Variant]:
    rows = [v for v in variants(dataset) if not args.only or v.name in args.only]
    index, count = (int(x) for x in args.shard.split("/"))
    return rows[index::count]


def train_one(dataset: Dataset, v: Variant, args: argparse.Namespace, manifest: Path) -> dict[str, Any]:
    """Train one variant for the budget, predict the held-out cases, write ``study.json``."""
    import torch

    from medseg.config import load_pipeline
    from medseg.data.manifest import load_manifest
    from medseg.device import resolve_device
    from medseg.inference import Predictor
    from medseg.io import read_volume, write_volume
    from medseg.training import Trainer

    run = Path(args.output) / dataset.name / v.name
    if run.exists():
        shutil.rmtree(run)
    overrides = [
        f"data.manifest={manifest}",
        "data.val_fraction=0",
        f"training.max_minutes={args.minutes}",
        f"training.num_workers={args.workers}",
        f"model.name={v.model}",
        f"model.params={json.dumps(v.params)}",
        *args.set,
    ]
    if v.model == "unet":  # the pipeline's U-Net size; the other families keep their default sizes
        base = load_pipeline(REPO / dataset.pipeline).model.params
        overrides[5] = f"model.params={json.dumps({**base, **v.params})}"
    config = load_pipeline(REPO / dataset.pipeline, overrides)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.monotonic()
    last = Trainer(config, run, data_root=args.data_root, device=args.device).fit()
    train_seconds = time.monotonic() - t0
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    predictor = Predictor.from_run(run, device=args.device, checkpoint="last", tta=False)
    pred_dir, prob_dir = run / "predictions", run / "probabilities"
    pred_dir.mkdir()
    seconds = []
    for case in load_manifest(manifest, args.data_root).split("test"):
        image = read_volume(Path(args.output) / dataset.name / "images" / f"{case.id}.nii.gz")
        t1 = time.monotonic()
        pred = predictor.predict(image, probabilities=v.probabilities and dataset.dims == 2)
        seconds.append(time.monotonic() - t1)
        write_volume(pred.labels, pred_dir / f"{case.id}.nii.gz")
        if pred.probabilities is not None:
            prob_dir.mkdir(exist_ok=True)
            np.save(prob_dir / f"{case.id}.npy", pred.probabilities.array.astype(np.float16))
    record = {
        "variant": v.name,
        "model": v.model,
        "params": v.params,
        "tables": list(v.tables),
        "dataset": dataset.name,
        "budget_minutes": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "steps": int(last.get("step", 0)),
        "epochs": int(last.get("epoch", -1)) + 1,
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda allocated" if device.type == "cuda" else "process RSS",
        "predict_seconds_per_case": round(float(np.mean(seconds)), 3),
        "device": str(device),
        "machine": machine(),
    }
    (run / "study.json").write_text(json.dumps(record, indent=2) + "\n")
    for ckpt in (run / "checkpoints").glob("*.pt"):  # the study keeps predictions, not weights
        if not args.keep_weights:
            ckpt.unlink()
    log.info("%s/%s: %d steps, %.1f s", dataset.name, v.name, record["steps"], train_seconds)
    return record


def train(args: argparse.Namespace) -> int:
    import torch

    torch.backends.cudnn.benchmark = False  # autotuning each new shape would eat short budgets unevenly
    failures = 0
    for name in args.dataset:
        dataset = DATASETS[name]
        folder = Path(args.output) / name
        manifest = study_manifest(dataset, folder)
        if not (folder / "references").is_dir():
            write_references(manifest, Path(args.data_root), folder / "references")
        for v in _chosen(dataset, args):
            try:
                train_one(dataset, v, args, manifest)
            except Exception as exc:  # one broken variant must not cost the others their budget
                failures += 1
                log.exception("%s/%s failed: %s", name, v.name, exc)
                (folder / v.name).mkdir(parents=True, exist_ok=True)
                (folder / v.name / "failed.txt").write_text(f"{type(exc).__name__}: {exc}\n")
    return 1 if failures else 0


# -- scoring -------------------------------------------------------------------------------------
#: compare tables: name -> runs, the first one the baseline of the paired tests
def tables(dataset: Dataset, folder: Path) -> dict[str, list[str]]:
    rows = variants(dataset)
    out = {
        "families": [v.name for v in rows if "families" in v.tables],
        "skips": [v.name for v in rows if "skips" in v.tables],
        "fcn": ["fcn8s", "fcn16s", "fcn32s"],
    }
    for version in ("v1", "v2", "v3"):
        out[f"dilation-{version}"] = [f"deeplab{version}", f"deeplab{version}-noatrous"]
    for v in rows:
        if v.probabilities and dataset.dims == 2:
            out[f"crf-{v.name}"] = [v.name, f"{v.name}-crf"]
    return {k: [r for r in runs if (folder / r / "evaluation").is_dir()] for k, runs in out.items()}


def apply_crf(run: Path, folder: Path) -> Path | None:
    """The run's saved probabilities refined by the dense CRF, as run folder ``<run>-crf``."""
    from medseg.inference.crf import CRFOptions, dense_crf
    from medseg.io import read_volume, write_volume
    from medseg.volume import Volume

    probs = sorted((run / "probabilities").glob("*.npy"))
    if not probs:
        return None
    out = folder / f"{run.name}-crf"
    shutil.rmtree(out, ignore_errors=True)
    (out / "predictions").mkdir(parents=True)
    options = CRFOptions()
    seconds = []
    for path in probs:
        image = read_volume(folder / "images" / f"{path.stem}.nii.gz")
        p = np.load(path).astype(np.float32)  # [X, Y, Z, K] on the source grid
        spacing = tuple(float(s) for s in image.spacing)
        t0 = time.monotonic()
        channels = image.array if image.array.ndim == 4 else image.array[..., np.newaxis]
        channels = np.moveaxis(channels, -1, 0).astype(np.float32)  # [K, *spatial]
        refined = dense_crf(np.moveaxis(p, -1, 0), channels, spacing, options)
        seconds.append(time.monotonic() - t0)
        labels = np.argmax(refined, axis=0).astype(np.uint8)
        write_volume(Volume(labels, image.affine), out / "predictions" / f"{path.stem}.nii.gz")
    record = json.loads((run / "study.json").read_text())
    record.update(
        variant=out.name,
        crf=options.__dict__ if hasattr(options, "__dict__") else str(options),
        crf_seconds_per_case=round(float(np.mean(seconds)), 3),
        tables=["crf"],
    )
    (out / "study.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out


def evaluate(args: argparse.Namespace) -> int:
    from medseg.evaluation.workflow import evaluate as evaluate_folder
    from medseg.reporting.compare import compare_runs

    for name in args.dataset:
        dataset, folder = DATASETS[name], Path(args.output) / name
        labels = json.loads((folder / "manifest.json").read_text())["labels"]
        labels = {int(k): v for k, v in labels.items() if int(k) > 0}
        runs = [
            r
            for r in sorted(folder.iterdir())
            if (r / "predictions").is_dir() and not r.name.endswith("-crf")
        ]
        if dataset.dims == 2 and not args.no_crf:
            runs += [c for c in (apply_crf(r, folder) for r in runs) if c is not None]
        for run in runs:
            log.info("evaluating %s/%s", name, run.name)
            evaluate_folder(
                run / "predictions",
                folder / "references",
                labels=labels,
                output=run / "evaluation",
                image_dir=folder / "images",
            )
        for table, members in tables(dataset, folder).items():
            if len(members) >= 2:
                compare_runs([folder / m for m in members], output=folder / f"compare-{table}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["all", "train", "measure", "evaluate", "list"])
    ap.add_argument("--dataset", default="isbi,hippocampus", help="comma-separated: isbi, hippocampus")
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall-clock budget per variant")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--output", default=str(DEFAULT_OUT))
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=1, help="data-loading workers per run")
    ap.add_argument("--set", action="append", default=[], help="extra config override key=value")
    ap.add_argument("--shard", default="0/1", help="i/n: every n-th variant from the i-th (parallel streams)")
    ap.add_argument("--keep-weights", action="store_true", help="keep the checkpoints of each run")
    ap.add_argument("--no-crf", action="store_true", help="evaluate without the CRF runs")
    ap.add_argument("--json", help="all: also write the headline figures here (benchmarks/run_all.py)")
    args = ap.parse_args()
    args.dataset = [d for d in args.dataset.split(",") if d]
    args.only = [o for o in args.only.split(",") if o]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medseg").setLevel(logging.WARNING)
    if args.command == "list":
        for name in args.dataset:
            print(name, " ".join(v.name for v in variants(DATASETS[name])))
        return 0
    if args.command == "all":  # train, measure, score, then the figures and docs/architecture_study.md
        from benchmarks.architecture_study_report import build_report

        status = train(args) | measure(args) | evaluate(args)
        build_report(Path(args.output), Path(args.json) if args.json else None)
        return status
    return {"train": train, "measure": measure, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
