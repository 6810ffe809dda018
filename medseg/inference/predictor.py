"""Predict one scan with a trained model and map the mask back onto the scan's own grid.

A model trained on regions (``regions`` of the pipeline, recorded in its checkpoint) has one
sigmoid output per region: each region is thresholded at 0.5 and the masks are painted into a
label map in the declared order (:func:`medseg.data.regions.paint`, as nnU-Net's
``regions_class_order``); its probabilities are the sigmoid of each region.

Without probabilities, 3D prediction keeps memory bounded for both kinds of model: the blended
outputs are held one window deep along the last axis and turned into labels slab by slab
(:func:`~medseg.inference.sliding_window.sliding_window_labels`); asking for probabilities holds
the whole ``[K, *S]`` output, as does the dense CRF (:mod:`medseg.inference.crf`), which refines
the softmax on the network's grid before the arg-max (softmax models only).

A scan the plan resampled goes back to its own grid through its softmax (nnU-Net's export), when
the logits and softmax fit in memory; otherwise, and for region models, its labels go back by
nearest neighbour, with the memory of labels-only prediction (:mod:`medseg.inference.inversion`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config.schema import RegionConfig
from medseg.data.regions import paint
from medseg.device import resolve_device
from medseg.errors import ConfigError, InputNotFoundError, MedsegError
from medseg.inference.choice_record import recorded_postprocessing
from medseg.inference.crf import CRFOptions, dense_crf, run_crf_options
from medseg.inference.inversion import keeps_softmax, source_labels, source_probabilities
from medseg.inference.postprocess import PostprocessOptions, postprocess
from medseg.inference.prediction import (
    Prediction,
    PreparedCase,
    prediction_record,
    source_grid_labels,
)
from medseg.inference.sliding_window import (
    accumulation_device,
    argmax_decision,
    region_decision,
    sliding_window_inference,
    sliding_window_labels,
)
from medseg.inference.tta import MirrorTTA
from medseg.io.formats import is_2d_source
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume

log = logging.getLogger(__name__)


def trained_flip_axes(config: dict[str, Any], n_axes: int) -> list[int]:
    """The patch axes a run flipped in training augmentation (none when flips were off)."""
    aug = config.get("augmentation") or {}
    if not aug.get("enabled", True) or float(aug.get("flip_p", 0.5)) <= 0:
        return []
    axes = aug.get("flip_axes")
    return list(range(n_axes)) if axes is None else sorted({int(a) for a in axes if 0 <= int(a) < n_axes})


def _find_checkpoint(path: Path, which: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in (f"{which}.pt", "best.pt", "last.pt"):
            for candidate in (path / "checkpoints" / name, path / name):
                if candidate.is_file():
                    return candidate
        if (path / "folds.json").is_file():  # a cross-validation run (train --folds)
            raise InputNotFoundError(
                f"{path} holds cross-validation folds, not one model",
                hint="use medseg.inference.ensemble.EnsemblePredictor.from_run (as medseg predict does), "
                "or one fold's folder (fold_0)",
            )
        raise InputNotFoundError(
            f"no checkpoint in {path}", hint="give a run folder made by 'medseg train' or a checkpoint file"
        )
    raise InputNotFoundError(f"no such model: {path}", hint="give a run folder or a checkpoint (.pt)")


class Predictor:
    """A trained model with the preprocessing it was trained with.

    Args:
        model: The network (eval mode is set here).
        plan: The preprocessing plan recorded with the model.
        patch_size: Sliding-window size (the training patch size).
        device: Where the network runs.
        slice_axis: For 2D models on 3D scans, the axis slices are taken along.
        overlap, batch_size, tta, amp: Sliding-window settings.
        tta_axes: The patch axes mirror TTA flips (default: all). A model should only be
            mirrored along axes it saw flipped in training; :meth:`from_run` takes them from
            the recorded augmentation.
        backend: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``
            (:data:`~medseg.inference.backends.BACKENDS`).
        precision: ``auto``, ``fp32``, ``bf16`` or ``int8``; ``amp=True`` asks for ``bf16``.
        export_dir: Where ONNX exports are cached (a run folder's ``export/``).
        calibration: For int8: yields float32 training patches ``[n, C, *patch]``.
        regions: For a model trained on regions: its regions, in output-channel and paint order.
        crf: Refine the softmax with a dense CRF before the arg-max (:func:`~medseg.inference.crf.
            dense_crf`, on the network's grid); ``None``: off.

    Raises:
        ConfigError: an unknown backend or precision, or a pair that cannot run on ``device``;
            a CRF asked of a region (sigmoid) model.
        MissingDependencyError: the backend's package is not installed.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        plan: Plan,
        patch_size: Sequence[int],
        device: torch.device | str = "cpu",
        slice_axis: int | None = None,
        overlap: float = 0.5,
        batch_size: int = 2,
        tta: bool = False,
        amp: bool = False,
        model_name: str | None = None,
        tta_axes: Sequence[int] | None = None,
        backend: str = "auto",
        precision: str = "auto",
        export_dir: str | Path | None = None,
        calibration: Callable[[], Any] | None = None,
        regions: Sequence[RegionConfig] | None = None,
        crf: CRFOptions | None = None,
    ) -> None:
        from medseg.inference.backends import resolve_backend

        if crf is not None and regions:
            raise ConfigError(
                "the dense CRF refines softmax classes, but this model was trained on regions (sigmoids)",
                hint="predict without --crf (or set postprocessing.crf.enabled: false)",
            )
        self.crf = crf

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if amp and precision == "auto":
            precision = "bf16"
        self.backend, self.precision = resolve_backend(backend, precision, self.device)
        self._auto_backend = backend == "auto"
        self._runner_error: MedsegError | None = None
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.calibration = calibration
        self._runner: Any = None
        self.plan = plan
        self.patch_size = [int(p) for p in patch_size]
        self.slice_axis = slice_axis
        self.overlap = overlap
        self.batch_size = batch_size
        self.tta_axes = list(range(len(self.patch_size)) if tta_axes is None else tta_axes)
        self.tta = bool(tta and self.tta_axes)
        self.amp = amp
        self.model_name = model_name or getattr(model, "medseg_config", {}).get("name", "model")
        self.channel_names: list[str] | None = None  # from_run: the names the run recorded
        #: from_run: the post-processing chosen on the run's validation cases (postprocessing.json),
        #: applied by :meth:`finish` when it is given none
        self.recorded_postprocessing: PostprocessOptions | None = None
        self.regions = list(regions) if regions else None
        values = [r.value for r in self.regions] if self.regions else []
        self.max_label = max([*self.plan.labels, *values])

    @classmethod
    def from_run(
        cls, path: str | Path, device: str = "auto", checkpoint: str = "best", **overrides: Any
    ) -> Predictor:
        """Load a run folder (or one checkpoint file): it holds the model config, weights and plan."""
        from medseg.models import build_model
        from medseg.training.checkpoint import load_checkpoint

        dev = resolve_device(device)
        ckpt = _find_checkpoint(Path(path), checkpoint)
        state = load_checkpoint(ckpt, map_location="cpu")
        mc = dict(state["model_config"])
        params = dict(mc.get("params", {}))  # eval mode always returns the full-resolution output
        model = build_model(mc["name"], mc["spatial_dims"], mc["in_channels"], mc["out_channels"], **params)
        try:
            model.load_state_dict(state["model"], strict=True)
        except RuntimeError as exc:
            raise MedsegError(
                f"the weights in {ckpt} do not fit the model they record ({mc['name']}): "
                f"{str(exc).splitlines()[0][:200]}",
                hint="the checkpoint was made by another medseg version or is damaged",
            ) from None
        plan = Plan.from_json(state["plan"])
        cfg = state["config"]
        regions = [RegionConfig.model_validate(r) for r in cfg.get("regions") or []] or None
        if regions and len(regions) != mc["out_channels"]:
            raise MedsegError(
                f"{ckpt} records {len(regions)} regions for a model with {mc['out_channels']} outputs",
                hint="the checkpoint is damaged or was edited; train the model again",
            )
        inference = cfg["inference"]
        crf = run_crf_options(cfg, overrides.pop("crf", None))
        settings = {
            "overlap": inference["overlap"],
            "batch_size": inference["batch_size"],
            "tta": inference["tta"],
            "backend": inference.get("backend", "auto"),  # runs from before these settings: auto
            "precision": inference.get("precision", "auto"),
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        settings["tta_axes"] = trained_flip_axes(cfg, len(cfg["training"]["patch_size"]))
        if settings["tta"] and not settings["tta_axes"]:
            log.warning(
                "mirror TTA is off: the model was trained without flips, and mirrored inputs would mislead it"
            )
        log.info("loaded %s (epoch %d) from %s", mc["name"], int(state["epoch"]) + 1, ckpt)
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        predictor = cls(
            model,
            plan,
            cfg["training"]["patch_size"],
            dev,
            state.get("slice_axis"),
            model_name=f"{mc['name']} ({Path(path).name})",
            export_dir=run_dir / "export",
            calibration=_calibration_source(run_dir, cfg, plan),
            regions=regions,
            crf=crf,
            **settings,
        )
        names = state.get("channels")  # input channel names, in order (runs since they were recorded)
        predictor.channel_names = [str(n) for n in names] if names and len(names) == plan.n_channels else None
        # the post-processing chosen for this run, when it was chosen with this checkpoint
        predictor.recorded_postprocessing = recorded_postprocessing(run_dir, ckpt.stem)
        return predictor

    # -------------------------------------------------------------------------------------------
    @property
    def runner(self) -> Any:
        """The network as the chosen backend runs it (built, and exported if needed, on first use).

        Raises:
            MedsegError: the backend cannot run this model here; raised again on every later
                call without retrying. With ``backend="auto"`` (and no int8), a model the ONNX
                engines cannot reproduce falls back to the torch backend with a warning instead.
        """
        if self._runner is None:
            if self._runner_error is not None:
                raise self._runner_error
            try:
                self._runner = self._build_runner()
            except MedsegError as exc:
                explicit = not self._auto_backend or self.precision.value == "int8"
                if explicit or self.backend.name == "torch":
                    self._runner_error = exc
                    raise
                log.warning("%s: the torch backend is used instead", exc)
                from medseg.inference.backends import BACKENDS, Precision

                self.backend = BACKENDS["torch"]
                self.precision = (
                    self.precision if self.precision in self.backend.precisions else Precision.FP32
                )
                self._runner = self._build_runner()
            self.precision = getattr(self._runner, "precision", self.precision)  # what really runs
            log.info("inference backend: %s, %s", self.backend.name, self.precision.value)
        return self._runner

    def _build_runner(self) -> Any:
        from medseg.inference.backends import BackendRequest, build_runner
        from medseg.inference.backends.onnx_export import weights_digest

        request = BackendRequest(
            model=self.model,
            device=self.device,
            precision=self.precision,
            window=(self.plan.n_channels, *self.patch_size),
            batch_size=self.batch_size * (2 ** len(self.tta_axes) if self.tta else 1),
            cache_dir=self.export_dir,
            model_key=weights_digest(self.model) if self.backend.name != "torch" else "model",
            calibration=self.calibration,
        )
        return build_runner(self.backend, request)

    def _network(self) -> Callable[[torch.Tensor], torch.Tensor]:
        net: Callable[[torch.Tensor], torch.Tensor] = self.runner
        if self.tta:
            # the torch path keeps its memory at batch_size windows per call (mirrored copies in
            # turn); the ONNX engines run one window per request and take every copy at once
            limit = self.batch_size if self.backend.name == "torch" else None
            net = MirrorTTA(net, self.tta_axes, max_windows=limit)
        return net

    @torch.inference_mode()
    def _infer(self, image: torch.Tensor, probabilities: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Labels [*S] (and softmax [C, *S] or region sigmoids [R, *S] if asked) for a case [C, *S]."""
        run = self._network()

        label_dtype = torch.uint8 if self.max_label < 256 else torch.int16
        if self.slice_axis is not None:
            moved = image.movedim(self.slice_axis + 1, 1)
            labs, probs = [], []
            for s in range(moved.shape[1]):
                x = moved[:, s][None]
                logits = sliding_window_inference(
                    x, run, self.patch_size, self.overlap, self.batch_size, stitch_device="cpu"
                )[0]
                lab, prob = self._decide(logits, probabilities, label_dtype)
                labs.append(lab)
                if probabilities:
                    probs.append(prob)
            lab = torch.stack(labs, 0).movedim(0, self.slice_axis)
            prob = torch.stack(probs, 1).movedim(1, self.slice_axis + 1) if probabilities else None
            return lab, prob
        x = image[None]
        if self.device.type == "cuda":  # the scan goes to the GPU once when it fits: windows are cut there
            x = x.to(accumulation_device(4 * x.numel(), self.device))
        if probabilities:  # the probabilities need the whole [K, *S] (or [R, *S]) output
            logits = sliding_window_inference(x, run, self.patch_size, self.overlap, self.batch_size)[0]
            lab, prob = self._decide(logits, probabilities, label_dtype)
            return lab.cpu(), (prob.cpu() if prob is not None else None)
        # labels only: a ring buffer one window deep, decided slab by slab (the same decision as
        # _decide on the full logits: the arg-max, or each region's logit > 0 painted in order)
        decide = region_decision(self.regions, label_dtype) if self.regions else argmax_decision
        return sliding_window_labels(
            x, run, self.patch_size, self.overlap, self.batch_size, label_dtype=label_dtype, decide=decide
        ), None

    def _decide(
        self, logits: torch.Tensor, probabilities: bool, label_dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Labels ``[*S]`` and probabilities ``[K, *S]`` (if asked) of logits ``[K, *S]``: the
        arg-max and softmax, or for regions each sigmoid > 0.5 painted in order, and the sigmoids."""
        if self.regions:
            labels = paint(logits > 0, self.regions, dtype=label_dtype)  # sigmoid > 0.5 where logit > 0
            return labels, (torch.sigmoid(logits) if probabilities else None)
        return logits.argmax(0).to(label_dtype), (torch.softmax(logits, 0) if probabilities else None)

    @property
    def _resample_device(self) -> torch.device | None:
        """Where :meth:`prepare` and :meth:`finish` resample: the GPU on CUDA, else scipy (None)."""
        return self.device if self.device.type == "cuda" else None

    def prepare(self, image: Volume) -> PreparedCase:
        """Check ``image`` (3D ``[X, Y, Z]``, or 4D ``[X, Y, Z, C]`` with channels on axis 3) and
        preprocess it onto the network's grid (safe to run in another thread while the network
        works on another case; the resampling runs on the GPU when the predictor's device is CUDA).

        Raises:
            MedsegError: the scan's channels do not match the model's (a colour picture or a 4D
                series for a one-channel model, or another channel count).
        """
        t0 = time.monotonic()
        if image.array.ndim == 4 and self.plan.n_channels == 1 and image.array.shape[3] != 1:
            if is_2d_source(image):
                raise MedsegError(
                    f"the picture has {image.array.shape[3]} colour channels but the model takes one",
                    hint="save the pictures as greyscale, or train on colour (declare the channels and "
                    "channels_in_one_file: true in the manifest)",
                )
            raise MedsegError(
                f"the scan is 4D ({image.shape}) but the model takes one channel",
                hint="convert one volume of the series, or train a multi-channel model",
            )
        n_in = image.array.shape[3] if image.array.ndim == 4 else 1
        if n_in != self.plan.n_channels:
            raise MedsegError(
                f"the scan has {n_in} channel(s) but the model takes {self.plan.n_channels}",
                hint="give every channel the model was trained on (a 4D file with channels on axis 4)",
            )
        case = self.plan.apply(image, device=self._resample_device)
        return PreparedCase(image, case, time.monotonic() - t0)

    def infer(
        self, prepared: PreparedCase, probabilities: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the network (sliding window, and mirror TTA if on) over a prepared case.

        Returns:
            Labels ``[*S]`` (uint8, or int16 past 255 labels) on the preprocessed grid ``S``, and
            softmax probabilities ``[K, *S]`` (float32; for regions the sigmoid of each region
            ``[R, *S]``) when ``probabilities``, else ``None``.
            Adds its time to ``prepared.seconds``. With a dense CRF (``crf``) the whole softmax
            ``[K, *S]`` is held, as for probabilities, and refined on this grid (its spacing, the
            normalised image) before the arg-max; the probabilities returned are the refined ones.

        Raises:
            MedsegError: the backend cannot be built (e.g. the network does not export to ONNX).
        """
        t0 = time.monotonic()
        smooth = keeps_softmax(self, prepared)
        lab, prob = self._infer(
            torch.from_numpy(prepared.case.image), probabilities or smooth or self.crf is not None
        )
        if self.crf is not None and prob is not None:
            prob = self._refine(prepared, prob)
            lab = prob.argmax(0).to(lab.dtype)
        prepared.softmax = prob if smooth else None
        prepared.seconds += time.monotonic() - t0
        return lab, (prob if probabilities else None)

    def _refine(self, prepared: PreparedCase, probabilities: torch.Tensor) -> torch.Tensor:
        """The dense CRF's marginals ``[K, *S]`` of the softmax ``[K, *S]`` on the network's grid
        (the preprocessed image and its spacing), recorded in ``prepared.crf`` and the log."""
        from medseg import geometry

        assert self.crf is not None
        t0 = time.monotonic()
        spacing = geometry.spacing(np.asarray(prepared.case.record.affine))
        refined = dense_crf(probabilities.numpy(), prepared.case.image, spacing, self.crf)
        seconds = time.monotonic() - t0
        voxels = int(np.prod(refined.shape[1:]))
        log.info("dense CRF: %d iterations over %d voxels in %.2f s", self.crf.iterations, voxels, seconds)
        prepared.crf = {**self.crf.to_dict(), "voxels": voxels, "seconds": round(seconds, 3)}
        return torch.from_numpy(refined)

    def finish(
        self,
        prepared: PreparedCase,
        labels: torch.Tensor,
        probabilities: torch.Tensor | None = None,
        postprocessing: PostprocessOptions | None = None,
    ) -> Prediction:
        """Map the network's output of :meth:`infer` back onto the source grid, post-process it
        and attach the record (the resampling on the GPU when the predictor's device is CUDA).

        Args:
            prepared: What :meth:`prepare` returned for the scan.
            labels: Labels ``[*S]`` on the preprocessed grid.
            probabilities: Softmax ``[K, *S]`` (region sigmoids ``[R, *S]``), or ``None``.
            postprocessing: Component filtering and hole filling (default: the run's recorded
                choice, ``recorded_postprocessing``, else none).

        Returns:
            The label map (same shape and affine as the source scan, uint8 or uint16 past 255
            labels), probabilities ``[X, Y, Z, K]`` float32 when given, and the record, whose
            ``seconds`` is the time spent in the three stages.
        """
        t0 = time.monotonic()
        image, record = prepared.image, prepared.case.record
        soft = source_probabilities(self, probabilities, record) if probabilities is not None else None
        back = source_labels(self, prepared, labels, soft)
        options = postprocessing or self.recorded_postprocessing or PostprocessOptions()
        arr = postprocess(back.array, image.spacing, options)
        dtype = np.uint8 if self.max_label < 256 else np.uint16
        out = source_grid_labels(arr.astype(dtype), image, back.meta)
        prob_vol = None
        if soft is not None:
            prob_vol = Volume(np.moveaxis(soft.array, 0, -1).astype(np.float32), image.affine.copy())
        prepared.seconds += time.monotonic() - t0
        info = prediction_record(self, self.model_name, options, prepared)
        out.meta.extra["medseg_prediction"] = info
        return Prediction(out, prob_vol, info)

    def predict(
        self, image: Volume, probabilities: bool = False, postprocessing: PostprocessOptions | None = None
    ) -> Prediction:
        """Predict ``image`` (3D, or 4D with channels on axis 3) and return the label map on its grid:
        :meth:`prepare`, :meth:`infer` and :meth:`finish` in turn.

        Raises:
            MedsegError: as :meth:`prepare` and :meth:`infer`.
        """
        prepared = self.prepare(image)
        labels, probs = self.infer(prepared, probabilities)
        return self.finish(prepared, labels, probs, postprocessing)

    def describe(self) -> str:
        return json.dumps(
            {
                "model": self.model_name,
                "patch_size": self.patch_size,
                "tta": self.tta,
                "backend": self.backend.name,
                "precision": self.precision.value,
            }
        )


def _calibration_source(run_dir: Path, config: dict[str, Any], plan: Plan) -> Callable[[], Any]:
    """Training patches for int8 calibration, read only when an int8 model is first built."""

    def patches() -> Any:
        from medseg.inference.backends.quantize import training_patches

        return training_patches(run_dir, config, plan)

    return patches
