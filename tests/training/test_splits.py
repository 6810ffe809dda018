"""Validation splits and folds: deterministic, and with groups (patients) never split."""

from __future__ import annotations

import pytest

from medseg.errors import ConfigError
from medseg.training.splits import holdout, kfold

# 12 patients with 1 to 4 cases each (LIDC: several nodule crops per patient)
GROUPS = {f"p{p}_{i}": f"p{p}" for p in range(12) for i in range(1 + p % 4)}
IDS = sorted(GROUPS)


def _patients(ids: list[str]) -> set[str]:
    return {GROUPS[c] for c in ids}


def test_group_folds_keep_every_patient_in_one_fold():
    folds = kfold(IDS, 5, seed=3, groups=GROUPS)
    assert len(folds) == 5
    vals = [f["val"] for f in folds]
    assert sorted(c for v in vals for c in v) == IDS  # every case validated exactly once
    for f in folds:
        assert not _patients(f["train"]) & _patients(f["val"])
        assert sorted(f["train"] + f["val"]) == IDS
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 3  # balanced to within the largest patient (4 cases)
    assert folds == kfold(IDS, 5, seed=3, groups=GROUPS)  # deterministic
    assert folds != kfold(IDS, 5, seed=4, groups=GROUPS)


def test_ungrouped_folds_are_unchanged_and_too_many_folds_are_refused():
    plain = kfold(IDS, 5, seed=3)
    # the folds made before groups existed (pinned from that version): resumed runs keep their folds
    assert plain[0]["val"] == ["p10_2", "p2_2", "p6_0", "p7_0", "p7_3", "p8_0"]
    assert plain == kfold(IDS, 5, seed=3, groups=None) == kfold(IDS, 5, seed=3, groups={})
    assert any(_patients(f["train"]) & _patients(f["val"]) for f in plain)  # why groups matter
    with pytest.raises(ConfigError, match="13 folds from 12 groups"):
        kfold(IDS, 13, groups=GROUPS)
    assert len(kfold(IDS, 13)) == 13  # 30 cases without groups allow it


def test_grouped_holdout_keeps_patients_apart():
    split = holdout(IDS, 0.2, seed=1, groups=GROUPS)
    assert not _patients(split["train"]) & _patients(split["val"])
    assert sorted(split["train"] + split["val"]) == IDS
    assert 0.1 * len(IDS) <= len(split["val"]) <= 0.2 * len(IDS) + 3
    with pytest.raises(ConfigError, match="one group"):
        holdout(["a", "b"], 0.5, groups={"a": "p", "b": "p"})
