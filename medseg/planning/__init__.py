"""Self-configuration: the dataset fingerprint and the planning rules built on it (``medseg plan``).

Imports are lazy so that ``import medseg.planning`` stays cheap; the names below load their module
on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module (relative to this package) that defines it
_LAZY = {
    "compute_fingerprint": "fingerprint",
    "fingerprint_case": "case_stats",
    "plan_pipeline": "planner",
    "plan_dataset": "api",
    "render_yaml": "yaml_writer",
    "probe_step_seconds": "topology",
    "PlanResult": "rules",
    "Decision": "rules",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
