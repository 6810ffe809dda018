"""Fold ensembles: the mean of several models' probabilities, on each scan's own grid.

:class:`EnsemblePredictor` has :class:`~medseg.inference.predictor.Predictor`'s interface
(``prepare``, ``infer``, ``finish``, ``predict``), so ``medseg predict`` and
:func:`~medseg.inference.batch.predict_folder` take either. Each fold's model predicts the scan
with its own preprocessing plan (folds fingerprint their own training cases, so their grids may
differ); its probabilities (softmax, or the sigmoid of each region for a region model) are mapped
back onto the source grid (linear interpolation, background 1 outside the crop, as
``Predictor.finish`` does) and added, class by class, into one accumulator ``[X, Y, Z, K]``: the
memory is that accumulator, one fold's output on its grid and one class on the source grid, not k
copies. The labels are the arg-max of the mean (softmax), or each region's mean sigmoid > 0.5
painted in order (regions). So an ensemble of one fold can differ from that fold's own
prediction, which takes the arg-max on the network's grid, at a few boundary voxels.

With the dense CRF on, each fold's marginals are refined before they are averaged. The
post-processing recorded by cross-validation (``RUN/postprocessing.json``) is applied unless
other options are passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import ConfigError, InputNotFoundError, MedsegError
from medseg.inference.choice_record import POSTPROCESSING_FILE, recorded_postprocessing  # noqa: F401
from medseg.inference.postprocess import PostprocessOptions, postprocess
from medseg.inference.predictor import (
    Prediction,
    Predictor,
    PreparedCase,
    prediction_record,
    source_grid_labels,
)
from medseg.volume import Volume

log = logging.getLogger(__name__)


class EnsemblePredictor:
    """Several predictors whose probabilities are averaged on the source grid (module doc).

    Args:
        predictors: One :class:`Predictor` per model (fold), all with the same labels, regions and
            input channels.
        folds: The fold number of each predictor (for the record).
        name: How the ensemble is named in the record.
        postprocessing: Applied by :meth:`finish` when it is given none (the choice cross-validation
            recorded; kept as ``recorded_postprocessing``, None when there is none).
        weights: The weight of each predictor in the mean (default equal; they are normalised to sum
            to 1), e.g. 1 / (folds of its run) for a chosen ensemble of runs.

    Raises:
        ConfigError: no predictor, or predictors that disagree on labels, regions or channels.
    """

    def __init__(
        self,
        predictors: Sequence[Predictor],
        folds: Sequence[int] | None = None,
        name: str | None = None,
        postprocessing: PostprocessOptions | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not predictors:
            raise ConfigError("an ensemble needs at least one model")
        self.predictors = list(predictors)
        raw = [1.0] * len(self.predictors) if weights is None else [float(w) for w in weights]
        if len(raw) != len(self.predictors) or min(raw) <= 0:
            raise ConfigError("an ensemble needs one positive weight per model")
        self.weights = [w / sum(raw) for w in raw]
        self.folds = list(folds) if folds is not None else list(range(len(self.predictors)))
        first = self.predictors[0]
        for p in self.predictors[1:]:
            regions = [r.model_dump() for r in p.regions or []]
            if p.plan.labels != first.plan.labels or regions != [r.model_dump() for r in first.regions or []]:
                raise ConfigError("the models of the ensemble predict different labels or regions")
            if p.plan.n_channels != first.plan.n_channels or p.channel_names != first.channel_names:
                raise ConfigError("the models of the ensemble take different input channels")
        self.plan = first.plan
        self.regions = first.regions
        self.channel_names = first.channel_names
        self.max_label = first.max_label
        self.recorded_postprocessing = postprocessing
        self.model_name = name or f"ensemble of {len(self.predictors)} models"
        plan0 = first.plan.to_json()
        self._same_plan = [p.plan.to_json() == plan0 for p in self.predictors]

    @classmethod
    def from_run(
        cls,
        path: str | Path,
        folds: str | int | Sequence[int] | None = None,
        device: str = "auto",
        checkpoint: str = "best",
        **overrides: Any,
    ) -> EnsemblePredictor:
        """The ensemble of a cross-validation run (``medseg train --folds``).

        Args:
            path: The run folder (it holds folds.json).
            folds: ``"0,2"``, fold numbers, or None/``"all"`` for every fold trained.
            device, checkpoint, overrides: As :meth:`Predictor.from_run`, for every fold.

        Raises:
            InputNotFoundError: ``path`` is not a cross-validation run.
            MedsegError: a chosen fold without a checkpoint.
            ConfigError: folds out of range.
        """
        from medseg.training.fold_layout import fold_dir, fold_state, parse_folds, read_folds

        run = Path(path)
        record = read_folds(run)
        if record is None:
            raise InputNotFoundError(
                f"{run} is not a cross-validation run (no folds.json)", hint="train it with --folds"
            )
        k = int(record["k"])
        chosen = (
            parse_folds(folds, k) if folds not in (None, "all") else sorted(int(f) for f in record["folds"])
        )
        states = {f: fold_state(fold_dir(run, f)) for f in chosen}
        missing = [f for f in chosen if not _has_checkpoint(fold_dir(run, f))]
        if missing:
            raise MedsegError(
                f"fold(s) {missing} of {run} have no checkpoint",
                hint="finish them (medseg train --folds ... --resume) or pick trained folds with --folds",
            )
        partial = [f for f, s in states.items() if s.status == "partial"]
        if partial:
            log.warning(
                "fold(s) %s of %s have not finished training: their last checkpoints are used", partial, run
            )
        predictors = [Predictor.from_run(fold_dir(run, f), device, checkpoint, **overrides) for f in chosen]
        name = f"ensemble of folds {','.join(map(str, chosen))} ({run.resolve().name})"
        return cls(predictors, chosen, name, recorded_postprocessing(run))

    @classmethod
    def from_choice(
        cls, path: str | Path, device: str = "auto", checkpoint: str = "best", **overrides: Any
    ) -> EnsemblePredictor:
        """The configuration cross-validation chose (``configuration.json``, written by
        :func:`~medseg.evaluation.configuration_choice.choose_configuration`): every trained fold
        of every chosen run, each run weighing the same (as the out-of-fold ensemble it was chosen
        by), with the post-processing chosen for it.

        Raises:
            InputNotFoundError: no configuration.json, or a chosen run that is gone.
            CorruptFileError: a damaged configuration.json.
        """
        from medseg.inference.choice_record import read_choice

        folder = Path(path)
        record = read_choice(folder)
        if record is None:
            raise InputNotFoundError(f"{folder} holds no configuration.json")
        predictors: list[Predictor] = []
        folds: list[int] = []
        weights: list[float] = []
        for run in record["chosen"]["runs"]:
            if not Path(run).is_dir():
                raise InputNotFoundError(
                    f"the chosen run {run} is gone", hint="keep the runs beside the choice, or choose again"
                )
            member = cls.from_run(run, None, device, checkpoint, **overrides)
            predictors += member.predictors
            folds += member.folds
            weights += [1.0 / len(member.predictors)] * len(member.predictors)
        name = f"{record['chosen']['name']} (chosen by cross-validation)"
        return cls(predictors, folds, name, recorded_postprocessing(folder), weights)

    # -- the Predictor interface ------------------------------------------------------------
    @property
    def runner(self) -> list[Any]:
        """Every model's runner (built on first use, as :attr:`Predictor.runner`)."""
        return [p.runner for p in self.predictors]

    @property
    def tta(self) -> bool:
        return self.predictors[0].tta

    def prepare(self, image: Volume) -> PreparedCase:
        """Check ``image`` and preprocess it for the first model (:meth:`Predictor.prepare`)."""
        return self.predictors[0].prepare(image)

    def _prepared_for(self, i: int, prepared: PreparedCase) -> PreparedCase:
        """The input of model ``i``: the first model's when their plans agree, else its own, with
        the channels that were blanked for the first (a missing channel as zeros) blanked too."""
        if self._same_plan[i]:
            return PreparedCase(prepared.image, prepared.case)
        own = self.predictors[i].prepare(prepared.image)
        blank = [c for c in range(prepared.case.image.shape[0]) if not prepared.case.image[c].any()]
        if blank:
            image = own.case.image.copy()
            image[blank] = 0.0
            own.case = replace(own.case, image=image)
        return own

    def infer(
        self, prepared: PreparedCase, probabilities: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run every model and average their probabilities on the source grid.

        Returns:
            Labels ``[X, Y, Z]`` on the *source* grid (unlike :meth:`Predictor.infer`), and the mean
            probabilities ``[X, Y, Z, K]`` float32 when ``probabilities``, else None.

        Raises:
            MedsegError: as :meth:`Predictor.infer`.
        """
        t0 = time.monotonic()
        acc: np.ndarray | None = None
        for i, predictor in enumerate(self.predictors):
            own = prepared if i == 0 else self._prepared_for(i, prepared)
            _, probs = predictor.infer(own, probabilities=True)
            own.softmax = None  # the folds are averaged on the source grid below, not through it
            assert probs is not None
            acc = _add_on_source_grid(predictor, own, probs, acc, self.weights[i])
            if i:
                prepared.seconds += own.seconds
        assert acc is not None
        labels = self._decide(acc)
        log.debug("ensemble of %d models in %.2f s", len(self.predictors), time.monotonic() - t0)
        return torch.from_numpy(labels), (torch.from_numpy(acc) if probabilities else None)

    def _decide(self, mean: np.ndarray) -> np.ndarray:
        dtype = np.uint8 if self.max_label < 256 else np.uint16
        if self.regions:
            from medseg.data.regions import paint

            return paint(np.moveaxis(mean, -1, 0) > 0.5, self.regions, dtype=dtype)
        return mean.argmax(-1).astype(dtype)

    def finish(
        self,
        prepared: PreparedCase,
        labels: torch.Tensor,
        probabilities: torch.Tensor | None = None,
        postprocessing: PostprocessOptions | None = None,
    ) -> Prediction:
        """Post-process the ensemble's labels (on the source grid already) and attach the record.

        Args:
            postprocessing: The options; None applies the recorded choice (``recorded_postprocessing``).
        """
        t0 = time.monotonic()
        image = prepared.image
        options = postprocessing or self.recorded_postprocessing or PostprocessOptions()
        arr = postprocess(labels.numpy(), image.spacing, options)
        out = source_grid_labels(arr, image)
        prob_vol = Volume(probabilities.numpy(), image.affine.copy()) if probabilities is not None else None
        prepared.seconds += time.monotonic() - t0
        info = prediction_record(
            self.predictors[0],
            self.model_name,
            options,
            prepared,
            folds=self.folds,
            ensemble="mean of the models' probabilities on the source grid",
        )
        out.meta.extra["medseg_prediction"] = info
        return Prediction(out, prob_vol, info)

    def predict(
        self, image: Volume, probabilities: bool = False, postprocessing: PostprocessOptions | None = None
    ) -> Prediction:
        """:meth:`prepare`, :meth:`infer` and :meth:`finish` in turn (``postprocessing`` None: the
        recorded choice; ``PostprocessOptions()`` for none)."""
        prepared = self.prepare(image)
        labels, probs = self.infer(prepared, probabilities)
        return self.finish(prepared, labels, probs, postprocessing)


def _has_checkpoint(folder: Path) -> bool:
    return any((folder / "checkpoints" / name).is_file() for name in ("best.pt", "last.pt"))


def _add_on_source_grid(
    predictor: Predictor, prepared: PreparedCase, probs: torch.Tensor, acc: np.ndarray | None, weight: float
) -> np.ndarray:
    """``acc + weight * probs`` mapped onto the source grid, class by class (``probs`` ``[K, *S]``
    on the network's grid; ``acc`` ``[X, Y, Z, K]``, made on the first call)."""
    record = prepared.case.record
    device = predictor.device if predictor.device.type == "cuda" else None
    arr = probs.numpy()
    for k in range(arr.shape[0]):
        soft = predictor.plan.invert(arr[k], record, order=1, fill=0.0, device=device).array
        if acc is None:
            acc = np.zeros((*soft.shape, arr.shape[0]), dtype=np.float32)
        if k == 0 and not predictor.regions:  # voxels cropped away are background
            outside = np.ones(soft.shape, dtype=bool)
            outside[predictor.plan.source_crop_box(record)] = False
            soft = np.where(outside, 1.0, soft)
        acc[..., k] += weight * soft.astype(np.float32)
    assert acc is not None
    return acc


def load_predictor(
    model: str | Path,
    folds: str | Sequence[int] | None = None,
    device: str = "auto",
    checkpoint: str = "best",
    **overrides: Any,
) -> Predictor | EnsemblePredictor:
    """The predictor of a run folder or checkpoint: an :class:`EnsemblePredictor` for a
    cross-validation run (every trained fold, or ``folds``) or for the folder of a configuration
    chosen by cross-validation (``configuration.json``), else a :class:`Predictor`.

    Raises:
        ConfigError: ``folds`` given for a model that is not a cross-validation run.
        MedsegError: as :meth:`Predictor.from_run` and :meth:`EnsemblePredictor.from_run`.
    """
    from medseg.inference.choice_record import CHOICE_FILE
    from medseg.training.fold_layout import is_fold_run

    if Path(model).is_dir() and (Path(model) / CHOICE_FILE).is_file():
        if folds is not None:
            raise ConfigError(
                "--folds picks folds of one cross-validation run, not of a chosen configuration",
                hint=f"leave out --folds, or predict with one of the runs {model}/{CHOICE_FILE} names",
            )
        return EnsemblePredictor.from_choice(model, device, checkpoint, **overrides)
    if Path(model).is_dir() and is_fold_run(model):
        return EnsemblePredictor.from_run(model, folds, device, checkpoint, **overrides)
    if folds is not None:
        raise ConfigError(
            f"--folds needs a cross-validation run (trained with --folds), but {model} is a single model",
            hint="leave out --folds",
        )
    return Predictor.from_run(model, device=device, checkpoint=checkpoint, **overrides)
