"""Render docs/benchmarks.md (and the README's benchmark table) from benchmarks/results/*.json.

    python benchmarks/render.py        # same as: python benchmarks/run_all.py --render-only

The page is generated: edit this file, not the Markdown. tests/test_docs.py fails when the page or
the README table differ from what these results render to.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import render_plan, render_speed, render_study, render_tumours  # noqa: E402  (the script runs without the package installed)

RESULTS = REPO / "benchmarks" / "results"
DOC = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"
README_MARKERS = ("<!-- benchmark-table -->", "<!-- /benchmark-table -->")

#: The 28-minute recipe comparison: (result key, what differs from the pipeline as shipped).
RECIPES = [
    ("hippocampus", "**as shipped**: batch 2, bf16 autocast on the CPU, flips left-right only"),
    ("hippocampus_all_flips", "flips along all three axes (nnU-Net's default)"),
    ("hippocampus_b2_fp32", "all-axis flips, float32"),
    ("hippocampus_b4_fp32", "all-axis flips, float32, batch 4 (`iterations_per_epoch=50`)"),
    ("hippocampus_20min", "all-axis flips, **20-minute** budget"),
]
#: The lever study at a short budget: (result key, lever), the first row is the baseline.
LEVERS = [
    ("lever_base", "baseline: the pipeline as shipped"),
    ("lever_all_flips", "flips along all three axes instead of left-right only"),
    (
        "lever_no_augmentation",
        "augmentation off (`augmentation.enabled=false`; no flips, hence no mirror TTA either)",
    ),
    (
        "lever_no_oversampling",
        "no foreground oversampling (`training.foreground_oversample=0`, was 0.33)",
    ),
    ("lever_dynunet", "DynUNet [16, 32, 64, 128] (nnU-Net's network) instead of the U-Net"),
    ("lever_dynunet_ds", "the same DynUNet with deep supervision (2 auxiliary outputs)"),
    ("lever_cosine", "cosine schedule with 1 warm-up epoch instead of poly"),
]


def load_results(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every saved result, by entry key."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _where(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    return f"GPU: {m['gpu']}" if m.get("gpu") else "CPU"


def _dice_pair(r: dict[str, Any] | None, key: str = "dice") -> str:
    if not r or not r.get(key):
        return "not measured"
    d = r[key]
    return f"{_f(d.get('anterior'))} / {_f(d.get('posterior'))}"


def _met(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "not met")


#: scripts whose --output is required: it is shown as a placeholder instead of left out
NEEDS_OUTPUT = ("plan_ablation.py", "plan_choice.py", "train_tumour.py --plan")


def _command(text: str) -> str:
    """The command as a reader would type it: without the scratch --json path, and without the
    scratch --output (a placeholder where the script needs one)."""
    text = re.sub(r" --json \S+", "", text)
    if any(s in text for s in NEEDS_OUTPUT):
        return re.sub(r" --output \S+", " --output OUT", text)
    return re.sub(r" --output \S+", "", text)


def _commands(*results: dict[str, Any] | None) -> str:
    lines = [_command(r["command"]) for r in results if r and r.get("command")]
    return "```bash\n" + "\n".join(lines) + "\n```\n" if lines else ""


def summary_table(r: dict[str, dict[str, Any]]) -> str:
    """The headline table (also copied into the README)."""
    demo, hip, isbi = r.get("demo"), r.get("hippocampus"), r.get("isbi")
    rows = [
        "| benchmark | measured | target | status |",
        "|---|---|---|---|",
        "| `medseg demo` (embedded sample, 10 held-out cases), Dice anterior / posterior | "
        + (f"{_dice_pair(demo)} in {_f(demo['total_minutes'], 1)} min" if demo else "not measured")
        + " | ≥ 0.80 each, 5-minute training | "
        + _met(demo and min(demo["dice"].values()) >= 0.80 and demo["budget_minutes"] <= 5)
        + " |",
        "| MSD Hippocampus 3D U-Net, 42 held-out cases, Dice anterior / posterior | "
        + (f"{_dice_pair(hip)} in {_f(hip['budget_minutes'], 0)} min" if hip else "not measured")
        + " | ≥ 0.87 / 0.85 within 30 min | "
        + _met(
            hip
            and hip["dice"]["anterior"] >= 0.87
            and hip["dice"]["posterior"] >= 0.85
            and hip["budget_minutes"] <= 30
        )
        + " |",
        "| ISBI 2012 EM 2D U-Net, slices 20-23, pixel error | "
        + (f"{_f(isbi['pixel_error'], 4)} in {_f(isbi['budget_minutes'], 0)} min" if isbi else "not measured")
        + " | ≤ 0.08 within 20 min | "
        + _met(isbi and isbi["pixel_error"] <= 0.08 and isbi["budget_minutes"] <= 20)
        + " |",
        *render_speed.summary_rows(r),
        *_reliability_rows(r),
    ]
    return "\n".join(rows) + "\n"


def _reliability_rows(r: dict[str, dict[str, Any]]) -> list[str]:
    fuzz, soak = r.get("fuzz"), r.get("soak")
    rows = [
        "| reader fuzzing, inputs per family / findings (uncaught, crash, hang, over 2 GiB) | "
        + (f"{fuzz['inputs_per_family']} / {_fuzz_bad(fuzz)}" if fuzz else "not measured")
        + " | ≥ 10000 / 0 | "
        + _met(fuzz and fuzz["inputs_per_family"] >= 10000 and _fuzz_bad(fuzz) == 0)
        + " |",
    ]
    if soak:
        t, p = soak["training"], soak["prediction"]
        ok = (
            t["kills"] >= 20 and p["kills"] >= 20 and t["identical_final_weights"]
            and p["identical_masks"] == p["masks"] == p["cases"]
            and not t["partial_files_left"] and not p["partial_files_left"]
            and t["unreadable_checkpoints"] == 0
        )  # fmt: skip
        measured = f"train {t['kills']} kills, predict {p['kills']} kills: identical, 0 partial files"
        if not ok:
            measured = f"train {t['kills']} / predict {p['kills']} kills: see below"
    else:
        ok, measured = None, "not measured"
    rows.append(
        f"| kill -9 soak of train and predict | {measured} | ≥ 20 kills each, identical | {_met(ok)} |"
    )
    return rows


def _machine_line(r: dict[str, dict[str, Any]]) -> str:
    m = next((x["machine"] for x in r.values() if "machine" in x and not x["machine"].get("gpu")), None)
    if not m:
        return "no CPU result recorded yet"
    return (
        f"**{m['cpu_cores']} CPU cores ({m.get('cpu', 'unknown CPU')}), no GPU**, Python {m['python']}, "
        f"torch {m['torch']} ({m['torch_threads']} threads), {m['platform']}"
    )


def _recipe_rows(r: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| recipe | budget | steps | Dice anterior | Dice posterior | s/case (TTA) | measured on |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, text in RECIPES:
        x = r.get(key)
        if not x:
            rows.append(f"| {text} | | | not measured | | | |")
            continue
        sd = x.get("dice_std", {})
        rows.append(
            f"| {text} | {_f(x['budget_minutes'], 0)} min | {x['steps_done']} | "
            f"{_f(x['dice']['anterior'])} ± {_f(sd.get('anterior'))} | "
            f"{_f(x['dice']['posterior'])} ± {_f(sd.get('posterior'))} | "
            f"{_f(x.get('seconds_per_case'), 2)} | {_where(x)} |"
        )
    return "\n".join(rows) + "\n"


def _delta(dice: dict[str, float], reference: dict[str, float]) -> str:
    return (
        f"{dice['anterior'] - reference['anterior']:+.3f} / {dice['posterior'] - reference['posterior']:+.3f}"
    )


def _lever_rows(r: dict[str, dict[str, Any]]) -> str:
    base = r.get(LEVERS[0][0])
    rows = [
        "| lever | steps | Dice anterior / posterior | change vs baseline |",
        "|---|---:|---:|---:|",
    ]
    for key, text in LEVERS:
        x = r.get(key)
        if not x:
            rows.append(f"| {text} | | not measured | |")
            continue
        delta = _delta(x["dice"], base["dice"]) if base and x is not base else ""
        rows.append(f"| {text} | {x['steps_done']} | {_dice_pair(x)} | {delta} |")
    tta_rows = (("hippocampus", "shipped recipe"), ("lever_all_flips", "all-axis flips"))
    for key, what in tta_rows:  # the TTA lever: one checkpoint, with and without mirroring
        x = r.get(key)
        if x and x.get("dice_no_tta"):
            rows.append(
                f"| test-time mirroring (along the flipped axes) vs none, {what}, same "
                f"{_f(x['budget_minutes'], 0)}-minute checkpoint | {x['steps_done']} | "
                f"{_dice_pair(x)} vs {_dice_pair(x, 'dice_no_tta')} | {_delta(x['dice'], x['dice_no_tta'])} |"
            )
    noaug, base = r.get("lever_no_augmentation"), r.get(LEVERS[0][0])
    if noaug and base:
        rows.append(
            f"\nAt this short budget augmentation costs more than it gives: it takes CPU time from the steps "
            f"({base['steps_done']} vs {noaug['steps_done']}) and regularises a model that has not yet "
            "overfitted. The 28-minute recipe keeps it; a 28-minute run without it was not measured."
        )
    return "\n".join(rows) + "\n"


def _flip_sentence(r: dict[str, dict[str, Any]]) -> str:
    pairs = [("hippocampus", "hippocampus_all_flips", "28-minute runs"), ("demo", "demo_all_flips", "demo")]
    found = [f"{what} {_delta(r[a]['dice'], r[b]['dice'])}" for a, b, what in pairs if r.get(a) and r.get(b)]
    if not found:
        return ""
    return (
        "Mirroring along the anterior-posterior and superior-inferior axes (nnU-Net's default) puts the "
        "hippocampal head where the tail belongs, and the model must unlearn position; flipping left-right "
        f"only moved Dice (anterior / posterior) by: {'; '.join(found)}."
    )


def _lever_intro(r: dict[str, dict[str, Any]]) -> str:
    base = r.get(LEVERS[0][0])
    minutes = f"{_f(base['budget_minutes'], 0)}-minute" if base else "short"
    return (
        f"Each lever changes one thing in the shipped recipe. These runs use a {minutes} budget so that "
        f"the whole study fits in about an hour: compare them with the {minutes} baseline, not with the "
        "28-minute table. One run each: differences below about 0.01 are within run-to-run noise.\n"
    )


def _isbi(r: dict[str, dict[str, Any]]) -> str:
    x = r.get("isbi")
    if not x:
        return "Not measured yet.\n"
    return (
        "| budget | epochs | pixel error | membrane Dice | s/slice (TTA) | measured on |\n"
        "|---:|---:|---:|---:|---:|---|\n"
        f"| {_f(x['budget_minutes'], 0)} min | {x['epochs_done']} | **{_f(x['pixel_error'], 4)}** | "
        f"{_f(x['membrane_dice'], 4)} | {_f(x['seconds_per_slice'], 2)} | {_where(x)} |\n"
    )


def _demo(r: dict[str, dict[str, Any]]) -> str:
    x = r.get("demo")
    if not x:
        return "Not measured yet.\n"
    t = x.get("timings_s", {})
    rows = [
        "| demo pipeline | training budget | steps | Dice anterior | Dice posterior | training | whole demo "
        "| measured on |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, text in (
        ("demo", "**as shipped** (flips left-right only)"),
        ("demo_all_flips", "all-axis flips"),
        ("demo_fp32", "float32 training, as on a CPU without bf16"),
    ):
        d = r.get(key)
        if d:
            rows.append(
                f"| {text} | {_f(d['budget_minutes'], 0)} min | {d['steps']} | {_f(d['dice']['anterior'])} | "
                f"{_f(d['dice']['posterior'])} | {_f(d['train_minutes'], 1)} min | "
                f"{_f(d['total_minutes'], 1)} min | {_where(d)} |"
            )
    return (
        "\n".join(rows) + "\n\n"
        "Training time includes preprocessing the 36 cases (a first run, empty cache). "
        f"Time outside training: prediction of the 10 cases {_f(t.get('predict'), 0)} s, evaluation and "
        f"overlays {_f(t.get('evaluate'), 0)} s, DICOM SEG export {_f(t.get('export'), 0)} s, CT example "
        f"{_f(t.get('ct'), 0)} s.\n"
    )


_FINDINGS = ("uncaught", "crash", "hang", "memory")


def _fuzz_bad(x: dict[str, Any]) -> int:
    return sum(f["outcomes"].get(k, 0) for f in x["families"] for k in _FINDINGS)


def _fuzz(r: dict[str, dict[str, Any]]) -> str:
    x = r.get("fuzz")
    if not x:
        return "Not measured yet.\n"
    rows = [
        "| reader family | seed files | inputs | read | refused (one line) | uncaught | crash | hang "
        "| over the memory cap | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in x["families"]:
        o = f["outcomes"]
        rows.append(
            f"| {f['family']} | {f['seeds']} | {f['inputs']} | {o.get('ok', 0)} | {o.get('refused', 0)} | "
            + " | ".join(str(o.get(k, 0)) for k in _FINDINGS)
            + f" | {_f(f['seconds'], 0)} |"
        )
    return (
        "\n".join(rows) + "\n\n"
        f"Seed {x['seed']}, {x['inputs_per_family']} mutated inputs per family, each read in a worker "
        f"process whose address space is capped at its start-up size plus {x.get('memory_cap_gb', 2):g} GiB "
        'and given 30 s. "Refused" is one of medseg\'s own errors on one line; the other columns are '
        "findings. Each finding became a named regression input in `tests/io/data/fuzz/` "
        "(`tests/io/test_fuzz_regressions.py`); CI runs a short seeded campaign "
        "(`tests/test_fuzz_campaign.py`).\n"
        + "".join(f"\n{f['family']}: {f['note']}.\n" for f in x["families"] if f.get("note"))
        + (
            "\nFound and fixed while building the campaign:\n\n"
            + "".join(f"* {t}\n" for t in x["fixed_during_campaign"])
            if x.get("fixed_during_campaign")
            else ""
        )
    )


def _soak(r: dict[str, dict[str, Any]]) -> str:
    x = r.get("soak")
    if not x:
        return "Not measured yet.\n"
    t, p = x["training"], x["prediction"]
    return (
        "| run | kills | starts | identical to the uninterrupted run | unreadable checkpoints "
        "| partial files left | orphaned processes |\n|---|---:|---:|---|---:|---:|---:|\n"
        f"| `medseg train` ({t['epochs']} epochs, uninterrupted {_f(t['straight_seconds'], 0)} s) | "
        f"{t['kills']} | {t['starts']} | final weights: "
        f"{'yes' if t['identical_final_weights'] else '**no**'} | "
        f"{t['unreadable_checkpoints']} | {len(t['partial_files_left'])} | {t['orphaned_process_groups']} |\n"
        f"| `medseg predict` ({p['cases']} scans, uninterrupted {_f(p['straight_seconds'], 0)} s) | "
        f"{p['kills']} | {p['starts']} | masks: {p['identical_masks']} of {p['masks']} | n/a | "
        f"{len(p['partial_files_left'])} | {p['orphaned_process_groups']} |\n\n"
        f"{t.get('kills_after_first_checkpoint', 'n/a')} of the {t['kills']} training kills came after the "
        "run's first checkpoint. "
        "Each kill is a SIGKILL of the command at a random moment (seeded), as an out-of-memory killer "
        "or a power cut would do; training resumes with `--resume` (or restarts when it died before its "
        "first checkpoint) and prediction is simply rerun. Temporary outputs of a killed writer are "
        "removed when the next run starts; a case whose sidecar `.json` (written last) is missing is "
        "predicted again.\n"
    )


def render(r: dict[str, dict[str, Any]]) -> str:
    """The whole of docs/benchmarks.md."""
    gpu = sorted({x["machine"]["gpu"] for x in r.values() if x.get("machine", {}).get("gpu")})
    hip = r.get("hippocampus")
    parts = [
        "# Benchmarks\n",
        "<!-- generated by benchmarks/render.py from benchmarks/results/*.json: "
        "edit those, not this page -->\n",
        "Figures measured with the scripts in `benchmarks/`. `python benchmarks/run_all.py` reruns every "
        "one of them in turn and rewrites this page (`--list` shows the entries and commands, `--only KEY` "
        "reruns some, `--render-only` just redraws the page from `benchmarks/results/`). Timing never goes "
        "into tests.\n",
        f"Machine: {_machine_line(r)}. Nothing else ran during a measurement. "
        + (
            f"GPU figures (marked as such): {', '.join(gpu)}."
            if gpu
            else "No GPU was available: every figure is a CPU figure."
        )
        + " Data: `../shared/datasets` (`--data-root`), manifests in `data_manifests/`.\n",
        "## Summary\n",
        summary_table(r),
        "## `medseg demo`\n",
        "The README's main command: trains the 3D U-Net hippocampus pipeline on the 36 embedded training "
        "cases, predicts and scores the 10 held-out embedded cases (on their own grids, mirror TTA), writes "
        "the report and the DICOM SEG exports.\n",
        _commands(r.get("demo"), r.get("demo_all_flips"), r.get("demo_fp32")),
        _demo(r),
        "## Training: MSD Hippocampus, 3D U-Net, fixed wall-clock budget\n",
        "Fixed 80/20 split of the 208 cases (`data_manifests/msd_hippocampus.json`: 166 training, 42 held "
        "out). Each run trains for its budget, then the 42 held-out cases are predicted with the best "
        "checkpoint through `Predictor` (the code path of `medseg predict`: preprocessing replayed, mask "
        "mapped back onto each scan's own grid, mirror TTA) and compared with the reference labels. "
        "Recipe: `pipelines/hippocampus_unet3d.yaml` (U-Net [16, 32, 64, 128], Dice + focal, SGD 0.01 "
        "momentum 0.99 with the poly schedule stretched over the time budget, patch 40x56x40, foreground "
        "oversampling 0.33, full augmentation with flips left-right only).\n",
        _commands(*(r.get(k) for k, _ in RECIPES)),
        _recipe_rows(r),
        "\nFor reference (issue text): nnU-Net v2 trained for 30 minutes on this machine completes one "
        "epoch and scores about 0.52 / 0.32; nnU-Net's published level after GPU-days of training is "
        "0.89 / 0.88.\n",
        "### Levers\n",
        _lever_intro(r),
        _commands(*(r.get(k) for k, _ in LEVERS)),
        _lever_rows(r),
        "\nFrom the recipe table: bf16 autocast (these Xeons have AMX-BF16) makes a step about twice as "
        "fast, and halving the batch doubles the steps again; in a fixed budget on a CPU, more and smaller "
        "steps win. "
        + _flip_sentence(r)
        + (
            f" The shipped recipe predicts a case in {_f(hip.get('seconds_per_case'), 2)} s with TTA."
            if hip
            else ""
        )
        + "\n",
        "## Training: ISBI 2012 EM, 2D U-Net\n",
        "Trains `pipelines/isbi2012_unet2d.yaml` on slices 0-19, scores slices 20-23 (pixel error: the share "
        "of pixels whose membrane/cell class is wrong; membrane Dice), predicted through `Predictor` with "
        "mirror TTA.\n",
        _commands(r.get("isbi")),
        _isbi(r),
        "## Tumours: LGG FLAIR abnormality, channel dropout and small-lesion levers\n",
        "`pipelines/lgg_unet2d.yaml`: 2D U-Net [32, 64, 128, 256] on the three sequences (pre-contrast, "
        "FLAIR, post-contrast, each z-scored on its own), Dice + CE, 30 minutes each, split by patient "
        "(`data_manifests/lgg_brain_mri.json`: 19 training, 4 validation, 6 test patients of the 29 "
        "staged; one test patient has pre- and post-contrast replaced by FLAIR in the source). Two runs "
        "trained at a time, each with one torch thread (one core each), as pairs: the two levers, then "
        "the channel-dropout pair, each pair alone on the machine (a first channel-dropout pair that "
        "shared the CPU with test runs was discarded). Six test patients with one reference lesion "
        "each: every difference below is an anecdote. Voxel size is unknown in this dataset: HD95 "
        "and volumes are in voxels, not mm.\n",
        _commands(*(r.get(k) for k, _ in render_tumours.LGG_RUNS)),
        render_tumours.lgg(r),
        "## Tumours: BraTS regions against exclusive labels\n",
        "`pipelines/brats_regions_unet3d.yaml` against `pipelines/brats_labels_unet3d.yaml`: the same 3D "
        "U-Net on FLAIR + T1c at 2 mm, trained on 4 cases of `brats2015_sample` and scored on the other 2 "
        "per region (whole tumour {1, 2, 3, 4}, core {1, 3, 4}, enhancing {4}); the exclusive-label "
        "model's label maps are scored on the same regions. Both trained at the same time, one torch "
        "thread each, while the test suite also ran (three processes on two cores, for both alike). "
        "**Six cases: these figures are anecdotes, not evidence.**\n",
        _commands(*(r.get(k) for k, _ in render_tumours.BRATS_RUNS)),
        render_tumours.brats(r),
        *render_plan.section(r, _commands),
        "## Architecture study: every family at one budget (GPU)\n",
        render_study.study(r),
        "## Inference: backends against MONAI's sliding window\n",
        _commands(r.get("sliding_window")),
        render_speed.sliding(r),
        "## Inference: accuracy of each backend on a trained model\n",
        _commands(r.get("hippocampus_backends")),
        render_speed.agreement(r),
        "## Inference: a folder of small scans (start-up and throughput)\n",
        _commands(
            r.get("hippocampus_folder"), r.get("hippocampus_folder_int8"), r.get("hippocampus_overlap")
        ),
        render_speed.folder(r),
        "## Inference: time and peak memory on a CT-sized scan\n",
        _commands(r.get("predict_memory")),
        render_speed.memory(r),
        "## Inference on a GPU\n",
        render_speed.gpu(r),
        "## Reliability: fuzzed readers\n",
        _commands(r.get("fuzz")),
        _fuzz(r),
        "## Reliability: kill -9 soak\n",
        _commands(r.get("soak")),
        _soak(r),
        "## Models: size and cost\n",
        "See [models](models.md) for the parameter and FLOP counts of every registered model on a 2D 256x256 "
        "and a 3D 96³ input (`python benchmarks/model_table.py`).\n",
    ]
    return "\n".join(p for p in parts if p)


def readme_with_table(readme: str, r: dict[str, dict[str, Any]]) -> str:
    """The README text with its benchmark table replaced by the current one."""
    start, end = README_MARKERS
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README has no {start} ... {end} block")
    return pattern.sub(lambda _: f"{start}\n{summary_table(r)}{end}", readme)


def write_docs() -> Path:
    """Rewrite docs/benchmarks.md and the README table from the saved results."""
    r = load_results()
    DOC.write_text(render(r))
    README.write_text(readme_with_table(README.read_text(), r))
    return DOC


if __name__ == "__main__":
    print(write_docs(), file=sys.stderr)
