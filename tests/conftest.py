"""Shared fixtures: where the real datasets are, and synthetic volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    env = os.environ.get("MEDSEG_SHARED_DATASETS")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


SHARED = _shared_root()


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` (or $MEDSEG_SHARED_DATASETS); skips the test when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real datasets not found at {SHARED} (set MEDSEG_SHARED_DATASETS to their folder)")
    return SHARED


def shared_path(root: Path, *parts: str) -> Path:
    """A path inside the shared datasets; skips when that dataset is missing."""
    p = root.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"dataset file {p} is missing from the shared datasets")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
