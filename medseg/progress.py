"""Progress bars with ETA for long work, shown only on an interactive terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_enabled: bool | None = None


def set_enabled(enabled: bool | None) -> None:
    """Force progress bars on (True) or off (False); None restores auto-detection."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    """Whether progress bars are drawn: on a terminal, unless ``NO_COLOR``-style opt-outs."""
    if _enabled is not None:
        return _enabled
    if os.environ.get("MEDSEG_NO_PROGRESS") or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None, min_items: int = 2) -> Iterator[T]:
    """Iterate over ``items`` while drawing a bar with count, elapsed time and ETA on stderr.

    Args:
        items: What to iterate over.
        description: Short label shown before the bar.
        total: Number of items when ``items`` has no ``len``.
        min_items: Below this many items no bar is drawn.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled() or (total is not None and total < min_items):
        yield from items
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield from progress.track(items, total=total, description=description)
