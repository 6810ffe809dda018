"""Post-processing chosen on a single run's validation cases, once training is done.

A run trained with ``--folds`` chooses its post-processing on out-of-fold predictions
(:func:`medseg.evaluation.oof.choose_run_postprocessing`). A single run has its validation split
instead: with ``training.choose_postprocessing`` (planned by ``medseg plan``) the trainer predicts
those cases with the checkpoint ``medseg predict`` uses, and
:func:`~medseg.inference.postprocess_selection.select_postprocessing` decides per class whether
keeping the largest component or removing components under a size improves their mean Dice by the
required margin (nnU-Net's post-processing rule, Isensee et al., Nature Methods 2021). The choice
goes to ``RUN/postprocessing.json``, which ``medseg predict -m RUN`` applies. The best checkpoint was
selected on the same cases, so the figures before and after are slightly optimistic.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Fewer validation cases than this choose nothing: one or two cases are too few to decide on.
MIN_CASES = 3


def choose_validation_postprocessing(
    run_dir: str | Path, data_root: str | None = None, device: str = "auto", checkpoint: str = "best"
) -> Any:
    """Predict the run's validation cases and record the post-processing that helps them.

    Args:
        run_dir: A single (not cross-validation) run folder with ``config.yaml``, ``splits.json``
            and its checkpoints.
        data_root: Folder relative manifest paths start from (as the run was trained with).
        device: Where to predict.
        checkpoint: Which checkpoint predicts (``best``, as ``medseg predict``).

    Returns:
        The :class:`~medseg.inference.postprocess_selection.PostprocessSelection`, or None when the
        run has fewer than :data:`MIN_CASES` validation cases (nothing is written then, and an
        earlier choice, made for an earlier checkpoint, is removed).

    Raises:
        MedsegError: a validation case that is no longer in the manifest or no longer reads, or
            no checkpoint.
    """
    from medseg.config import load_pipeline
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest
    from medseg.errors import MedsegError
    from medseg.inference.choice_record import POSTPROCESSING_FILE
    from medseg.inference.postprocess import PostprocessOptions
    from medseg.inference.postprocess_selection import select_postprocessing
    from medseg.inference.predictor import Predictor
    from medseg.io.atomic import write_text_atomic
    from medseg.progress import track

    run = Path(run_dir)
    config = load_pipeline(run / "config.yaml")
    val = [str(c) for c in json.loads((run / "splits.json").read_text(encoding="utf-8"))["val"]]
    if len(val) < MIN_CASES:
        (run / POSTPROCESSING_FILE).unlink(missing_ok=True)
        log.info("%d validation case(s), under %d: no post-processing chosen", len(val), MIN_CASES)
        return None
    manifest = load_manifest(config.data.manifest, data_root or config.data.data_root)
    by_id = {c.id: c for c in manifest.cases}
    gone = [cid for cid in val if cid not in by_id]
    if gone:
        raise MedsegError(
            f"validation case(s) {', '.join(gone[:5])} of {run} are no longer in {config.data.manifest}",
            hint="restore the manifest the run was trained with",
        )
    predictor = Predictor.from_run(run, device=device, checkpoint=checkpoint)
    t0 = time.monotonic()
    if config.regions:
        labels = {int(r.value): r.name for r in config.regions}
    else:
        labels = {int(k): str(v) for k, v in predictor.plan.labels.items() if int(k) != 0}

    def pairs():
        for cid in track(val, "choosing post-processing on the validation cases"):
            case = load_case(by_id[cid], manifest)
            assert case.label is not None
            prediction = predictor.predict(case.image, postprocessing=PostprocessOptions())  # raw
            yield prediction.labels.array, case.label.array, case.image.spacing

    selection = select_postprocessing(pairs(), labels)
    selection.extra = {"chosen_on": "validation cases", "n_cases": len(val), "checkpoint": checkpoint}
    write_text_atomic(run / POSTPROCESSING_FILE, json.dumps(selection.to_dict(), indent=2))
    chosen = [
        f"{c.name}: "
        + ("keep the largest component" if c.chosen.keep_largest else "")
        + (f" drop components under {c.chosen.min_size_mm3:g} mm3" if c.chosen.min_size_mm3 else "")
        + f" (Dice {c.dice_before:.4f} -> {c.dice_after:.4f})"
        for c in selection.classes.values()
        if c.chosen.active
    ]
    log.info(
        "post-processing chosen on %d validation case(s) in %.0f s: %s",
        len(val),
        time.monotonic() - t0,
        "; ".join(chosen) or "none",
    )
    return selection


def choose_after_training(run_dir: str | Path, fold: int | None, data_root: str | None, device: str) -> None:
    """The trainer's last step with ``training.choose_postprocessing``: the choice for a single
    run (a fold of a cross-validation run chooses out-of-fold, with the other folds). A failure
    leaves the trained run as it is, without a choice made for an earlier checkpoint, and warns."""
    from medseg.inference.choice_record import POSTPROCESSING_FILE
    from medseg.training.fold_layout import is_fold_run

    run = Path(run_dir)
    if fold is not None or is_fold_run(run.parent):
        return
    try:
        choose_validation_postprocessing(run, data_root, device)
    except Exception as exc:
        (run / POSTPROCESSING_FILE).unlink(missing_ok=True)
        log.warning(
            "post-processing not chosen (%s); predictions are not post-processed unless asked "
            "(medseg predict --keep-largest / --min-size)",
            str(exc).splitlines()[0][:200],
        )
