"""Rerun every benchmark and rewrite docs/benchmarks.md from the results.

    python benchmarks/run_all.py                      # everything (about 4 hours on a 2-core CPU)
    python benchmarks/run_all.py --only demo isbi     # some entries
    python benchmarks/run_all.py --list               # the entries, with their commands
    python benchmarks/run_all.py --render-only        # rewrite docs/benchmarks.md from saved results

Each entry runs one script of this folder in its own process, one after the other (never two at
once: the figures are wall-clock figures), and saves its JSON to benchmarks/results/<entry>.json.
docs/benchmarks.md is then rendered from all saved results (benchmarks/render.py), so a partial
rerun keeps the other entries' figures. A result measured on a GPU records the GPU and is marked so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import REPO
from benchmarks.render import RESULTS, write_docs


@dataclass(frozen=True)
class Entry:
    key: str
    script: str
    args: tuple[str, ...] = ()

    def command(self, device: str | None, data_root: str | None) -> list[str]:
        cmd = [sys.executable, f"benchmarks/{self.script}", *self.args]
        if device and self.script in DEVICE_SCRIPTS:
            cmd += ["--device", device]
        if data_root and self.script in DATA_SCRIPTS:
            cmd += ["--data-root", data_root]
        return [*cmd, "--json", str(RESULTS / f"{self.key}.json")]


DEVICE_SCRIPTS = {
    "architecture_study.py",
    "train_hippocampus.py",
    "train_isbi.py",
    "demo.py",
    "sliding_window_speed.py",
    "predict_memory.py",
    "predict_folder_speed.py",
    "train_tumour.py",
    "fold_ensemble.py",
}
DATA_SCRIPTS = {
    "plan_speed.py",
    "architecture_study.py",
    "train_tumour.py",
    "train_hippocampus.py",
    "train_isbi.py",
    "backend_agreement.py",
    "predict_folder_speed.py",
    "plan_ablation.py",
    "plan_choice.py",
    "fold_ensemble.py",
}


def _tumour(key: str, pipeline: str, minutes: int, *extra: str) -> Entry:
    """A tumour run; one torch thread: the LGG and BraTS pairs were measured two at a time."""
    args = ["--pipeline", f"pipelines/{pipeline}", "--minutes", str(minutes), "--threads", "1"]
    return Entry(key, "train_tumour.py", (*args, "--output", f"/tmp/medseg_bench/{key}", *extra))


def _planned(key: str, manifest: str, *sets: str, alone: bool = False) -> Entry:
    """What `medseg plan MANIFEST --budget 30` writes, trained and scored on the held-out patients
    (``sets``: ``key=value`` overrides that revert a planned decision at the full budget). One torch
    thread, for two runs at a time; ``alone``: torch's threads, the run alone on the machine."""
    threads = () if alone else ("--threads", "1")
    args = ("--plan", manifest, "--minutes", "30", *threads, "--output", f"/tmp/medseg_bench/{key}")
    return Entry(key, "train_tumour.py", args + tuple(a for v in sets for a in ("--set", v)))


def _ablation(key: str, manifest: str) -> Entry:
    """Every planned decision reverted alone (6-minute runs; run the two datasets at the same time)."""
    return Entry(
        key,
        "plan_ablation.py",
        ("--manifest", manifest, "--minutes", "6", "--parallel", "1", "--output", f"/tmp/medseg_bench/{key}"),
    )


def _hippo(key: str, minutes: int, *sets: str) -> Entry:
    args = ["--minutes", str(minutes), "--output", f"/tmp/medseg_bench/{key}"]
    for s in sets:
        args += ["--set", s]
    return Entry(key, "train_hippocampus.py", tuple(args))


#: Budget of each lever-study run (short, so that the whole study fits in about an hour).
LEVER_MINUTES = 5
#: Flips along all three axes (nnU-Net's default) instead of the shipped left-right only.
ALL_FLIPS = "augmentation.flip_axes=null"

HIPPO_RUN = "/tmp/medseg_bench/hippocampus"
BRATS_REGIONS = "brats_regions_unet3d.yaml"
HIPPO_FOLDER = ("--model", HIPPO_RUN, "--manifest", "data_manifests/msd_hippocampus.json", "--split", "val")

