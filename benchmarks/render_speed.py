"""The prediction-speed sections of docs/benchmarks.md (used by ``benchmarks/render.py``).

Results read: ``sliding_window`` (``sliding_window_speed.py``), ``predict_memory``
(``predict_memory.py``), ``hippocampus_backends`` (``backend_agreement.py``),
``hippocampus_folder`` and ``hippocampus_folder_int8`` and ``hippocampus_overlap``
(``predict_folder_speed.py``), and ``gpu_*`` (``gpu_suite.py``, when a GPU was lent).
"""

from __future__ import annotations

from typing import Any

R = dict[str, dict[str, Any]]

#: Targets of the prediction-speed issue.
FP32_RATIO, FAST_RATIO, FAST_LABELS, FAST_DICE = 1.5, 3.0, 1e-3, 0.003
CT_SECONDS, CT_GB, STARTUP_S, CASE_S = 120.0, 3.0, 3.0, 0.15


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _met(ok: Any) -> str:
    return "**met**" if ok else ("not measured" if ok is None else "**not met**")


def _auto(sw: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    return next(((k, v) for k, v in sw["variants"].items() if k.startswith("auto")), None)


def _trained(r: R) -> tuple[str, dict[str, Any]] | None:
    hb = r.get("hippocampus_backends")
    if not hb:
        return None
    return next(((k, v) for k, v in hb["variants"].items() if k.endswith("(auto)")), None)


def summary_rows(r: R) -> list[str]:
    """Rows of the headline table."""
    sw, mem, fold = r.get("sliding_window"), r.get("predict_memory"), r.get("hippocampus_folder")
    rows = []
    fp32 = sw and sw["variants"].get("torch:fp32")
    rows.append(
        "| sliding window, torch fp32 path vs MONAI fp32 (same net and settings), speed ratio | "
        + (
            f"{_f(fp32['ratio_monai_over_medseg'], 2)}x, outputs within {fp32['max_abs_diff']:.1g}"
            if fp32
            else "n/a"
        )
        + f" | ≥ {FP32_RATIO}x, within 1e-4 | "
        + _met(fp32 and fp32["ratio_monai_over_medseg"] >= FP32_RATIO and fp32["max_abs_diff"] <= 1e-4)
        + " |"
    )
    auto, trained = (_auto(sw) if sw else None), _trained(r)
    ok = (
        auto
        and trained
        and auto[1]["ratio_monai_over_medseg"] >= FAST_RATIO
        and trained[1]["labels_differ_share"] <= FAST_LABELS
        and max(abs(d) for d in trained[1]["dice_change"].values()) <= FAST_DICE
    )
    rows.append(
        "| sliding window, default path (`auto`) vs MONAI fp32; labels changed and Dice change on the "
        "trained hippocampus model (on the untrained benchmark net: see below) | "
        + (
            f"{_f(auto[1]['ratio_monai_over_medseg'], 2)}x ({auto[0].removeprefix('auto (').rstrip(')')}); "
            f"{100 * trained[1]['labels_differ_share']:.4f} % of voxels, Dice "
            + " / ".join(f"{v:+.4f}" for v in trained[1]["dice_change"].values())
            if auto and trained
            else "n/a"
        )
        + f" | ≥ {FAST_RATIO}x; ≤ 0.1 %, ≤ {FAST_DICE} | "
        + _met(ok if auto and trained else None)
        + " |"
    )
    rows.append(
        "| `medseg predict` on a 512x512x800 CT, 3 classes: time and peak memory | "
        + (
            f"{_f(mem['seconds'], 0)} s, {_f(mem['peak_rss_gb'], 2)} GB ({mem.get('backend')})"
            if mem
            else "n/a"
        )
        + f" | ≤ {CT_SECONDS:.0f} s, ≤ {CT_GB:.0f} GB | "
        + _met(mem and mem["exit_code"] == 0 and mem["seconds"] <= CT_SECONDS and mem["peak_rss_gb"] <= CT_GB)
        + " |"
    )
    rows.append(
        "| `medseg predict` on the 42 held-out hippocampus cases with TTA: start-up to first mask, "
        "seconds per case | "
        + (
            f"{_f(fold['startup_s'], 2)} s, {_f(fold['seconds_per_case_after_first'], 3)} s/case "
            f"({fold.get('backend')})"
            if fold
            else "n/a"
        )
        + f" | ≤ {STARTUP_S:.0f} s, ≤ {CASE_S} s | "
        + _met(
            fold
            and fold["startup_s"] is not None
            and fold["startup_s"] <= STARTUP_S
            and fold["seconds_per_case_after_first"] <= CASE_S
        )
        + " |"
    )
    return rows


def sliding(r: R) -> str:
    """The backends table of the sliding-window benchmark."""
    x = r.get("sliding_window")
    if not x:
        return "Not measured yet.\n"
    rows = [
        f"Same 3-class 3D U-Net ([16, 32, 64, 128], random weights with a fixed seed), random input "
        f"{'x'.join(map(str, x['shape']))}, window {'x'.join(map(str, x['roi']))}, overlap {x['overlap']}, "
        f"Gaussian blending, {x['batch_size']} windows per batch, {x['device']}; reference: MONAI's "
        f"`sliding_window_inference` on the float32 module ({_f(x['monai_s'], 2)} s). Median of "
        f"{x['repeats']} interleaved runs, alternating the order.\n",
        "| medseg backend:precision | seconds | speed vs MONAI | max abs difference | labels changed |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in x["variants"].items():
        rows.append(
            f"| {name} | {_f(v['seconds'], 2)} | **{_f(v['ratio_monai_over_medseg'], 2)}x** | "
            f"{v['max_abs_diff']:.2g} | {100 * v['labels_differ_share']:.3f} % |"
        )
    rows.append(
        "\nThe torch fp32 path gains from channels-last memory with an instance norm that keeps that layout "
        "(PyTorch's own copies the tensor twice per layer) and inference mode. The bf16 rows change 0.7 % "
        "of the labels here because this network is untrained: its "
        "class scores are near ties everywhere, so any rounding flips some. On a trained network "
        "(the next table) the same paths change a few voxels in 100,000.\n"
    )
    return "\n".join(rows) + "\n"


def agreement(r: R) -> str:
    """Accuracy of every backend on the trained hippocampus model."""
    x = r.get("hippocampus_backends")
    if not x:
        return "Not measured yet.\n"
    names = list(next(iter(x["variants"].values()))["dice"])
    rows = [
        f"The 3D U-Net trained on MSD Hippocampus with the shipped recipe (`{x['model']}`: "
        f"{x.get('trained', {}).get('budget_minutes')} minutes, {x.get('trained', {}).get('steps')} steps; "
        "retrained for this measurement, so its Dice is not the training table's), its "
        f"{x['cases']} held-out cases, "
        f"{'with' if x['tta'] else 'without'} mirror TTA, through `Predictor.predict` (preprocessing, "
        "sliding "
        f"window, mapping back); reference {x['reference']}. Seconds per case are medians, interleaved.\n",
        "| backend:precision | labels changed vs fp32 | Dice " + " / ".join(names) + " | change | s/case |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in x["variants"].items():
        rows.append(
            f"| {name} | {100 * v['labels_differ_share']:.4f} % | "
            + " / ".join(_f(v["dice"][n], 4) for n in names)
            + " | "
            + " / ".join(f"{v['dice_change'][n]:+.4f}" for n in names)
            + f" | {_f(v['seconds_per_case'], 3)} |"
        )
    return "\n".join(rows) + "\n"


def memory(r: R) -> str:
    """The large-CT row."""
    x = r.get("predict_memory")
    if not x:
        return "Not measured yet.\n"
    return (
        f"`medseg predict` in a fresh process on a {'x'.join(map(str, x['shape']))} int16 scan "
        f"({x['input_int16_gb']} GB of voxels) with a 3-class 3D U-Net [8, 16, 32, 64], window 128x128x64, "
        "overlap 0.25, CPU, default backend; the time includes start-up, reading, the one-off ONNX export, "
        "writing the mask; peak resident memory: the largest sum over the command's processes (the "
        "prediction and its reader child), sampled every 50 ms:\n\n"
        "| backend | time | peak RSS | exit |\n|---|---:|---:|---:|\n"
        f"| {x.get('backend') or 'torch:fp32'} | **{_f(x['seconds'], 0)} s** | "
        f"**{_f(x['peak_rss_gb'], 2)} GB** | "
        f"{x['exit_code']} |\n"
        "| before (torch fp32, recorded with the first version) | 396 s | 2.97 GB | 0 |\n\n"
        "The weighted scores go into a ring buffer one window deep along the last axis and each slab is "
        "reduced to labels as soon as no later window touches it, so no full-resolution float volume per "
        "class is held (`--probabilities` does hold them).\n"
    )


def folder(r: R) -> str:
    """Throughput and start-up on a folder of small scans."""
    rows = []
    for key, label in (("hippocampus_folder", "default"), ("hippocampus_folder_int8", "int8")):
        x = r.get(key)
        if x:
            dice = x.get("dice", {}).get("mean_per_class", {})
            rows.append(
                f"| {label} ({x.get('backend')}) | {_f(x['startup_s'], 2)} s | "
                f"{_f(x['seconds_per_case_after_first'], 3)} s | {_f(x['cases_per_minute'], 0)} | "
                + " / ".join(_f(v, 4) for v in dice.values())
                + " |"
            )
    if not rows:
        return "Not measured yet.\n"
    text = (
        "`medseg predict` in a fresh process on the 42 held-out MSD Hippocampus scans as one folder, mirror "
        "TTA along the trained axis, export already cached in the run folder. Start-up: process start to the "
        "first mask on disk. Reading and preprocessing the next case and writing the previous one run in "
        "threads beside the network (bounded queues).\n\n"
        "| path | start-up | s/case after the first | cases/min | Dice (mean per class) |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    ov = r.get("hippocampus_overlap")
    if ov and ov.get("compare_overlap"):
        c = ov["compare_overlap"]
        text += (
            f"\nOverlapped against sequential (Python API, {c['cases']} cases, median of {c['repeats']}): "
            f"{_f(c['overlap_io_s'], 2)} s against {_f(c['sequential_s'], 2)} s, {_f(c['speedup'], 2)}x; "
            f"same masks: {c['same_masks']}.\n"
        )
    text += (
        "\nFor reference (issue text, same machine class): nnU-Net takes about 15 s to start and 2.75 s per "
        "case with TTA; medseg's first version took 0.37 s per case.\n"
    )
    return text


def gpu(r: R) -> str:
    """The GPU figures, when a GPU was lent."""
    keys = [k for k in sorted(r) if k.startswith("gpu_")]
    if not keys:
        return (
            "No GPU was lent while these figures were measured. `python benchmarks/gpu_suite.py` runs every "
            "figure above on a CUDA GPU against MONAI on the same GPU (targets: the 512x512x800 CT in 10 s "
            "end to end, at least 1.5x MONAI's sliding window).\n"
        )
    return "".join(f"- `{k}`: see `benchmarks/results/{k}.json`\n" for k in keys)
