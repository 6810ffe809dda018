"""Choosing between planned configurations (2D, 3D) by cross-validation: :func:`choose_configuration`.

When ``medseg plan`` proposes a 2D configuration beside the 3D one (strongly anisotropic data, or
no recorded voxel size), each is trained with ``medseg train --folds all`` on the same folds, and
their out-of-fold (OOF) predictions decide, as nnU-Net's ``find_best_configuration`` does:

- every run alone: its pooled OOF Dice (:func:`~medseg.evaluation.crossval.cross_validate`);
- every ensemble of two or more runs (``OUT/ensembles/runs_1+2``, numbered in argument order): per
  case the mean of the runs' OOF probabilities
  (``[X, Y, Z, K]`` on the source grid, as the fold ensemble averages them at prediction time),
  arg-max, scored against the same references.

The candidate with the highest mean Dice over the classes wins; a tie (to 1e-6) goes to fewer
models. The post-processing is then chosen on the winner's OOF predictions. Everything is written
to ``OUT/configuration.json``, and ``medseg predict -m OUT`` predicts with the winner: the mean of
every fold of every chosen run.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, InputNotFoundError, MedsegError
from medseg.inference.choice_record import CHOICE_FILE, FORMAT, read_choice  # noqa: F401  (re-exported)
from medseg.io.atomic import write_text_atomic

log = logging.getLogger(__name__)

RULE = (
    "highest mean out-of-fold Dice over the classes, pooled over every case; ensembles average the "
    "runs' out-of-fold probabilities; ties (1e-6) go to fewer models"
)
TIE = 1e-6


@dataclass
class Candidate:
    """One run, or an ensemble of runs, with its pooled OOF Dice (``{"dice": {class: x}, "mean": m,
    "n_cases": n}``)."""

    runs: list[Path]
    pooled: dict[str, Any]
    names: list[str] = field(default_factory=list)  # how each run is shown (unique among the runs)

    @property
    def name(self) -> str:
        return " + ".join(self.names or [r.name for r in self.runs])

    @property
    def mean(self) -> float:
        return float(self.pooled["mean"])

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [str(r.resolve()) for r in self.runs], "name": self.name, **self.pooled}


@dataclass
class ConfigurationChoice:
    """The candidates, the winner and where the record is (``output/configuration.json``)."""

    candidates: list[Candidate]
    chosen: Candidate
    output: Path
    postprocessing: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rule": RULE,
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": self.chosen.to_dict(),
            "postprocessing": self.postprocessing,
        }

    def table(self) -> str:
        """Plain text: the mean OOF Dice of every candidate, the winner marked."""
        width = max(len(c.name) for c in self.candidates)
        lines = [f"{'configuration':<{width}}  cases  mean Dice"]
        for c in self.candidates:
            mark = "  <- chosen" if c is self.chosen else ""
            lines.append(f"{c.name:<{width}}  {c.pooled['n_cases']:>5}  {c.mean:9.4f}{mark}")
        return "\n".join(lines)


def _oof_index(run: Path) -> dict[str, int]:
    """Case id -> the fold that predicted it out-of-fold."""
    from medseg.evaluation.oof import oof_cases

    return {cid: f for f, cases in oof_cases(run).items() for cid in cases}


def _is_region_run(run: Path) -> bool:
    import yaml

    from medseg.training.fold_layout import fold_dir

    for f in sorted(_oof_index(run).values()):
        path = fold_dir(run, f) / "config.yaml"
        if path.is_file():
            return bool((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("regions"))
    return False


def _display_names(runs: list[Path]) -> list[str]:
    """The folder names, with their parents where two runs share a name."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{r.resolve().parent.name}/{r.name}" for r in runs]


def _ensemble_oof(runs: Sequence[Path], index: list[dict[str, int]], folder: Path) -> None:
    """Per case the arg-max of the runs' mean OOF probabilities, as label maps in ``folder``."""
    import shutil

    from medseg.io import read_volume, write_volume
    from medseg.training.fold_layout import fold_dir
    from medseg.volume import Volume

    shutil.rmtree(folder, ignore_errors=True)  # nothing of an earlier choice is scored again
    folder.mkdir(parents=True)
    for cid in sorted(index[0]):
        acc, grid = None, None
        for run, idx in zip(runs, index):
            path = fold_dir(run, idx[cid]) / "validation" / "probabilities" / f"{cid}_probabilities.nii.gz"
            if not path.is_file():
                raise InputNotFoundError(
                    f"{path} is missing: an ensemble needs every run's out-of-fold probabilities",
                    hint=f"run medseg crossval {run} (it predicts what is missing)",
                )
            vol = read_volume(path)
            if acc is not None and vol.array.shape != acc.shape:
                raise MedsegError(f"case {cid}: the runs' probabilities are on different grids")
            acc = vol.array.astype(np.float32) if acc is None else acc + vol.array
            grid = vol
        assert acc is not None and grid is not None
        labels = np.argmax(acc, axis=-1).astype(np.uint8)
        write_volume(Volume(labels, grid.affine, grid.meta), folder / f"{cid}.nii.gz")


def _check_arguments(runs: list[Path], out: Path) -> None:
    """The cheap checks, before any run is evaluated."""
    from medseg.evaluation.oof import _record

    if len(runs) < 2 or len({r.resolve() for r in runs}) != len(runs):
        raise ConfigError("choosing a configuration needs at least two different cross-validation runs")
    splits = []
    for run in runs:
        record = _record(run)  # InputNotFoundError for a folder that is not a cross-validation run
        splits.append({f: sorted(s.get("val", [])) for f, s in record.get("splits", {}).items()})
        if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
            raise ConfigError(
                f"--output {out} is inside the run {run}: the choice would overwrite its records",
                hint="write the choice to its own folder, e.g. beside the runs",
            )
    if (out / "folds.json").is_file():
        raise ConfigError(f"--output {out} is a cross-validation run", hint="choose a new folder")
    if any(s != splits[0] for s in splits[1:]):  # before any (slow) out-of-fold prediction
        raise MedsegError(
            "the runs were trained on different folds, so their Dice cannot be compared",
            hint="train every configuration with medseg train --folds all on the same dataset (same "
            "data.folds and training.seed)",
        )


