"""``medseg plan``: fingerprint a dataset, refuse a bad one, plan a pipeline, write it.

:func:`plan_dataset` is the whole of the command: the fingerprint
(:func:`~medseg.planning.fingerprint.compute_fingerprint`), the dataset checks (every problem in one
error), the rules (:func:`~medseg.planning.planner.plan_pipeline`, with the training step time
probed on the device), then ``PIPELINE.yaml`` with a comment on each decision and
``fingerprint.json`` beside it (both written atomically). When the rules propose a second
configuration (2D for strongly anisotropic 3D data, 3D beside a 2D primary for flat volumes with no
recorded voxel size), it is written as ``PIPELINE_2d.yaml`` (``PIPELINE_3d.yaml``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.io.atomic import write_text_atomic

log = logging.getLogger(__name__)

#: Folds the plan's cross-validation uses unless told otherwise (``data.folds``).
DEFAULT_FOLDS = 5


def _grouped(fingerprint: dict[str, Any]) -> bool:
    ds = fingerprint["dataset"]
    return int(ds.get("n_groups", ds.get("n_labelled", 0))) != int(ds.get("n_labelled", 0))


def fold_units(fingerprint: dict[str, Any]) -> int:
    """What folds are made of: the labelled cases, or their groups (patients) when the manifest
    names them."""
    ds = fingerprint["dataset"]
    return int(ds.get("n_groups", ds.get("n_labelled", 0)))


def dataset_problems(manifest: Any, fingerprint: dict[str, Any], folds: int) -> list[str]:
    """Every reason not to plan this dataset: missing files, unlabelled training cases, fewer
    labelled cases than folds, non-finite intensities, and the fingerprint's problems (label or
    channel grids that disagree, a class with no voxel anywhere, undeclared label values)."""
    problems = []
    for case in manifest.cases:
        for path in [*case.images, *([case.label] if case.label else [])]:
            if not Path(path).exists():
                problems.append(f"case {case.id}: file not found: {path}")
        if not case.label and case.split != "test":
            problems.append(f"case {case.id}: no label (only test cases may lack one)")
    n = fold_units(fingerprint)
    if n < folds:
        fix = f"use --folds {n}" if n >= 2 else "label more cases"
        what = "patient(s)" if _grouped(fingerprint) else "labelled case(s)"
        problems.append(f"{n} {what} for {folds} folds ({fix})")
    for channel in fingerprint["summary"].get("channels", []):
        if not all(math.isfinite(float(channel.get(k, 0.0))) for k in ("mean", "std", "p00_5", "p99_5")):
            problems.append(f"channel {channel.get('name')}: NaN or infinite intensities")
    problems.extend(str(p) for p in fingerprint["summary"].get("problems") or [])
    from medseg.data.check import group_split_problems

    problems.extend(str(p) for p in group_split_problems(manifest))
    return problems


def _check_files(manifest: Any) -> None:
    """Missing files stop the fingerprint; name all of them first."""
    missing = [
        str(p)
        for case in manifest.cases
        for p in [*case.images, *([case.label] if case.label else [])]
        if not Path(p).exists()
    ]
    if missing:
        shown = "; ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(
            f"cannot plan: {len(missing)} file(s) of the dataset are missing: {shown}",
            hint="check the paths in the manifest (and --data-root); medseg manifest check lists them",
        )


def check_arguments(
    budget_minutes: float, device: str, memory_gb: float | None, folds: int, workers: int | None, probe: bool
) -> None:
    """Refuse bad arguments before any case is read.

    Raises:
        ConfigError: a budget or memory limit that is not positive, fewer than 2 folds, fewer than
            1 worker, a device other than cpu / cuda / cuda:N, or a step-time probe on CUDA where
            there is none.
    """
    import re

    if not budget_minutes > 0:
        raise ConfigError(f"--budget must be a positive number of minutes, got {budget_minutes}")
    if memory_gb is not None and not memory_gb > 0:
        raise ConfigError(f"--memory-gb must be positive, got {memory_gb}")
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"--device must be cpu or cuda (cuda:N), got {device!r}")
    if probe and device.startswith("cuda"):
        import torch

        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(
                f"no CUDA device {device} here to time training steps on",
                hint="plan on the GPU machine, or add --no-probe (the step time is then estimated "
                "from FLOPs)",
            )


def _region_loss(planned: Any, n_regions: int) -> None:
    """Region datasets (nnU-Net v2 regions in dataset.json, or a manifest's regions) train sigmoid
    outputs: the region loss, and no class weights."""
    from medseg.planning.rules import Decision

    planned.config["loss"].update(name="region_dice_bce", class_weighting="none")
    planned.decisions.append(
        Decision(
            "loss.name",
            "region_dice_bce",
            "the dataset defines regions: one sigmoid output per region, Dice + BCE (nnU-Net's "
            "region training)",
            f"{n_regions} regions",
        )
    )
    planned.decisions.append(
        Decision(
            "loss.class_weighting", "none", "regions overlap: no per-class weights", f"{n_regions} regions"
        )
    )


def plan_dataset(
    source: str | Path,
    output: str | Path,
    budget_minutes: float = 30.0,
    device: str = "cpu",
    memory_gb: float | None = None,
    data_root: str | Path | None = None,
    folds: int = DEFAULT_FOLDS,
    probe: bool = True,
    workers: int | None = None,
) -> Any:
    """Plan a pipeline for a dataset and write it.

    Args:
        source: MSD folder (with ``dataset.json``), ``dataset.json`` or a medseg manifest.
        output: The pipeline YAML to write; ``fingerprint.json`` goes beside it.
        budget_minutes: Training budget (``training.max_minutes``), minutes.
        device: ``cpu`` or ``cuda`` (the device the plan is for; the step time is probed on it).
        memory_gb: Memory limit of one training step, GB (default: 8 on CUDA, a quarter of RAM).
        data_root: Folder relative manifest paths start from.
        folds: Cross-validation folds (``data.folds``); fewer labelled cases than this are refused.
        probe: Time real training steps on ``device`` (False: a FLOPs estimate).
        workers: Processes for the fingerprint (default: the CPUs).

    Returns:
        The :class:`~medseg.planning.rules.PlanResult`.

    Raises:
        ConfigError: a dataset with problems (all of them named in one line), bad arguments.
        InputNotFoundError, CorruptFileError: a missing or unreadable manifest or image.
    """
    from medseg.data.manifest import load_manifest
    from medseg.planning.fingerprint import compute_fingerprint, resolve_source
    from medseg.planning.planner import plan_pipeline

    check_arguments(budget_minutes, device, memory_gb, folds, workers, probe)
    source_path = resolve_source(source)
    manifest = load_manifest(source_path, data_root)
    _check_files(manifest)
    fingerprint = compute_fingerprint(source_path, data_root=data_root, workers=workers)
    problems = dataset_problems(manifest, fingerprint, folds)
    if problems:
        raise ConfigError(
            f"cannot plan {source_path.name}: {len(problems)} problem(s): " + "; ".join(problems),
            hint="fix the dataset (medseg manifest check shows each case), then plan again",
        )
    step_seconds = None
    if probe:
        from medseg.planning.topology import probe_step_seconds

        def step_seconds(config: dict) -> float:
            return probe_step_seconds(config, device)

    from medseg.planning.round_trip import label_round_trip

    result = plan_pipeline(
        fingerprint,
        budget_minutes,
        device,
        memory_gb,
        step_seconds,
        manifest_path=str(source_path.resolve()),
        folds=folds,
        round_trip=lambda target: label_round_trip(manifest, target),
    )
    for planned in result.configurations:
        if data_root is not None:
            planned.config["data"]["data_root"] = str(Path(data_root).resolve())
        if manifest.regions:
            _region_loss(planned, len(manifest.regions))
    write_plan(result, fingerprint, Path(output))
    return result


def write_plan(result: Any, fingerprint: dict[str, Any], out: Path) -> None:
    """``out`` (the primary configuration), ``<out>_2d.yaml`` (``_3d``) for an alternative, and
    ``fingerprint.json`` beside them, each written atomically."""
    from medseg.planning.yaml_writer import render_yaml

    out.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("2d", "3d"):  # an alternative of an earlier plan into this folder is not this plan's
        for stale in out.parent.glob(f"{out.stem}_{kind}*{out.suffix}"):
            stale.unlink()
    write_text_atomic(out.parent / "fingerprint.json", json.dumps(fingerprint, indent=1) + "\n")
    write_text_atomic(out, render_yaml(result))
    for i, alternative in enumerate(result.alternatives):
        path = out.with_name(f"{out.stem}_{alternative.kind}{'' if i == 0 else i}{out.suffix}")
        write_text_atomic(path, render_yaml(alternative))
        log.info("alternative %s configuration written to %s", alternative.kind, path)
    log.info("planned %s (%d decisions) into %s", result.kind, len(result.decisions), out)
