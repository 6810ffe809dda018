"""Deterministic train/validation splits: manifest splits, k-fold, or a held-out fraction."""

from __future__ import annotations

import numpy as np

from medseg.errors import ConfigError


def kfold(case_ids: list[str], k: int, seed: int = 12345) -> list[dict[str, list[str]]]:
    """``k`` folds over the sorted case ids, shuffled with ``seed`` (same input, same folds)."""
    if k < 2 or k > len(case_ids):
        raise ConfigError(f"cannot make {k} folds from {len(case_ids)} cases")
    ids = sorted(case_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    chunks = np.array_split(order, k)
    folds = []
    for f in range(k):
        val = sorted(ids[i] for i in chunks[f])
        folds.append({"train": sorted(set(ids) - set(val)), "val": val})
    return folds


def holdout(case_ids: list[str], val_fraction: float, seed: int = 12345) -> dict[str, list[str]]:
    """A single split holding out ``val_fraction`` of the cases (at least one)."""
    ids = sorted(case_ids)
    if val_fraction <= 0:
        return {"train": ids, "val": []}
    n_val = max(1, int(round(len(ids) * val_fraction)))
    if n_val >= len(ids):
        raise ConfigError(f"val_fraction {val_fraction} leaves no training case out of {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return {"train": sorted(set(ids) - set(val)), "val": val}
