"""Figures and ``docs/architecture_study.md`` from the study folder of ``architecture_study.py``.

    python benchmarks/architecture_study_report.py [--study /tmp/medseg_bench/architecture_study]

Reads each run's ``study.json`` (budget, steps), ``resources.json`` (parameters, FLOPs, step time, peak
memory), ``evaluation/`` (``medseg evaluate``) and rebuilds every table through ``medseg compare``
(``compare_runs``): the paired differences to each table's first run and their Wilcoxon signed-rank
p-values over cases. Writes the figures into ``docs/figures/architecture_study/`` and the page.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import REPO
from benchmarks.architecture_study import DATASETS, DEFAULT_OUT, tables

FIGURES = REPO / "docs" / "figures" / "architecture_study"
METRICS = ("dice", "boundary_iou", "hd95", "nsd")
LABEL = {"dice": "Dice", "boundary_iou": "BIoU", "hd95": "HD95", "nsd": "NSD", "iou": "IoU"}
TITLES = {
    "isbi": "ISBI 2012 EM (2D, 4 held-out slices)",
    "hippocampus": "MSD Hippocampus (3D, 42 held-out cases)",
}


def load_table(folder: Path, runs: list[str]) -> dict[str, dict[str, Any]]:
    """Per run: metric -> (mean, paired diff to the first run, p) over the 'all classes' rows."""
    from medseg.reporting.compare import ALL_CLASSES, compare_runs

    comparison = compare_runs([folder / r for r in runs], output=None)
    classes = {row.class_name for row in comparison.rows if row.class_name != ALL_CLASSES}
    wanted = next(iter(classes)) if len(classes) == 1 else ALL_CLASSES  # one class: its own rows
    out: dict[str, dict[str, Any]] = {r: {} for r in runs}
    for row in comparison.rows:
        if row.class_name != wanted:
            continue
        for name, stats, diff in zip(comparison.names, row.stats, row.diffs):
            diff = diff or {}
            out[name][row.metric] = (stats.get("mean"), diff.get("mean_diff"), diff.get("p_value"))
    return out


def run_facts(run: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name in ("study.json", "resources.json"):
        if (run / name).is_file():
            facts.update(json.loads((run / name).read_text()))
    summary = run / "evaluation" / "summary.json"
    if summary.is_file():
        facts["miou"] = json.loads(summary.read_text()).get("miou", {}).get("mean_iou_pooled")
    return facts


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _d(entry: tuple | None, digits: int = 3) -> str:
    if not entry or entry[1] is None:
        return ""
    star = "*" if entry[2] is not None and entry[2] < 0.05 else ""
    p = "" if entry[2] is None else f" (p={entry[2]:.2g}){star}"
    return f"{entry[1]:+.{digits}f}{p}"


def families_table(folder: Path, runs: list[str], values: dict[str, dict[str, Any]]) -> str:
    head = (
        "| model | params (M) | GFLOPs / patch | step (ms) | peak memory (MiB) | steps done | Dice | "
        "mIoU (pooled) | boundary IoU | HD95 | NSD | Δ boundary IoU vs U-Net |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in runs:
        f, v = run_facts(folder / r), values[r]
        lines.append(
            f"| {r} | {_f(f.get('parameters', 0) / 1e6, 2)} | {_f(f.get('gflops_per_patch'), 1)} | "
            f"{_f(1000 * f.get('step_seconds', float('nan')), 1)} | {_f(f.get('step_peak_memory_mib'), 0)} | "
            f"{f.get('steps', 'n/a')} | {_f(v['dice'][0])} | {_f(f.get('miou'))} | "
            f"{_f(v['boundary_iou'][0])} | {_f(v['hd95'][0], 2)} | {_f(v['nsd'][0])} | "
            f"{_d(v['boundary_iou'])} |"
        )
    return head + "\n".join(lines) + "\n"


def ablation_table(values: dict[str, dict[str, Any]], runs: list[str], folder: Path) -> str:
    base = runs[0]
    head = (
        f"| variant | steps done | Dice | boundary IoU | HD95 | NSD | Δ Dice vs {base} | Δ boundary IoU | "
        "Δ HD95 | Δ NSD |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in runs:
        v = values[r]
        lines.append(
            f"| {r} | {run_facts(folder / r).get('steps', 'n/a')} | {_f(v['dice'][0])} | "
            f"{_f(v['boundary_iou'][0])} | {_f(v['hd95'][0], 2)} | {_f(v['nsd'][0])} | "
            f"{_d(v['dice'])} | {_d(v['boundary_iou'])} | {_d(v['hd95'], 2)} | {_d(v['nsd'])} |"
        )
    return head + "\n".join(lines) + "\n"


# -- figures -------------------------------------------------------------------------------------
def bar_figure(all_values: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_values), figsize=(6 * len(all_values), 5.5), squeeze=False)
    for ax, (dataset, values) in zip(axes[0], all_values.items()):
        runs = sorted(values, key=lambda r: values[r]["boundary_iou"][0] or 0)
        y = np.arange(len(runs))
        ax.barh(y - 0.2, [values[r]["dice"][0] for r in runs], 0.4, label="Dice")
        ax.barh(y + 0.2, [values[r]["boundary_iou"][0] for r in runs], 0.4, label="boundary IoU")
        ax.set_yticks(y, runs)
        ax.set_xlim(0, 1)
        ax.set_title(TITLES[dataset], fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_figure(folder: Path, groups: dict[str, list[str]], title: str, path: Path) -> None:
    """Misclassification rate against distance to the reference boundary, one panel per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    for ax, (name, runs) in zip(axes[0], groups.items()):
        for r in runs:
            path_json = folder / r / "evaluation" / "boundary_error.json"
            if not path_json.is_file():
                continue
            data = json.loads(path_json.read_text())
            bins = np.asarray(data["bins"], dtype=float)
            voxels = sum(np.asarray(c["both"]["voxels"], float) for c in data["classes"].values())
            errors = sum(np.asarray(c["both"]["errors"], float) for c in data["classes"].values())
            mid = 0.5 * (bins[:-1] + bins[1:])
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.where(voxels > 0, errors / voxels, np.nan)
            ax.plot(mid, rate, marker="o", ms=3, label=r)
        ax.set_yscale("log")
        ax.set_xlabel(f"distance to the reference boundary ({data.get('distance_unit', 'mm')})")
        ax.set_ylabel("misclassified share")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_figure(folder: Path, runs: list[str], dims: int, path: Path) -> None:
    """The same case (a crop, or the axial slice with most foreground) for every model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medseg.io import read_volume

    refs = sorted((folder / "references").glob("*.nii.gz"))
    case = refs[0].name
    ref = read_volume(refs[0]).array
    image = read_volume(folder / "images" / case).array
    image = image[..., 0] if image.ndim == 4 else image
    if dims == 2:
        sl = (slice(96, 288), slice(96, 288), 0)
    else:
        z = int(np.argmax((ref > 0).sum(axis=(0, 1))))
        sl = (slice(None), slice(None), z)
    n = len(runs) + 1
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    panels = [("reference", ref), *((r, read_volume(folder / r / "predictions" / case).array) for r in runs)]
    for ax, (name, labels) in zip(axes.ravel(), panels):
        ax.imshow(image[sl].T, cmap="gray", origin="lower")
        ax.contour(ref[sl].T > 0, levels=[0.5], colors="lime", linewidths=0.6)
        if name != "reference":
            ax.contour(labels[sl].T > 0, levels=[0.5], colors="red", linewidths=0.6)
        ax.set_title(name, fontsize=8)
    fig.suptitle(f"{case.split('.')[0]}: reference (green), prediction (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110 if dims == 3 else 75)
    plt.close(fig)


def collect(study: Path) -> dict[str, dict[str, Any]]:
    """Per dataset: its folder and every table's values."""
    out: dict[str, dict[str, Any]] = {}
    for name, dataset in DATASETS.items():
        folder = study / name
        if not folder.is_dir():
            continue
        groups = {k: v for k, v in tables(dataset, folder).items() if len(v) >= 2}
        out[name] = {
            "folder": folder,
            "dataset": dataset,
            "tables": groups,
            "values": {k: load_table(folder, runs) for k, runs in groups.items()},
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(DEFAULT_OUT))
    ap.add_argument("--print", action="store_true", help="print the tables only")
    args = ap.parse_args()
    data = collect(Path(args.study))
    if args.print:
        for name, d in data.items():
            for table, runs in d["tables"].items():
                print(f"## {name} {table}")
                if table == "families":
                    print(families_table(d["folder"], runs, d["values"][table]))
                else:
                    print(ablation_table(d["values"][table], runs, d["folder"]))
        return 0
    build_report(Path(args.study), REPO / "benchmarks" / "results" / "architecture_study.json")
    return 0


