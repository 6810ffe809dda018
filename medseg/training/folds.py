"""k-fold cross-validation into one run folder: :func:`train_folds`.

Layout of a cross-validation run ``RUN``::

    RUN/folds.json          k, the folds asked for, the split of every fold
    RUN/config.yaml         the resolved pipeline (what --resume reads)
    RUN/fold_0/ ...         one normal run folder per fold (config, plan, splits, checkpoints...)
    RUN/fold_0/validation/  out-of-fold predictions of the fold's validation cases on their own
                            grids: <case>.nii.gz (labels), probabilities/<case>_probabilities.nii.gz
                            ([X, Y, Z, K] float32) and, written last, oof.json
    RUN/references/         the reference label maps of those cases (after the manifest's label_map)
    RUN/postprocessing.json the post-processing chosen from the out-of-fold predictions, once every
                            fold is done (:mod:`medseg.inference.postprocess_selection`)

A fold is *finished* when its ``checkpoints/last.pt`` records the last planned epoch
(``epoch + 1 >= training.epochs`` of the config it records) or a spent time budget
(``elapsed_seconds >= training.max_minutes * 60``); the trainer writes ``last.pt`` after every
epoch, so a fold killed mid-way has a ``last.pt`` that is not finished (*partial*) and is resumed
from it. ``training.max_minutes`` is a budget per fold.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.config import PipelineConfig, dump_config
from medseg.errors import ConfigError, MedsegError
from medseg.io.atomic import write_text_atomic
from medseg.training.fold_layout import (  # noqa: F401  (re-exported: the layout of a fold run)
    FOLDS_FILE,
    FORMAT,
    OOF_MARKER,
    FoldState,
    fold_dir,
    fold_state,
    is_fold_run,
    parse_folds,
    read_folds,
)

log = logging.getLogger(__name__)


def _check_run_folder(run: Path, record: dict[str, Any] | None, resume: bool) -> None:
    if (run / "checkpoints" / "last.pt").is_file():
        raise MedsegError(
            f"{run} holds a single training run, not cross-validation folds",
            hint="choose another --output for --folds",
        )
    if record is not None and not resume:
        raise MedsegError(
            f"{run} already holds cross-validation folds",
            hint="pass --resume to continue them (finished folds are skipped), or choose another --output",
        )
    if record is None and resume:
        raise MedsegError(
            f"nothing to resume in {run}: no folds.json", hint="start the folds without --resume"
        )


def _fold_splits(config: PipelineConfig, data_root: str | None) -> dict[int, dict[str, Any]]:
    """The split of every fold, as each fold's trainer will make it (:func:`~.setup.choose_split`)."""
    from medseg.data.manifest import load_manifest
    from medseg.training.setup import choose_split

    manifest = load_manifest(config.data.manifest, data_root or config.data.data_root)
    k = config.data.folds
    return {f: choose_split(manifest, config, f, config.training.seed) for f in range(k)}


def _write_record(run: Path, config: PipelineConfig, folds: list[int], splits: dict[int, dict]) -> None:
    record = {
        "format": FORMAT,
        "k": config.data.folds,
        "folds": folds,
        "seed": config.training.seed,
        "splits": {str(f): {"train": s["train"], "val": s["val"]} for f, s in splits.items()},
        "budget_minutes_per_fold": config.training.max_minutes,
    }
    write_text_atomic(run / FOLDS_FILE, json.dumps(record, indent=2))


def _last_metrics(folder: Path) -> dict[str, str]:
    path = folder / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: v for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


