"""Check the registry names of a pipeline (model, loss) and their parameters as soon as it loads.

A misspelt ``model.name``, an unknown ``model.params`` key or a bad ``loss`` would otherwise
surface only when the trainer builds the network, after the whole dataset was preprocessed.
The registries (and so torch) are imported only when a config is checked, never at
``medseg --help``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from medseg.config.schema import PipelineConfig, RegionConfig
from medseg.config.suggest import unknown_choice, unknown_keys
from medseg.errors import ConfigError


def model_build_params(config: PipelineConfig) -> dict[str, Any]:
    """The keyword parameters the trainer builds ``config.model`` with
    (``model.params``, plus ``deep_supervision=True`` when ``training.deep_supervision``)."""
    params = dict(config.model.params)
    if config.training.deep_supervision:
        params["deep_supervision"] = True
    return params


def check_model(config: PipelineConfig) -> None:
    """``model.name`` is in :data:`medseg.models.MODELS` and its build parameters validate.

    Raises:
        ConfigError: unknown name or key (suggesting the closest valid one), invalid value,
            or ``spatial_dims`` the model does not support.
    """
    from medseg.models import MODELS, get_spec, validate_params

    name, dims = config.model.name, config.model.spatial_dims
    try:
        spec = get_spec(name)
    except ConfigError:
        raise unknown_choice("model.name", name, MODELS) from None
    if config.training.deep_supervision and not spec.deep_supervision:
        able = [s.name for s in MODELS.values() if s.deep_supervision]
        raise ConfigError(
            f"training.deep_supervision: model {spec.name!r} has no deep-supervision outputs",
            hint=f"set training.deep_supervision: false, or use {' or '.join(able)}",
        )
    params = model_build_params(config)
    try:
        validate_params(name, dims, params)
    except ConfigError:
        try:
            spec.params_model.model_validate(params, context={"spatial_dims": dims})
        except ValidationError as exc:
            bad = unknown_keys(exc)
            if bad:
                raise unknown_choice("model.params", bad[0], spec.params_model.model_fields) from None
        raise


def check_loss(config: PipelineConfig) -> None:
    """``loss.name`` is in :data:`medseg.losses.LOSSES` and ``loss.params`` validate.

    Raises:
        ConfigError: unknown name or key (suggesting the closest valid one) or invalid value.
    """
    from medseg.losses.registry import validate_loss_params

    validate_loss_params(config.loss.name, config.loss.params)
    if config.regions:
        check_loss_for_regions(config, config.regions)


def check_loss_for_regions(config: PipelineConfig, regions: Sequence[RegionConfig] | None) -> None:
    """A region loss exactly when the pipeline trains on regions (its own or its manifest's).

    Raises:
        ConfigError: regions with a softmax loss, or a region loss without regions.
    """
    from medseg.losses import LOSSES
    from medseg.losses.registry import get_loss_spec

    spec = get_loss_spec(config.loss.name)
    if regions and not spec.regions:
        able = [s.name for s in LOSSES.values() if s.regions]
        raise ConfigError(
            f"loss.name: {spec.name!r} is a softmax loss, but the pipeline trains on {len(regions)} regions",
            hint=f"set loss.name: {' or '.join(able)} (sigmoid outputs, one per region)",
        )
    if not regions and spec.regions:
        raise ConfigError(
            f"loss.name: {spec.name!r} trains regions, but neither the pipeline nor its manifest "
            "declares any",
            hint="declare regions (docs/training.md, 'Region-based training') or choose a softmax loss",
        )


def check_registries(config: PipelineConfig, source: str | None = None) -> None:
    """Check the model and the loss of ``config`` against their registries (no data is read).

    Args:
        config: A schema-valid pipeline config.
        source: Where it came from (a file name), put in front of the message.

    Raises:
        ConfigError: the first problem found, naming the key (``model.params.featurs``) and
            suggesting the closest valid choice.
    """
    try:
        check_model(config)
        check_loss(config)
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None
