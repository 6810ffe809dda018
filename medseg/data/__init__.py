"""Embedded sample data (real, openly licensed; each folder carries its licence)."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample_path(*parts: str) -> Path:
    """Path of a file inside the embedded samples, e.g. ``sample_path("hippocampus")``."""
    return SAMPLES.joinpath(*parts)