def build_report(study: Path, summary: Path | None) -> None:
    """Figures, docs/architecture_study.md and (when ``summary`` is given) the headline JSON."""
    from benchmarks.architecture_study_page import write_page

    data = collect(study)
    FIGURES.mkdir(parents=True, exist_ok=True)
    bar_figure({n: d["values"]["families"] for n, d in data.items()}, FIGURES / "families.png")
    for name, d in data.items():
        groups = {
            "skips": d["tables"]["skips"],
            "FCN variants": d["tables"]["fcn"],
            "dilation": [
                r for k in ("dilation-v1", "dilation-v2", "dilation-v3") for r in d["tables"].get(k, [])
            ],
        }
        if any(k.startswith("crf-") for k in d["tables"]):
            groups["CRF"] = [r for k, v in d["tables"].items() if k.startswith("crf-deeplab") for r in v]
        curve_figure(d["folder"], groups, TITLES[name], FIGURES / f"error_distance_{name}.png")
        overlay_figure(
            d["folder"], d["tables"]["families"], d["dataset"].dims, FIGURES / f"overlays_{name}.png"
        )
    write_page(data, REPO / "docs" / "architecture_study.md")
    if summary is not None:
        write_summary(data, summary)


def write_summary(data: dict[str, dict[str, Any]], path: Path) -> None:
    """The headline figures for docs/benchmarks.md (``benchmarks/render_study.py``)."""
    out: dict[str, Any] = {"benchmark": "architecture_study", "datasets": {}}
    for name, d in data.items():
        rows = {}
        for table, runs in d["tables"].items():
            for r in runs:
                v, f = d["values"][table][r], run_facts(d["folder"] / r)
                rows[r] = {
                    "steps": f.get("steps"),
                    "parameters": f.get("parameters"),
                    "step_ms": None if f.get("step_seconds") is None else round(1000 * f["step_seconds"], 1),
                    **{m: None if v[m][0] is None else round(float(v[m][0]), 4) for m in METRICS},
                }
        out["datasets"][name] = {"title": TITLES[name], "tables": d["tables"], "runs": rows}
        facts = run_facts(d["folder"] / "unet")
        out.update(budget_minutes=facts.get("budget_minutes"), machine=facts.get("machine"))
    out["command"] = (
        "python benchmarks/architecture_study.py train|measure|evaluate; architecture_study_report.py"
    )
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
