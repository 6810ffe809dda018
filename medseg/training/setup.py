"""Prepare a training run's data: manifest, split, preprocessing plan and cached cases."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg import geometry
from medseg.config import PipelineConfig
from medseg.config.schema import RegionConfig
from medseg.data.cache import PreprocessedCache, case_key
from medseg.data.cases import load_case
from medseg.data.check import require_valid
from medseg.data.manifest import CaseEntry, Manifest, load_manifest
from medseg.data.regions import check_regions
from medseg.data.sampling import TrainingCase
from medseg.errors import ConfigError
from medseg.io.atomic import write_text_atomic
from medseg.progress import track
from medseg.training.channel_check import (
    check_channel_inputs,
    check_channel_substitutions,
    check_channels,
    check_resume_channels,
)
from medseg.training.config_check import check_loss_for_regions
from medseg.training.splits import holdout, kfold
from medseg.transforms.preprocess import Plan, PreprocessedCase

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    manifest: Manifest
    plan: Plan
    split: dict[str, list[str]]
    train: list[TrainingCase]
    val: list[TrainingCase]
    slice_axis: int | None  # for 2D models
    regions: list[RegionConfig] | None = None  # region-based training: the pipeline's, else the manifest's


def choose_split(
    manifest: Manifest, config: PipelineConfig, fold: int | None, seed: int
) -> dict[str, list[str]]:
    """Manifest splits when given; else fold ``fold`` of k; else a fixed held-out fraction."""
    labelled = [c.id for c in manifest.cases if c.label and c.split != "test"]
    groups = {c.id: c.group for c in manifest.cases if c.group} or None
    if fold is not None:
        k = config.data.folds
        if not 0 <= fold < k:
            raise ConfigError(f"--fold {fold} is out of range for {k} folds", hint=f"use 0..{k - 1}")
        return {"fold": fold, "folds": k, **kfold(labelled, k, seed, groups)[fold]}  # type: ignore[dict-item]
    if any(c.split == "val" for c in manifest.cases):
        return {
            "train": sorted(c.id for c in manifest.cases if c.split in (None, "train") and c.label),
            "val": sorted(c.id for c in manifest.cases if c.split == "val"),
        }
    return holdout(labelled, config.data.val_fraction, seed, groups)


def _plan_cache_key(config: PipelineConfig, manifest: Manifest, cases: list[CaseEntry]) -> str:
    h = hashlib.sha1(json.dumps(config.preprocessing.model_dump(mode="json"), sort_keys=True).encode())
    h.update(json.dumps(config.labels or manifest.labels, sort_keys=True).encode())
    h.update(json.dumps(manifest.label_map or {}, sort_keys=True).encode())
    h.update(f"dims={config.model.spatial_dims}".encode())
    for c in cases:
        h.update(case_key(c, "plan").encode())
    return h.hexdigest()[:24]


def build_plan(
    config: PipelineConfig, manifest: Manifest, train_cases: list[CaseEntry], cache: PreprocessedCache
) -> Plan:
    """Fingerprint the training cases into a :class:`Plan` (cached on disk)."""
    key = _plan_cache_key(config, manifest, train_cases)
    cached = cache.root / "plans" / f"{key}.json"
    if cached.is_file():
        return Plan.from_json(cached.read_text())
    pre = config.preprocessing
    loaded = []
    for c in track(train_cases, "fingerprinting dataset"):
        case = load_case(c, manifest)
        loaded.append((case.image, case.label))
    keep_axes: tuple[int, ...] = ()
    if config.model.spatial_dims == 2 and all(img.spatial_shape[2] == 1 for img, _ in loaded):
        keep_axes = (2,)
    target = pre.target_spacing
    try:
        plan = Plan.from_dataset(
            loaded,
            config.labels or manifest.labels,
            orientation=pre.orientation,
            target_spacing=target,
            normalization=pre.normalization_value,
            window=pre.window,
            crop_foreground=pre.crop_foreground,
            keep_axes=keep_axes,
        )
    except ValueError as exc:  # e.g. one normalisation scheme per channel, but not as many as channels
        raise ConfigError(str(exc)) from None
    write_text_atomic(cached, plan.to_json())
    return plan


def preprocess_cases(
    plan: Plan, manifest: Manifest, cases: list[CaseEntry], cache: PreprocessedCache, what: str
) -> list[PreprocessedCase]:
    """Preprocess (or read from the cache) every case."""
    out = []
    plan_key = plan.settings_key() + json.dumps(manifest.label_map or {}, sort_keys=True)
    for c in track(cases, f"preprocessing {what} cases"):
        key = case_key(c, plan_key)
        pc = cache.load(key)
        if pc is None:
            loaded = load_case(c, manifest)
            pc = plan.apply(loaded.image, loaded.label)
            cache.save(key, pc)
        out.append(pc)
    return out


def prepare_data(
    config: PipelineConfig,
    data_root: str | None,
    fold: int | None,
    run_dir: Path | None = None,
    check: bool = True,
    resume_split: dict | None = None,
    resume_channels: list[str] | None = None,
) -> PreparedData:
    """Everything the trainer needs from disk, validated; writes splits.json and plan.json
    into ``run_dir`` when given. The regions are the pipeline's, else the manifest's.

    Raises:
        ConfigError: (before any case is read) regions naming values that are not labels, or a
            loss that does not fit them (:func:`~medseg.training.config_check.check_loss_for_regions`);
            a bad split; manifest channels unlike ``data.channels`` or, on resume, the run's
            ``resume_channels``; a normalisation list whose length is not the number of channels.
        MedsegError: a case that does not load or check.
    """
    manifest = load_manifest(config.data.manifest, data_root or config.data.data_root)
    check_channels(config.data.channels, manifest.channels, config.data.manifest, "data.channels")
    check_resume_channels(resume_channels, manifest.channels, config.data.manifest)
    check_channel_inputs(
        [s.value for s in config.preprocessing.normalization_schemes],
        config.augmentation.channel_dropout_p,
        config.augmentation.enabled,
        manifest.channels,
    )
    check_channel_substitutions(config.augmentation.channel_substitutions, manifest.channels)
    regions = config.regions or manifest.regions  # checked before any case is read
    if regions:
        check_regions(regions, config.labels or manifest.labels, config.data.manifest)
    check_loss_for_regions(config, regions)
    if check:
        require_valid(manifest, config.data.manifest)
    n_classes = max(config.labels or manifest.labels) + 1
    if resume_split is not None:  # a resumed run keeps its own split
        split = resume_split
    else:
        split = choose_split(manifest, config, fold, config.training.seed)
    by_id = {c.id: c for c in manifest.cases}
    train_entries = [by_id[i] for i in split["train"]]
    val_entries = [by_id[i] for i in split["val"]]
    if not train_entries:
        raise ConfigError("no labelled training cases after the split")
    cache = PreprocessedCache(config.data.cache_dir)
    plan = build_plan(config, manifest, train_entries, cache)
    if max(plan.labels) + 1 != n_classes:  # pragma: no cover - guarded by the cache key
        raise ConfigError(
            "the preprocessing plan's classes disagree with the dataset's",
            hint="delete the preprocessing cache (data.cache_dir) and train again",
        )

    def to_training(entries: list[CaseEntry], what: str) -> list[TrainingCase]:
        pcs = preprocess_cases(plan, manifest, entries, cache, what)
        return [
            TrainingCase(e.id, pc.image, pc.label, geometry.spacing(np.array(pc.record.affine)))
            for e, pc in zip(entries, pcs)
        ]

    train = to_training(train_entries, "training")
    val = to_training(val_entries, "validation")
    slice_axis = None
    if config.model.spatial_dims == 2:
        slice_axis = config.preprocessing.slice_axis
        if slice_axis is None:
            spacing = np.median([c.spacing for c in train], axis=0)
            shapes = np.median([c.label.shape for c in train], axis=0)
            slice_axis = 2 if shapes[2] == 1 else int(np.argmax(spacing))
    if run_dir is not None:
        write_text_atomic(run_dir / "plan.json", plan.to_json())
        write_text_atomic(run_dir / "splits.json", json.dumps(split, indent=2))
    return PreparedData(manifest, plan, split, train, val, slice_axis, list(regions) if regions else None)
