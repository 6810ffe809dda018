"""Refuse training on a manifest whose input channels are not the ones expected, in order.

A network learns which channel is which sequence (T1, T1ce, T2, FLAIR; CT, PET): a manifest that
lists the same files in another order trains a model that silently reads FLAIR as T1. The pipeline
may name its channels (``data.channels``), and a resumed run knows the channels it was trained on
(the checkpoint's ``channels``); both are compared with the manifest before any case is read.
"""

from __future__ import annotations

import logging
import re

from medseg.errors import ConfigError

log = logging.getLogger(__name__)

_GENERIC = re.compile(r"channel_\d+")


def _fold(names: list[str]) -> list[str]:
    return [str(n).strip().casefold() for n in names]


def is_generic(names: list[str]) -> bool:
    """True for the ``channel_0``, ``channel_1``... names a run records when the manifest's were
    unusable (see :func:`medseg.training.checkpoint.channel_names`): they say nothing about order."""
    return all(_GENERIC.fullmatch(str(n).strip()) for n in names)


def check_channels(expected: list[str] | None, manifest_channels: list[str], source: str, what: str) -> None:
    """Refuse a manifest whose channel names differ from ``expected`` (same names, same order).

    Names are compared stripped and ignoring case. Nothing is checked when ``expected`` is None.

    Args:
        expected: The channel names in order (None: no check).
        manifest_channels: The manifest's ``channels`` (MSD ``modality``, nnU-Net ``channel_names``).
        source: The manifest's path, named in the message.
        what: Where ``expected`` comes from, e.g. ``"data.channels"`` or ``"the resumed run"``.

    Raises:
        ConfigError: the names or their order differ; one line naming both lists and the fix.
    """
    if expected is None:
        return
    if _fold(list(expected)) == _fold(list(manifest_channels)):
        return
    same_set = sorted(_fold(list(expected))) == sorted(_fold(list(manifest_channels)))
    problem = "lists the same channels in another order" if same_set else "declares other channels"
    raise ConfigError(
        f"{source} {problem}: expected {list(expected)} ({what}), found {list(manifest_channels)}",
        hint=f"reorder or rename the manifest's channels to {list(expected)}, or change {what}",
    )


def check_resume_channels(recorded: list[str] | None, manifest_channels: list[str], source: str) -> None:
    """Refuse resuming a run on a manifest whose channels differ from those the run recorded.

    A different number of channels is always refused. Names are compared (as in
    :func:`check_channels`) only when the run recorded real names, not the generic
    ``channel_0``... fallback. Nothing is checked when ``recorded`` is None (older checkpoints).

    Raises:
        ConfigError: a different channel count, or different names or order (one line).
    """
    if recorded is None:
        return
    recorded = [str(n) for n in recorded]
    if len(recorded) != len(manifest_channels):
        raise ConfigError(
            f"{source} declares {len(manifest_channels)} channel(s) {list(manifest_channels)} but the "
            f"resumed run was trained on {len(recorded)}: {recorded}",
            hint="resume with the manifest the run was trained on",
        )
    if is_generic(recorded):
        log.debug("the resumed run recorded generic channel names %s: order not checked", recorded)
        return
    check_channels(recorded, manifest_channels, source, "the resumed run's checkpoint")


#: Schemes after which 0 is a channel's mean (what channel dropout and ``--missing-channel zeros`` feed).
MEAN_AT_ZERO = ("zscore", "ct")


def check_channel_inputs(
    schemes: list[str], channel_dropout_p: float, augmentation_on: bool, names: list[str]
) -> None:
    """Check the per-channel settings against the manifest's channels before any case is read.

    Args:
        schemes: ``preprocessing.normalization`` as scheme names (one for all channels, or one each).
        channel_dropout_p: ``augmentation.channel_dropout_p``.
        augmentation_on: ``augmentation.enabled``.
        names: The manifest's channel names, in order.

    Raises:
        ConfigError: a list of schemes whose length is not the number of channels.

    Logs a warning when channel dropout is asked for but augmentation is off (it then never
    happens), and when it drops channels whose 0 is not their mean (``percentile``, ``window``:
    0 is the bottom of the range; ``none``: whatever 0 means in the data).
    """
    if len(schemes) != 1 and len(schemes) != len(names):
        raise ConfigError(
            f"preprocessing.normalization lists {len(schemes)} schemes for {len(names)} channel(s) "
            f"({', '.join(names)})",
            hint="give one scheme for every channel, or one per channel in channel order",
        )
    if channel_dropout_p <= 0:
        return
    if not augmentation_on:
        log.warning("augmentation.channel_dropout_p is set but augmentation.enabled is false: no dropout")
    per_channel = schemes * len(names) if len(schemes) == 1 else schemes
    odd = [f"{n} ({s})" for n, s in zip(names, per_channel) if s not in MEAN_AT_ZERO]
    if odd:
        log.warning(
            "channel dropout sets dropped channels to 0, which is not the mean of %s: the network "
            "learns 'missing' as 'dark' there",
            ", ".join(odd),
        )


def check_channel_substitutions(substitutions: list, names: list[str]) -> None:
    """Refuse ``augmentation.channel_substitutions`` naming a channel the manifest does not have.

    Args:
        substitutions: The :class:`~medseg.config.schema.ChannelSubstitutionConfig` entries.
        names: The manifest's channel names, in order.

    Raises:
        ConfigError: a source or replaced channel index past the last channel (one line).
    """
    for entry in substitutions:
        bad = [c for c in (entry.source, *entry.replaced) if c >= len(names)]
        if bad:
            raise ConfigError(
                f"augmentation.channel_substitutions names channel {bad[0]}, but the images have "
                f"{len(names)} channel(s) ({', '.join(names)})",
                hint="channels are 0-based, in the manifest's channel order",
            )