def _check_runs(runs: list[Path]) -> list[dict[str, int]]:
    """The case -> fold map of every run, which must agree (the same folds: the Dice are paired
    and every run's models count alike)."""
    from medseg.evaluation.oof import run_labels

    index = [_oof_index(r) for r in runs]
    if any(i != index[0] for i in index[1:]):
        raise MedsegError(
            "the runs' out-of-fold predictions come from different folds, so their Dice cannot be compared",
            hint="train every configuration with medseg train --folds all on the same dataset (same "
            "data.folds and training.seed), and finish every fold",
        )
    if any(run_labels(r) != run_labels(runs[0]) for r in runs[1:]):
        raise MedsegError("the runs predict different labels: they are not configurations of one dataset")
    return index


def choose_configuration(
    runs: Sequence[str | Path],
    output: str | Path,
    device: str = "auto",
    ensembles: bool = True,
    min_gain: float | None = None,
) -> ConfigurationChoice:
    """Choose the best of several cross-validation runs of one dataset, or an ensemble of them.

    Args:
        runs: Run folders made by ``medseg train --folds`` on the same folds (e.g. the 3D and the
            2D configuration of one plan).
        output: Folder for ``configuration.json``, ``postprocessing.json`` and each ensemble's
            OOF label maps and evaluation (``ensembles/<names>/``).
        device: For OOF predictions still to make.
        ensembles: Also score the ensembles (not for region models: their sigmoids are not averaged
            here).
        min_gain: The post-processing margin (as ``medseg crossval``).

    Returns:
        The :class:`ConfigurationChoice`.

    Raises:
        ConfigError: fewer than two runs.
        InputNotFoundError: a folder that is not a cross-validation run.
        MedsegError: runs whose OOF cases or labels differ.
    """
    from medseg.evaluation.crossval import _dice_table, cross_validate
    from medseg.evaluation.oof import run_labels
    from medseg.evaluation.workflow import evaluate

    paths = [Path(r) for r in runs]
    out = Path(output)
    _check_arguments(paths, out)
    cvs = [cross_validate(r, device=device, report=False, min_gain=min_gain) for r in paths]
    index = _check_runs(paths)
    shown = dict(zip(paths, _display_names(paths)))
    candidates = [Candidate([r], cv.pooled, [shown[r]]) for r, cv in zip(paths, cvs)]
    cases = sorted(index[0])
    if ensembles and any(_is_region_run(r) for r in paths):
        log.info("region models: ensembles of configurations are not scored")
        ensembles = False
    for size in range(2, len(paths) + 1) if ensembles else []:
        for combo in itertools.combinations(range(len(paths)), size):
            members = [paths[i] for i in combo]
            folder = _ensemble_folder(out, combo)
            _ensemble_oof(members, [index[i] for i in combo], folder / "oof")
            result = evaluate(
                folder / "oof",
                paths[0] / "references",
                labels=run_labels(paths[0]),
                output=folder / "evaluation",
            )
            candidates.append(Candidate(members, _dice_table(result, cases), [shown[r] for r in members]))
    best = max(c.mean for c in candidates)
    chosen = min((c for c in candidates if c.mean >= best - TIE), key=lambda c: len(c.runs))
    choice = ConfigurationChoice(candidates, chosen, out)
    members = tuple(paths.index(r) for r in chosen.runs)
    choice.postprocessing = _chosen_postprocessing(
        chosen, out, _ensemble_folder(out, members) / "oof", min_gain
    )
    write_text_atomic(out / CHOICE_FILE, json.dumps(choice.to_dict(), indent=2))
    log.info("configuration chosen by cross-validation: %s (mean Dice %.4f)", chosen.name, chosen.mean)
    return choice


def _ensemble_folder(out: Path, members: tuple[int, ...]) -> Path:
    """``OUT/ensembles/runs_1+2``: the runs of an ensemble numbered (from 1) in argument order."""
    return out / "ensembles" / ("runs_" + "+".join(str(i + 1) for i in members))


def _chosen_postprocessing(chosen: Candidate, out: Path, oof: Path, min_gain: float | None) -> dict[str, Any]:
    """The winner's post-processing: a run's own choice, else chosen on the ensemble's OOF labels
    in ``oof`` (``OUT/postprocessing.json``, read by ``medseg predict -m OUT``)."""
    from medseg.evaluation.labelmaps import read_labels
    from medseg.evaluation.oof import run_labels
    from medseg.inference.ensemble import POSTPROCESSING_FILE
    from medseg.inference.postprocess_selection import MIN_GAIN, select_postprocessing

    if len(chosen.runs) == 1:
        text = (chosen.runs[0] / POSTPROCESSING_FILE).read_text(encoding="utf-8")
    else:
        refs = chosen.runs[0] / "references"

        def pairs():
            for path in sorted(oof.glob("*.nii.gz")):
                ref = read_labels(refs / path.name)
                yield read_labels(path).array, ref.array, ref.spacing

        gain = MIN_GAIN if min_gain is None else float(min_gain)
        text = json.dumps(select_postprocessing(pairs(), run_labels(chosen.runs[0]), min_gain=gain).to_dict())
    write_text_atomic(out / POSTPROCESSING_FILE, text)
    return json.loads(text)
