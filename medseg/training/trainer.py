"""The training loop: :class:`Trainer` (and the :func:`train` shortcut).

A run folder holds everything needed to predict later and to resume:
``config.yaml`` (resolved), ``plan.json``, ``splits.json``, ``checkpoints/last.pt``
and ``best.pt`` (self-contained: model config, weights, plan, labels, optimiser
and random states), ``metrics.csv``, ``tensorboard/`` and ``curves.png``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import PipelineConfig, dump_config
from medseg.device import resolve_device
from medseg.errors import ConfigError, MedsegError
from medseg.io.atomic import remove_stale_temporaries, write_text_atomic
from medseg.training import checkpoint as ckpt
from medseg.training import transfer
from medseg.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from medseg.training.config_check import check_registries
from medseg.training.distributed import DistInfo, barrier, broadcast_flag, cleanup, init_distributed
from medseg.training.loader import EpochSampler, IndexedPatches, worker_init
from medseg.training.loss_setup import build_training_loss, resolve_class_weights
from medseg.training.schedule import lr_factor

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_dice_mean", "lr", "seconds"]


class Trainer:
    """Train a pipeline into a run folder.

    Args:
        config: The validated pipeline.
        run_dir: Output folder (created).
        data_root: Folder relative manifest paths start from (else $MEDSEG_DATA_ROOT).
        fold: Cross-validation fold (0-based) of ``config.data.folds``; None = manifest split
            or a held-out fraction.
        device: ``auto``, ``cpu`` or ``cuda``.
        resume: Continue from ``run_dir/checkpoints/last.pt``.
        extend_epochs: Train this many epochs past the planned end (implies resume).
        init_from: Run folder or checkpoint to start from (not on resume; :mod:`~.transfer`).

    Raises:
        ConfigError: (at once, before any data work) an unknown or invalid model or loss.
    """

    def __init__(
        self,
        config: PipelineConfig,
        run_dir: str | Path,
        data_root: str | None = None,
        fold: int | None = None,
        device: str = "auto",
        resume: bool = False,
        extend_epochs: int = 0,
        init_from: str | Path | None = None,
    ) -> None:
        check_registries(config)  # a bad model or loss fails now, before any case is read
        self.config = config
        self.run_dir = Path(run_dir)
        self.data_root = data_root
        self.fold = fold
        self.device = resolve_device(device)
        self.resume = resume or extend_epochs > 0
        self.extend_epochs = int(extend_epochs)
        self.init_source = transfer.source_for(init_from, self.resume)  # read now: errors before data
        self.dist = DistInfo()
        self.history: list[dict[str, Any]] = []
        self.elapsed_before = 0.0  # training seconds of earlier sessions of a resumed run
        self._t0 = time.monotonic()

    @property
    def sampler_indices_seen(self) -> list[int]:
        """Global sample indices this rank trained on (each epoch's shard)."""
        return list(self.sampler.seen)

    # -- setup ------------------------------------------------------------------------------
    def _check_run_dir(self) -> None:
        last = self.run_dir / "checkpoints" / "last.pt"
        if self.dist.is_main:  # what a killed earlier session was writing when it died
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_stale_temporaries(folder)
        if self.resume and not last.is_file():
            raise MedsegError(
                f"nothing to resume in {self.run_dir}: no checkpoints/last.pt",
                hint="start the run without --resume",
            )
        if not self.resume and last.is_file():
            raise MedsegError(
                f"{self.run_dir} already holds a training run",
                hint="pass --resume to continue it, or choose another --output",
            )

    def _build(self, n_classes: int, in_channels: int) -> None:
        from medseg.models import build_model
        from medseg.training.config_check import model_build_params

        cfg = self.config
        params = model_build_params(cfg)
        torch.manual_seed(cfg.training.seed)
        self.model = build_model(cfg.model.name, cfg.model.spatial_dims, in_channels, n_classes, **params)
        self.model.to(self.device)
        if self.init_source is not None:
            transfer.apply_init(self.model, self.init_source, self.run_dir if self.dist.is_main else None)
        resolve_class_weights(cfg, self.data.train, n_classes, self.data.regions, self.data.plan.labels)
        self.loss = build_training_loss(cfg, n_classes, self.data.regions)
        t = cfg.training
        if t.optimizer.value == "sgd":
            self.optimizer = torch.optim.SGD(
                self.model.parameters(),
                lr=t.lr,
                momentum=t.momentum,
                nesterov=t.momentum > 0,
                weight_decay=t.weight_decay,
            )
        else:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.net = self.model
        self.freezer = transfer.EncoderFreezer(
            self.model,
            cfg.model.name,
            t.freeze_encoder_epochs,
            self.dist.enabled,
            pretrained=self.init_source is not None or self.resume,
        )
        if self.dist.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.amp_dtype = None
        if t.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif t.cpu_bf16 and self.device.type == "cpu":
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                self.amp_dtype = torch.bfloat16
            else:
                log.warning("training.cpu_bf16: this CPU has no native bf16; training in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

    def _loader(self, data) -> torch.utils.data.DataLoader:
        from medseg.data.sampling import PatchDataset
        from medseg.transforms.augmentation import Augmenter

        t = self.config.training
        per_epoch = t.iterations_per_epoch * t.batch_size
        per_epoch = (
            int(math.ceil(per_epoch / (self.dist.world_size * t.batch_size)))
            * self.dist.world_size
            * t.batch_size
        )
        self.samples_per_epoch = per_epoch
        aug = Augmenter(self.config.augmentation, self.config.model.spatial_dims, t.patch_size)
        dataset = IndexedPatches(
            PatchDataset(
                data.train,
                t.patch_size,
                per_epoch,
                aug,
                t.foreground_oversample,
                t.seed,
                slice_axis=data.slice_axis if data.slice_axis is not None else 2,
                foreground_sampling=t.foreground_sampling,
            )
        )
        self.sampler = EpochSampler(per_epoch, self.dist.rank, self.dist.world_size)
        workers = t.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=t.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=worker_init if workers > 0 else None,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
        )

    # -- checkpoints ----------------------------------------------------------------------------
    def _state(self, epoch: int, step: int, best: float) -> dict[str, Any]:
        return {
            "model_config": self.model.medseg_config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "best": best,
            "rng": rng_state(),
            "plan": self.data.plan.to_json(),
            "config": self.config.model_dump(mode="json"),
            "slice_axis": self.data.slice_axis,
            "channels": ckpt.channel_names(self.data.manifest.channels, self.data.plan.n_channels),
            "elapsed_seconds": self.elapsed_before + (time.monotonic() - self._t0),
            "split": self.data.split,
        }

    def _write_metrics(self) -> None:
        from medseg.training.validation import score_names

        names = score_names(self.data.plan.labels, self.data.regions)
        cols = METRIC_COLUMNS + [f"val_dice_{n}" for n in names]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for row in self.history:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        write_text_atomic(self.run_dir / "metrics.csv", buf.getvalue())
        try:
            from medseg.reporting import plot_curves
        except ImportError:  # reporting extras not present
            return
        try:
            plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png")
        except Exception as exc:  # a plot must never stop training
            log.warning("could not draw curves.png: %s", exc)

    def _read_history(self, upto_epoch: int) -> None:
        path = self.run_dir / "metrics.csv"
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        self.history = [
            {k: (float(v) if v not in ("", None) else None) for k, v in r.items()}
            for r in rows
            if int(float(r["epoch"])) <= upto_epoch
        ]
        for r in self.history:
            r["epoch"] = int(r["epoch"])
            r["step"] = int(r["step"])

    # -- main -------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train; returns the final metrics (last row of metrics.csv)."""
        from medseg.training.setup import prepare_data

        cfg, t = self.config, self.config.training
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        try:
            if self.dist.is_main:
                self._check_run_dir()
                self.run_dir.mkdir(parents=True, exist_ok=True)
            barrier(self.dist)
            resume_split = None
            if self.resume:
                previous = load_checkpoint(self.run_dir / "checkpoints" / "last.pt")
                resume_split = previous.get("split")
                if self.fold is not None and resume_split and resume_split.get("fold") != self.fold:
                    raise ConfigError(
                        f"this run was trained on fold {resume_split.get('fold')}, not --fold {self.fold}",
                        hint="resume without --fold (the run's own split is used)",
                    )
                if self.data_root is None:
                    self.data_root = cfg.data.data_root
            self.data = prepare_data(
                cfg,
                self.data_root,
                self.fold,
                self.run_dir if self.dist.is_main else None,
                check=self.dist.is_main,
                resume_split=resume_split,
                resume_channels=previous.get("channels") if self.resume else None,
            )
            if self.data_root and self.dist.is_main:
                cfg.data.data_root = str(Path(self.data_root).resolve())  # recorded for --resume
            if self.data.regions:  # recorded in config.yaml and the checkpoints for prediction
                cfg.regions = self.data.regions
            n_out = len(self.data.regions) if self.data.regions else max(self.data.plan.labels) + 1
            self._build(n_out, self.data.plan.n_channels)
            start_epoch, step, best = 0, 0, -1.0
            if self.resume:
                state = load_checkpoint(self.run_dir / "checkpoints" / "last.pt", map_location=self.device)
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
                self.scaler.load_state_dict(state["scaler"])
                set_rng_state(state["rng"])
                start_epoch, step, best = int(state["epoch"]) + 1, int(state["step"]), float(state["best"])
                self.elapsed_before = float(state.get("elapsed_seconds", 0.0))
                self._read_history(int(state["epoch"]))
                log.info("resuming after epoch %d (step %d)", start_epoch, step)
            epochs = t.epochs + self.extend_epochs
            if self.extend_epochs:
                cfg.training.epochs = epochs  # the schedule stretches to the new end
            if self.dist.is_main:
                write_text_atomic(self.run_dir / "config.yaml", dump_config(cfg))
            loader = self._loader(self.data)
            last = self._loop(loader, start_epoch, epochs, step, best)
            if self.dist.is_main and t.choose_postprocessing:
                from medseg.training.validation_choice import choose_after_training

                choose_after_training(self.run_dir, self.fold, self.data_root, str(self.device))
            return last
        finally:
            cleanup(self.dist)

    def _loop(self, loader, start_epoch: int, epochs: int, step: int, best: float) -> dict[str, Any]:
        from medseg.progress import track
        from medseg.transforms.augmentation import BatchCutMix

        t = self.config.training
        writer = self._tensorboard()
        mix = BatchCutMix(self.config.augmentation, t.seed, self.dist.rank)  # off: a no-op
        total_steps = epochs * len(loader)
        t0 = self._t0 = time.monotonic()
        budget = t.max_minutes * 60 if t.max_minutes else None
        last_row: dict[str, Any] = {}
        for epoch in range(start_epoch, epochs):
            self.sampler.epoch = epoch
            self.freezer.set_epoch(epoch)  # frozen state follows from the epoch (resume, DDP)
            self.net.train()
            losses = []
            e0 = time.monotonic()
            batches = track(loader, f"epoch {epoch + 1}/{epochs}") if self.dist.is_main else loader
            stop = False
            for i, (image, label) in enumerate(batches):
                progress = step / max(total_steps, 1)
                if budget:
                    spent = (time.monotonic() - t0 + self.elapsed_before) / budget
                    # the budget ends the run mid-epoch too (checked every 10 steps under torchrun)
                    if losses and (not self.dist.enabled or i % 10 == 0):
                        stop = broadcast_flag(self.dist, spent >= 1.0, self.device)
                        if stop:
                            break
                    progress = max(progress, spent)
                lr = t.lr * lr_factor(
                    t.schedule.value, int(progress * total_steps), total_steps, t.warmup_epochs * len(loader)
                )
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                image, label = mix(image, label, epoch, i)
                losses.append(self._step(image, label))
                step += 1
            stop = stop or (
                budget is not None
                and broadcast_flag(
                    self.dist, time.monotonic() - t0 + self.elapsed_before >= budget, self.device
                )
            )
            row: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "train_loss": round(self._mean_loss(losses), 6),
                "lr": lr,
                "seconds": round(time.monotonic() - e0, 3),
            }
            best = self._end_epoch(row, epochs, best, epoch == epochs - 1 or stop, writer)
            barrier(self.dist)
            last_row = row
            if stop:
                log.info("time budget of %.1f min reached after epoch %d", t.max_minutes, epoch + 1)
                break
        if writer is not None:
            writer.close()
        return last_row

    def _mean_loss(self, losses: list[float]) -> float:
        """The epoch's mean training loss, averaged over ranks under torchrun."""
        train_loss = float(np.mean(losses)) if losses else float("nan")
        if self.dist.enabled:
            tl = torch.tensor([train_loss], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(tl)
            train_loss = float(tl.item()) / self.dist.world_size
        return train_loss

    def _end_epoch(self, row: dict[str, Any], epochs: int, best: float, last: bool, writer: Any) -> float:
        """Validate when due, record the epoch, save last.pt (and best.pt); returns the best score."""
        epoch, t = row["epoch"], self.config.training
        if self.dist.is_main and self.data.val and ((epoch + 1) % t.val_every == 0 or last):
            row.update(self._validate())
        if self.dist.is_main:
            self.history.append(row)
            score = row.get("val_dice_mean")
            improved = score is not None and not math.isnan(score) and score > best
            if improved:
                best = float(score)
            state = self._state(epoch, row["step"], best)
            save_checkpoint(self.run_dir / "checkpoints" / "last.pt", state)
            if improved or (not self.data.val and last):
                save_checkpoint(self.run_dir / "checkpoints" / "best.pt", state)
            self._write_metrics()
            self._log_epoch(row, epochs, writer)
        return best

    def _step(self, image: torch.Tensor, label: torch.Tensor) -> float:
        t = self.config.training
        image = image.to(self.device, non_blocking=True)
        label = label.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            out = self.net(image)
            out = [o.float() for o in out] if isinstance(out, list | tuple) else out.float()
            loss = self.loss(out, label)
        if not torch.isfinite(loss):
            raise MedsegError(
                "the loss became NaN or infinite",
                hint="lower training.lr, enable grad_clip, or check the labels and intensities",
            )
        self.scaler.scale(loss).backward()
        self.freezer.drop_grads()  # frozen encoder: no step, momentum or decay
        if t.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def _validate(self) -> dict[str, Any]:
        from medseg.training.validation import case_dice, predict_logits, score_names

        t = self.config.training
        self.model.eval()
        labels, regions = self.data.plan.labels, self.data.regions
        dices, losses = [], []
        for case in self.data.val:
            logits = predict_logits(
                self.model,
                case.image,
                t.patch_size,
                t.val_overlap,
                self.device,
                batch_size=max(1, t.batch_size),
                slice_axis=self.data.slice_axis,
            )
            losses.append(float(self.loss.loss(logits[None], case.label[None].long())))
            dices.append(case_dice(logits, case.label, labels, regions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # classes absent from every case: NaN
            per_class = np.nanmean(np.array(dices, dtype=float), axis=0)
        names = score_names(labels, regions)
        out: dict[str, Any] = {
            "val_loss": round(float(np.mean(losses)), 6),
            "val_dice_mean": round(float(np.nanmean(per_class)), 6),
        }
        for n, d in zip(names, per_class):
            out[f"val_dice_{n}"] = round(float(d), 6)
        return out

    def _tensorboard(self):
        if not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _log_epoch(self, row: dict[str, Any], epochs: int, writer) -> None:
        msg = (
            f"epoch {row['epoch'] + 1}/{epochs} loss {row['train_loss']:.4f} "
            f"lr {row['lr']:.2e} {row['seconds']:.1f}s"
        )
        if "val_dice_mean" in row:
            per = ", ".join(
                f"{k[9:]} {v:.3f}"
                for k, v in row.items()
                if k.startswith("val_dice_") and k != "val_dice_mean"
            )
            msg += f" | val dice {row['val_dice_mean']:.4f} ({per})"
        log.info(msg)
        if writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and v is not None:
                    writer.add_scalar(k, v, row["step"])
            writer.flush()


def train(config: PipelineConfig | str | Path, run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Train a pipeline (a config or the path of its YAML) into ``run_dir``."""
    from medseg.config import load_pipeline

    if not isinstance(config, PipelineConfig):
        config = load_pipeline(config)
    if not isinstance(config, PipelineConfig):  # pragma: no cover
        raise ConfigError("not a pipeline config")
    return Trainer(config, run_dir, **kwargs).fit()
