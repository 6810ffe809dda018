"""Shared helpers for the benchmark scripts: machine description and JSON output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    info: dict[str, Any] = {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        model = (
            subprocess.run(
                ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo"], capture_output=True, text=True
            )
            .stdout.split(":", 1)[-1]
            .strip()
        )
        info["cpu"] = model or platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def dump(result: dict[str, Any], path: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def planned_pipeline(manifest: str, minutes: float, data_root: str, folder: str) -> tuple[str, float]:
    """``medseg plan MANIFEST --budget MINUTES`` into ``FOLDER/plan.yaml``: the path and the seconds
    the fingerprint and plan took (the benchmarks' ``--plan`` option: train what the planner wrote)."""
    import time

    from medseg.planning.api import plan_dataset

    path = Path(folder) / "plan.yaml"
    t0 = time.monotonic()
    plan_dataset(manifest, path, budget_minutes=minutes, device="cpu", data_root=data_root)
    return str(path), round(time.monotonic() - t0, 2)
