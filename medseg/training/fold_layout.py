"""The layout of a cross-validation run folder (:mod:`medseg.training.folds` describes it): fold
folders, ``folds.json``, fold states. A leaf module: the trainer, the ensemble predictor and the
cross-validation report all read it, and it imports none of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError

FOLDS_FILE = "folds.json"
FORMAT = "medseg-folds/1"
OOF_MARKER = "oof.json"


def fold_dir(run_dir: str | Path, fold: int) -> Path:
    """The run folder of fold ``fold``: ``RUN/fold_<fold>``."""
    return Path(run_dir) / f"fold_{int(fold)}"


def read_folds(run_dir: str | Path) -> dict[str, Any] | None:
    """The content of ``RUN/folds.json``, or None when ``run_dir`` is not a cross-validation run.

    Raises:
        CorruptFileError: a damaged folds.json.
    """
    path = Path(run_dir) / FOLDS_FILE
    if not path.is_file():
        return None
    from medseg.errors import CorruptFileError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        int(data["k"]), list(data["folds"]), dict(data["splits"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"{path} is damaged: {exc}", hint="train the folds again") from None
    return data


def is_fold_run(path: str | Path) -> bool:
    """True for a folder made by :func:`train_folds` (it holds folds.json)."""
    return (Path(path) / FOLDS_FILE).is_file()


def parse_folds(spec: str | int | Sequence[int] | None, k: int) -> list[int]:
    """Fold numbers from ``"all"`` (or None), ``"0,2"``, an int or a list; sorted, without repeats.

    Raises:
        ConfigError: a fold outside ``0..k-1``, or text that is not a list of numbers.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(k))
    if isinstance(spec, str):
        try:
            folds = [int(s) for s in spec.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(
                f"--folds {spec!r} is not a list of fold numbers", hint="e.g. all or 0,2"
            ) from None
    else:
        folds = [int(spec)] if isinstance(spec, int) else [int(f) for f in spec]
    bad = [f for f in folds if not 0 <= f < k]
    if not folds or bad:
        raise ConfigError(
            f"folds {bad or folds} are out of range for {k} folds", hint=f"use all, or numbers in 0..{k - 1}"
        )
    return sorted(set(folds))


@dataclass(frozen=True)
class FoldState:
    """Where a fold stands: ``missing`` (no last.pt), ``partial`` or ``finished``; the last epoch
    trained (0-based, -1 when missing), the planned epochs, and whether its out-of-fold
    predictions are complete."""

    status: str
    epoch: int
    epochs: int
    oof_done: bool

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def fold_state(path: str | Path) -> FoldState:
    """The :class:`FoldState` of a fold's run folder (definition of *finished* in the module doc)."""
    from medseg.training.checkpoint import load_checkpoint

    folder = Path(path)
    last = folder / "checkpoints" / "last.pt"
    oof = (folder / "validation" / OOF_MARKER).is_file()
    if not last.is_file():
        return FoldState("missing", -1, 0, oof)
    state = load_checkpoint(last)
    training = (state.get("config") or {}).get("training") or {}
    epoch, epochs = int(state["epoch"]), int(training.get("epochs", 0))
    budget = training.get("max_minutes")
    spent = budget is not None and float(state.get("elapsed_seconds", 0.0)) >= float(budget) * 60
    return FoldState("finished" if epoch + 1 >= epochs or spent else "partial", epoch, epochs, oof)