def train_folds(
    config: PipelineConfig,
    run_dir: str | Path,
    folds: str | int | Sequence[int] | None = "all",
    data_root: str | None = None,
    device: str = "auto",
    resume: bool = False,
) -> dict[str, Any]:
    """Train folds of ``config.data.folds``-fold cross-validation into one run folder.

    Each fold is a normal run in ``RUN/fold_<k>`` (:class:`~medseg.training.trainer.Trainer` with
    ``fold=k``); after it, its model predicts its validation cases (out-of-fold, probabilities
    kept) into ``RUN/fold_<k>/validation``. Once every fold is done, the post-processing is chosen
    from the out-of-fold predictions into ``RUN/postprocessing.json``. Layout in the module doc.

    Args:
        config: The pipeline (``data.folds`` gives k; ``training.max_minutes`` is per fold).
        run_dir: The cross-validation run folder.
        folds: ``"all"``, ``"0,2"`` or fold numbers.
        data_root: Folder relative manifest paths start from.
        device: ``auto``, ``cpu`` or ``cuda``.
        resume: Continue: finished folds are skipped (their missing out-of-fold predictions made),
            a partial fold resumes from its last.pt, the others start.

    Returns:
        ``{"run_dir", "k", "folds": {fold: {"status", "metrics"}}, "postprocessing"}``: status
        ``trained`` or ``skipped`` (finished earlier); metrics: the fold's last metrics.csv row;
        postprocessing: the content of postprocessing.json, or None while folds are missing.

    Raises:
        MedsegError: ``run_dir`` holds a single run, or folds without ``resume``; nothing to resume.
        ConfigError: folds out of range; on resume, a dataset whose folds changed.
    """
    from medseg.training.trainer import Trainer

    run = Path(run_dir)
    k = config.data.folds
    wanted = parse_folds(folds, k)
    record = read_folds(run)
    _check_run_folder(run, record, resume)
    splits = _fold_splits(config, data_root)
    if record is not None:
        if int(record["k"]) != k or any(
            record["splits"].get(str(f), {}).get("val") != s["val"] for f, s in splits.items()
        ):
            raise ConfigError(
                f"the folds of {run} were made from other cases, other patient groups or another data.folds",
                hint="train into a new --output (the folds of a run cannot change)",
            )
        wanted_all = sorted(set(int(f) for f in record["folds"]) | set(wanted))
    else:
        wanted_all = wanted
    main = int(os.environ.get("RANK", "0")) == 0
    top = config.model_copy(deep=True)
    if data_root:
        top.data.data_root = str(Path(data_root).resolve())
    if main:
        run.mkdir(parents=True, exist_ok=True)
        _write_record(run, top, wanted_all, splits)
        write_text_atomic(run / "config.yaml", dump_config(top))
    out: dict[str, Any] = {"run_dir": str(run), "k": k, "folds": {}, "postprocessing": None}
    for f in wanted:
        folder = fold_dir(run, f)
        state = fold_state(folder)
        if state.finished:
            log.info("fold %d of %d: finished earlier (epoch %d), skipped", f, k, state.epoch + 1)
            status = "skipped"
        else:
            log.info("fold %d of %d: %s", f, k, "resuming" if state.status == "partial" else "training")
            trainer = Trainer(
                config.model_copy(deep=True),
                folder,
                data_root=data_root,
                fold=f,
                device=device,
                resume=state.status == "partial",
            )
            trainer.fit()
            status = "trained"
        if main and not (folder / "validation" / OOF_MARKER).is_file():
            predict_out_of_fold(run, f, device=device)
        out["folds"][f] = {"status": status, "metrics": _last_metrics(folder)}
    if main and all(fold_state(fold_dir(run, f)).finished for f in range(k)):
        from medseg.evaluation.oof import choose_run_postprocessing

        out["postprocessing"] = choose_run_postprocessing(run).to_dict()
    return out


def predict_out_of_fold(
    run_dir: str | Path, fold: int, device: str = "auto", checkpoint: str = "best"
) -> Path:
    """Predict fold ``fold``'s validation cases with its own model into ``RUN/fold_<k>/validation``.

    Labels ``<case>.nii.gz`` and probabilities ``probabilities/<case>_probabilities.nii.gz``
    (``[X, Y, Z, K]``, softmax or region sigmoids) on each case's source grid, with no
    post-processing; the references go to ``RUN/references/<case>.nii.gz``; ``oof.json`` is
    written last. Cases already predicted are kept (resumable). The checkpoint is the one
    ``medseg predict`` uses by default (``best``); it was selected on these same cases, so the
    out-of-fold Dice is slightly optimistic (``"last"`` avoids that).

    Returns:
        The validation folder.

    Raises:
        MedsegError: the fold has no checkpoint, or its data cannot be read any more.
    """
    from medseg.config import load_pipeline
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest
    from medseg.inference.postprocess import PostprocessOptions
    from medseg.inference.predictor import Predictor
    from medseg.io import write_volume
    from medseg.progress import track

    run, folder = Path(run_dir), fold_dir(run_dir, fold)
    out = folder / "validation"
    config = load_pipeline(folder / "config.yaml")
    split = json.loads((folder / "splits.json").read_text(encoding="utf-8"))
    manifest = load_manifest(config.data.manifest, config.data.data_root)
    by_id = {c.id: c for c in manifest.cases}
    predictor = Predictor.from_run(folder, device=device, checkpoint=checkpoint)
    for cid in track(split["val"], f"out-of-fold predictions of fold {fold}"):
        target = out / f"{cid}.nii.gz"
        ref_path = run / "references" / f"{cid}.nii.gz"
        prob_path = out / "probabilities" / f"{cid}_probabilities.nii.gz"
        if target.is_file() and ref_path.is_file() and prob_path.is_file():
            continue
        case = load_case(by_id[cid], manifest)
        prediction = predictor.predict(case.image, probabilities=True, postprocessing=PostprocessOptions())
        assert case.label is not None and prediction.probabilities is not None
        write_volume(case.label, ref_path)
        write_volume(prediction.probabilities, prob_path)
        write_volume(prediction.labels, target)  # last: the case is complete once it exists
    state = fold_state(folder)
    marker = {"fold": fold, "checkpoint": checkpoint, "epoch": state.epoch + 1, "cases": split["val"]}
    write_text_atomic(out / OOF_MARKER, json.dumps(marker, indent=2))
    return out