#: Every benchmark, in the order they run.
ENTRIES: list[Entry] = [
    Entry("demo", "demo.py"),
    Entry("demo_all_flips", "demo.py", ("--set", ALL_FLIPS)),
    Entry("demo_fp32", "demo.py", ("--set", "training.cpu_bf16=false")),
    _hippo("hippocampus", 28),
    _hippo("hippocampus_all_flips", 28, ALL_FLIPS),
    _hippo("hippocampus_b2_fp32", 28, ALL_FLIPS, "training.cpu_bf16=false"),
    _hippo(
        "hippocampus_b4_fp32",
        28,
        ALL_FLIPS,
        "training.batch_size=4",
        "training.iterations_per_epoch=50",
        "training.cpu_bf16=false",
    ),
    _hippo("hippocampus_20min", 20, ALL_FLIPS),
    _hippo("lever_base", LEVER_MINUTES),
    _hippo("lever_all_flips", LEVER_MINUTES, ALL_FLIPS),
    _hippo("lever_no_augmentation", LEVER_MINUTES, "augmentation.enabled=false"),
    _hippo("lever_no_oversampling", LEVER_MINUTES, "training.foreground_oversample=0"),
    _hippo(
        "lever_dynunet", LEVER_MINUTES, "model.name=dynunet", "model.params={features: [16, 32, 64, 128]}"
    ),
    _hippo(
        "lever_dynunet_ds",
        LEVER_MINUTES,
        "model.name=dynunet",
        "model.params={features: [16, 32, 64, 128], deep_supervision: true}",
        "training.deep_supervision=true",
    ),
    _hippo("lever_cosine", LEVER_MINUTES, "training.schedule=cosine", "training.warmup_epochs=1"),
    Entry("isbi", "train_isbi.py", ("--minutes", "18", "--output", "/tmp/medseg_bench/isbi")),
    Entry("sliding_window", "sliding_window_speed.py", ("--repeats", "5")),
    # the next three predict with the model the "hippocampus" entry trained
    Entry(
        "hippocampus_backends",
        "backend_agreement.py",
        (
            "--model",
            HIPPO_RUN,
            "--variants",
            "torch:fp32,auto,torch:bf16,openvino:fp32,onnxruntime:fp32,onnxruntime:int8,openvino:int8",
        ),
    ),
    Entry(
        "hippocampus_folder", "predict_folder_speed.py", (*HIPPO_FOLDER, "--output", "/tmp/medseg_bench/fold")
    ),
    Entry(
        "hippocampus_folder_int8",
        "predict_folder_speed.py",
        (*HIPPO_FOLDER, "--precision", "int8", "--output", "/tmp/medseg_bench/fold_int8"),
    ),
    Entry(
        "hippocampus_overlap",
        "predict_folder_speed.py",
        (*HIPPO_FOLDER, "--compare-overlap", "--repeats", "3", "--output", "/tmp/medseg_bench/fold_overlap"),
    ),
    Entry("predict_memory", "predict_memory.py"),
    _tumour("lgg_dropout_off", "lgg_unet2d.yaml", 30, "--missing", "post-contrast"),
    _tumour(
        "lgg_dropout_on",
        "lgg_unet2d.yaml",
        30,
        "--missing",
        "post-contrast",
        "--set",
        "augmentation.channel_dropout_p=0.3",
    ),
    _tumour("lgg_lesion_sampling", "lgg_unet2d.yaml", 30, "--set", "training.foreground_sampling=lesion"),
    _tumour("lgg_blob", "lgg_unet2d.yaml", 30, "--set", "loss.lesion_weight=1.0"),
    _tumour("brats_regions", BRATS_REGIONS, 12),
    _tumour("brats_labels", "brats_labels_unet3d.yaml", 12, "--regions", f"pipelines/{BRATS_REGIONS}"),
    Entry("plan_speed", "plan_speed.py"),
    # a pair at a time, one torch thread each (OMP_NUM_THREADS=1): planned, and hand-tuned beside it
    Entry("plan_hippocampus", "train_hippocampus.py", ("--plan", "data_manifests/msd_hippocampus.json")),
    Entry("plan_pair_hippocampus", "train_hippocampus.py", ("--output", "/tmp/medseg_bench/hippo_pair")),
    Entry("plan_isbi", "train_isbi.py", ("--plan", "data_manifests/isbi2012_em.json")),
    Entry("plan_pair_isbi", "train_isbi.py", ("--output", "/tmp/medseg_bench/isbi_pair")),
    # the new datasets, planned with --budget 30 and scored on their held-out patients (as a pair)
    _planned("plan_lgg", "data_manifests/lgg_brain_mri.json"),
    _planned("plan_lidc", "data_manifests/lidc_nodules.json"),
    # the two decisions made this way in session 9, reverted alone at the full budget (as a pair)
    _planned(
        "plan_lgg_fullres",
        "data_manifests/lgg_brain_mri.json",
        "preprocessing.target_spacing=null",
        "training.patch_size=[256,256]",
        "training.batch_size=4",
        "model.params.features=[16,32,64,128,256,512,512]",
    ),
    _planned("plan_lidc_ct", "data_manifests/lidc_nodules.json", "preprocessing.normalization=ct"),
    _planned("plan_lgg_coarse_b4", "data_manifests/lgg_brain_mri.json", "training.batch_size=4"),
    _planned("plan_lidc_rerun", "data_manifests/lidc_nodules.json"),
    # the planned runs again, each alone on the machine (not beside another run)
    _planned("plan_lidc_alone", "data_manifests/lidc_nodules.json", alone=True),
    _planned("plan_lidc_alone_rerun", "data_manifests/lidc_nodules.json", alone=True),
    _planned("plan_lgg_alone", "data_manifests/lgg_brain_mri.json", alone=True),
    _planned("plan_lgg_alone_rerun", "data_manifests/lgg_brain_mri.json", alone=True),
    Entry("lgg_label_coverage", "label_coverage.py", ("--run", "/tmp/medseg_bench/plan_lgg_alone")),
    _ablation("plan_ablation_lgg", "data_manifests/lgg_brain_mri.json"),
    _ablation("plan_ablation_lidc", "data_manifests/lidc_nodules.json"),
    Entry(
        "plan_choice_lgg",
        "plan_choice.py",
        (
            "--manifest",
            "data_manifests/lgg_brain_mri.json",
            "--minutes",
            "6",
            "--folds",
            "5",
            "--output",
            "/tmp/medseg_bench/choice_lgg",
        ),
    ),
    # the 30-minute budget spent on 5 folds of 6 minutes, alone on the machine
    Entry(
        "fold_ensemble_lgg",
        "fold_ensemble.py",
        (
            *("--manifest", "data_manifests/lgg_brain_mri.json", "--minutes", "30", "--folds", "5"),
            *("--output", "/tmp/medseg_bench/ensemble_lgg", "--target", "0.82"),
        ),
    ),
    # GPU-sized: 46 runs of 12 s each plus scoring (about 25 min on one GPU, hours on a CPU)
    Entry("architecture_study", "architecture_study.py", ("all", "--minutes", "0.2", "--workers", "3")),
    Entry("fuzz", "fuzz_readers.py", ("--findings", "/tmp/medseg_bench/fuzz-findings")),
    Entry("soak", "soak.py"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="KEY", help="run only these entries")
    ap.add_argument("--skip", nargs="+", default=[], metavar="KEY", help="leave these entries out")
    ap.add_argument("--device", help="auto, cpu or cuda for the scripts that take it")
    ap.add_argument("--data-root", help="folder of the shared datasets (default ../shared/datasets)")
    ap.add_argument("--list", action="store_true", help="print the entries and their commands")
    ap.add_argument("--render-only", action="store_true", help="only rewrite docs/benchmarks.md")
    args = ap.parse_args()
    keys = {e.key for e in ENTRIES}
    unknown = sorted((set(args.only or []) | set(args.skip)) - keys)
    if unknown:
        ap.error(f"unknown entries {unknown}; choose from {sorted(keys)}")
    chosen = [e for e in ENTRIES if (not args.only or e.key in args.only) and e.key not in args.skip]
    if args.list:
        for e in chosen:
            print(f"{e.key:32s} {' '.join(e.command(args.device, args.data_root)[1:])}")
        return 0
    failed = []
    if not args.render_only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for e in chosen:
            cmd = e.command(args.device, args.data_root)
            print(f"== {e.key}: {' '.join(cmd[1:])}", flush=True)
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=REPO)
            print(
                f"== {e.key}: exit {proc.returncode} after {(time.monotonic() - t0) / 60:.1f} min", flush=True
            )
            if proc.returncode:
                failed.append(e.key)
    path = write_docs()
    print(f"wrote {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
