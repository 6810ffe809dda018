"""Deterministic train/validation splits: manifest splits, k-fold, or a held-out fraction."""

from __future__ import annotations

import numpy as np

from medseg.errors import ConfigError


def _units(case_ids: list[str], groups: dict[str, str] | None) -> dict[str, list[str]]:
    """The cases of every group (a case without a group is its own), in sorted group order."""
    units: dict[str, list[str]] = {}
    for cid in sorted(case_ids):
        units.setdefault((groups or {}).get(cid) or f"case:{cid}", []).append(cid)
    return dict(sorted(units.items()))


def kfold(
    case_ids: list[str], k: int, seed: int = 12345, groups: dict[str, str] | None = None
) -> list[dict[str, list[str]]]:
    """``k`` folds over the sorted case ids, shuffled with ``seed`` (same input, same folds).

    Args:
        case_ids: The labelled cases.
        k: Number of folds (2 .. number of groups).
        seed: Shuffling seed.
        groups: Case id -> group (patient). When given, every group's cases land in one fold
            (scikit-learn's GroupKFold idea): groups in shuffled order, each to the fold with the
            fewest cases so far.

    Raises:
        ConfigError: fewer cases (groups) than folds, or ``k < 2``.
    """
    if groups and any(groups.get(c) for c in case_ids):
        return _group_kfold(_units(case_ids, groups), k, seed)
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


def _group_kfold(units: dict[str, list[str]], k: int, seed: int) -> list[dict[str, list[str]]]:
    if k < 2 or k > len(units):
        raise ConfigError(
            f"cannot make {k} folds from {len(units)} groups (patients)",
            hint=f"use at most {len(units)} folds" if len(units) >= 2 else "add cases of more patients",
        )
    names = list(units)
    order = np.random.default_rng(seed).permutation(len(names))
    members: list[list[str]] = [[] for _ in range(k)]
    for i in order:
        target = min(range(k), key=lambda f: (len(members[f]), f))
        members[target].extend(units[names[i]])
    every = sorted(c for m in members for c in m)
    return [{"train": sorted(set(every) - set(m)), "val": sorted(m)} for m in members]


def holdout(
    case_ids: list[str], val_fraction: float, seed: int = 12345, groups: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """A single split holding out ``val_fraction`` of the cases (at least one); with ``groups``
    (case id -> patient), whole groups in shuffled order until the fraction is reached."""
    ids = sorted(case_ids)
    if val_fraction <= 0:
        return {"train": ids, "val": []}
    if groups and any(groups.get(c) for c in ids):
        units = _units(ids, groups)
        if len(units) < 2:
            raise ConfigError("one group (patient) only: no validation split can keep groups apart")
        names = list(units)
        target = max(1, int(round(len(ids) * val_fraction)))
        val: list[str] = []
        for i in np.random.default_rng(seed).permutation(len(names)):
            if len(val) >= target:
                break
            if len(val) + len(units[names[i]]) < len(ids):  # some training case must remain
                val.extend(units[names[i]])
        return {"train": sorted(set(ids) - set(val)), "val": sorted(val)}
    n_val = max(1, int(round(len(ids) * val_fraction)))
    if n_val >= len(ids):
        raise ConfigError(f"val_fraction {val_fraction} leaves no training case out of {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return {"train": sorted(set(ids) - set(val)), "val": val}
