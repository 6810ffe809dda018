"""The architecture-study section of docs/benchmarks.md (used by ``benchmarks/render.py``).

Reads ``architecture_study`` (written by ``benchmarks/architecture_study_report.py``); the full page,
with every table, figure and paired test, is ``docs/architecture_study.md``.
"""

from __future__ import annotations

from typing import Any

R = dict[str, dict[str, Any]]


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def study(r: R) -> str:
    """Dice and boundary IoU of every family on both datasets, and the CRF change on ISBI."""
    x = r.get("architecture_study")
    if not x:
        return "Not measured yet (needs a GPU: `benchmarks/architecture_study.py`).\n"
    sets = x["datasets"]
    names = list(sets)
    families = list(sets[names[0]]["tables"]["families"])
    for n in names[1:]:
        families += [f for f in sets[n]["tables"]["families"] if f not in families]
    head = "| model | " + " | ".join(f"{sets[n]['title']}: steps / Dice / boundary IoU" for n in names)
    lines = [head + " |", "| --- |" + " ---: |" * len(names)]
    for fam in families:
        cells = []
        for n in names:
            row = sets[n]["runs"].get(fam)
            cells.append(
                "n/a" if row is None else f"{row['steps']} / {_f(row['dice'])} / {_f(row['boundary_iou'])}"
            )
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    crf = []
    for data in sets.values():
        for table, runs in data["tables"].items():
            if table.startswith("crf-") and len(runs) == 2:
                off, on = (data["runs"][k]["boundary_iou"] for k in runs)
                crf.append(f"{runs[0]} {_f(off)} → {_f(on)} ({on - off:+.3f})")
    machine = x.get("machine") or {}
    text = (
        f"Every family trained from scratch for {60 * (x.get('budget_minutes') or 0):.0f} s on one "
        f"{machine.get('gpu', 'GPU')} (GPU figures; four runs shared the GPU, so steps differ), "
        "scored on the held-out ISBI slices and Hippocampus cases. Early-training comparison: see "
        "[the architecture study](architecture_study.md) for the ablations (skips, FCN variants, "
        "atrous rates), boundary measures, paired tests, figures and the conclusions.\n\n"
    )
    text += "\n".join(lines) + "\n"
    if crf:
        text += "\nDense CRF on ISBI, boundary IoU off → on: " + "; ".join(crf) + ".\n"
    return text
