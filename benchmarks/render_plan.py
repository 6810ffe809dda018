"""The planning section of docs/benchmarks.md (used by ``benchmarks/render.py``).

Reads ``plan_speed`` (``benchmarks/plan_speed.py``) and the planned runs ``plan_hippocampus`` and
``plan_isbi`` with their hand-tuned pairs ``plan_pair_hippocampus`` and ``plan_pair_isbi``
(``train_hippocampus.py`` / ``train_isbi.py`` with and without ``--plan``, trained at the same time).
"""

from __future__ import annotations

from typing import Any

R = dict[str, dict[str, Any]]

#: (planned run, hand-tuned run trained beside it, what is compared)
PAIRS = [
    ("plan_hippocampus", "plan_pair_hippocampus", "MSD Hippocampus, Dice anterior / posterior"),
    ("plan_isbi", "plan_pair_isbi", "ISBI 2012, pixel error / membrane Dice"),
]


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _score(x: dict[str, Any]) -> str:
    if "dice" in x and isinstance(x["dice"], dict):
        return " / ".join(_f(v) for v in x["dice"].values())
    return f"{_f(x.get('pixel_error'), 4)} / {_f(x.get('membrane_dice'))}"


def speed(r: R) -> str:
    x = r.get("plan_speed")
    if not x:
        return "Not measured yet (`benchmarks/plan_speed.py`).\n"
    rows = ["| dataset | cold (s) | warm (s) | target (s) | planned |", "| --- | ---: | ---: | ---: | --- |"]
    for name, d in x["datasets"].items():
        rows.append(
            f"| {name} | {_f(d['cold_seconds'], 1)} | {_f(d['warm_seconds'], 1)} | "
            f"{_f(d['target_seconds'], 0)} | {d['planned']} {'x'.join(map(str, d['patch_size']))} |"
        )
    return "\n".join(rows) + "\n"


def runs(r: R) -> str:
    rows = [
        "| comparison | planned | hand-tuned (same time, same machine) | steps planned / hand-tuned |",
        "| --- | ---: | ---: | ---: |",
    ]
    found = False
    for planned, hand, what in PAIRS:
        p, h = r.get(planned), r.get(hand)
        if not p:
            continue
        found = True
        rows.append(
            f"| {what} | {_score(p)} | {_score(h) if h else 'n/a'} | "
            f"{p.get('steps_done')} / {h.get('steps_done') if h else 'n/a'} |"
        )
    return "\n".join(rows) + "\n" if found else "No planned run measured yet.\n"
