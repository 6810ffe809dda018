"""Named input channels at prediction: a multi-sequence case read from one file per channel.

A run records the names of its input channels in order (``channels`` in its checkpoint: the
manifest's ``channels``, MSD ``modality`` or nnU-Net ``channel_names``; ``channel_0``... when the
manifest names none, and for runs from before the record). :func:`~medseg.inference.discovery.discover`
groups the files of one case (``<case>_0000.nii.gz``... or ``<case>_<name>.nii.gz``); :func:`read_case`
reads them, checks that they lie on one grid and stacks them in the recorded order, ``[X, Y, Z, C]``.

A missing channel is refused by default, naming the expected channels and the files found.
``--missing-channel zeros`` stands in a channel of zeros after normalisation (the normalised mean
of a z-scored channel), ``copy:<name>`` a copy of another channel; either is logged and recorded in
the case's sidecar JSON (``channels`` and ``warnings``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg import geometry
from medseg.data.cases import GRID_TOL_MM
from medseg.errors import ConfigError, GeometryMismatchError, MedsegError
from medseg.inference.discovery import CaseInput
from medseg.volume import Volume

log = logging.getLogger(__name__)

#: The values of ``--missing-channel``.
MISSING_CHOICES = "refuse, zeros or copy:<channel name>"

_NAMING_HINT = "name the files <case>_0000, <case>_0001... in the model's order, or <case>_<channel name>"


def default_names(n_channels: int) -> list[str]:
    """``channel_0``, ``channel_1``...: the names of a run that records none."""
    return [f"channel_{i}" for i in range(n_channels)]


@dataclass(frozen=True)
class MissingChannel:
    """What to do when a case lacks a channel: ``refuse`` (fail the case), ``zeros`` (a channel of
    zeros after normalisation) or ``copy`` (the channel at index ``source``)."""

    action: str = "refuse"
    source: int | None = None

    @classmethod
    def parse(cls, text: str, names: Sequence[str] | None) -> MissingChannel:
        """Read ``refuse``, ``zeros`` or ``copy:<name>`` (a channel name, any case, or its index).
        With ``names=None`` only the form is checked (before the model is loaded).

        Raises:
            ConfigError: another value, or a channel the model does not take.
        """
        value = text.strip()
        if value.lower() in ("refuse", "zeros"):
            return cls(value.lower())
        if not value.lower().startswith("copy:") or not value[5:].strip():
            raise ConfigError(f"--missing-channel {text!r} is not one of {MISSING_CHOICES}")
        wanted = value[5:].strip()
        if names is None:
            return cls("copy")
        folded = [n.casefold() for n in names]
        if wanted.casefold() in folded:
            return cls("copy", folded.index(wanted.casefold()))
        if wanted.isdigit() and int(wanted) < len(names):
            return cls("copy", int(wanted))
        raise ConfigError(
            f"--missing-channel copy:{wanted}: the model has no channel {wanted!r}",
            hint=f"copy one of its channels: {', '.join(names)}",
        )

    def describe(self, names: Sequence[str]) -> str:
        """``zeros`` or ``copy of <name>``: what stands in for a missing channel."""
        return "zeros" if self.action == "zeros" else f"copy of {names[self.source or 0]}"


@dataclass(frozen=True)
class ChannelOptions:
    """The model's input channels, in order, and the policy for a missing one."""

    names: tuple[str, ...]
    missing: MissingChannel = field(default_factory=MissingChannel)

    @classmethod
    def of_predictor(cls, predictor: Any) -> ChannelOptions:
        """The recorded names a predictor carries (``channel_names``), else ``channel_0``...; refuse."""
        names = getattr(predictor, "channel_names", None)
        if not names:
            plan = getattr(predictor, "plan", None)
            names = default_names(int(getattr(plan, "n_channels", 1)))
        return cls(tuple(names))


@dataclass
class CaseImage:
    """A case read for the network: ``volume`` ``[X, Y, Z]`` or ``[X, Y, Z, C]``, the channels
    to set to zero after normalisation (``zeros``), and what the sidecar JSON records about them."""

    volume: Volume
    zeros: list[int] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


Reader = Callable[..., Volume]


def read_case(
    case: CaseInput, options: ChannelOptions, resample_uneven: bool = False, reader: Reader | None = None
) -> CaseImage:
    """Read one case: a single file or series as it is, or its channel files stacked in the
    model's order on axis 3 (``[X, Y, Z, C]``), with missing channels handled by ``options``.

    ``reader`` reads one file (default: :func:`medseg.io.isolated.read_isolated`, a worker process).

    Raises:
        MedsegError: a channel given twice or unknown, a missing channel under ``refuse`` (naming the
            expected channels and the files found), a channel file that is not 3D.
        GeometryMismatchError: a channel not on the grid of the others.
    """
    if reader is None:
        from medseg.io.isolated import read_isolated as reader
    if case.channels is None:
        return CaseImage(reader(case.path, series=case.series, resample_uneven=resample_uneven))
    names, files = options.names, case.channels
    if case.problem:
        raise MedsegError(
            f"case {case.id}: {case.problem}; the model takes {_listed(names)}", hint=_NAMING_HINT
        )
    missing = [i for i, p in enumerate(files) if p is None]
    _check_missing(case, names, missing, options.missing)
    volumes = {
        i: _channel_volume(case, names[i], p, reader(p, resample_uneven=resample_uneven))
        for i, p in enumerate(files)
        if p is not None
    }
    first = min(volumes)
    for i in volumes:
        _check_grid(case, names, (first, volumes[first]), (i, volumes[i]))
    policy = options.missing
    arrays, used = [], {}
    for i, p in enumerate(files):
        if p is not None:
            arrays.append(volumes[i].array)
            used[names[i]] = p.name
        else:
            source = volumes[first].array if policy.action == "zeros" else volumes[policy.source or 0].array
            arrays.append(np.zeros_like(source) if policy.action == "zeros" else source)
            used[names[i]] = policy.describe(names)
    notes: dict[str, Any] = {"channels": used}
    if missing:
        warning = f"missing channel(s) {', '.join(names[i] for i in missing)}: {policy.describe(names)} used"
        log.warning("case %s: %s", case.id, warning)
        notes["warnings"] = [warning]
    image = Volume(np.stack(arrays, axis=-1), volumes[first].affine.copy(), volumes[first].meta)
    return CaseImage(image, missing if policy.action == "zeros" else [], notes)


def blank_channels(image: np.ndarray, zeros: Sequence[int]) -> None:
    """Set the channels ``zeros`` of a preprocessed ``[C, *S]`` image to 0 in place (the mean of a
    z-scored channel; the bottom of the range after percentile or window normalisation)."""
    for i in zeros:
        image[i] = 0.0


def _listed(names: Sequence[str]) -> str:
    return f"channels {', '.join(names)}"


def _check_missing(case: CaseInput, names: Sequence[str], missing: list[int], policy: MissingChannel) -> None:
    """Refuse a case that lacks channels under ``refuse``, or whose stand-in is missing too."""
    if not missing:
        return
    found = [f"{names[i]} ({p.name})" for i, p in enumerate(case.channels or ()) if p is not None]
    lacking = ", ".join(names[i] for i in missing)
    if policy.action == "refuse":
        raise MedsegError(
            f"case {case.id}: the model takes {_listed(names)}; found {', '.join(found)}; missing {lacking}",
            hint=f"add the missing file(s) ({_NAMING_HINT}), or predict with --missing-channel zeros "
            "or copy:<channel>",
        )
    if policy.action == "copy" and policy.source in missing:
        raise MedsegError(
            f"case {case.id}: channel {names[policy.source]} is missing too, so it cannot stand in for "
            f"{lacking}; found {', '.join(found)}",
            hint="copy a channel the case has, or use --missing-channel zeros",
        )


def _channel_volume(case: CaseInput, name: str, path: Path, volume: Volume) -> Volume:
    """``volume`` as one 3D channel (a 4D file with one volume is squeezed).

    Raises:
        MedsegError: a 4D file with several volumes.
    """
    if volume.array.ndim == 4:
        if volume.array.shape[3] != 1:
            raise MedsegError(
                f"case {case.id}: {path.name}, channel {name}, holds {volume.array.shape[3]} volumes",
                hint="give one 3D file per channel (or rename a 4D scan whose name ends in _<NNNN> or "
                "_<channel name>)",
            )
        return Volume(volume.array[..., 0], volume.affine, volume.meta)
    return volume


def _check_grid(
    case: CaseInput, names: Sequence[str], ref: tuple[int, Volume], other: tuple[int, Volume]
) -> None:
    """Refuse channel ``other`` when it is not on the grid of channel ``ref`` (shape, or voxels
    more than ``GRID_TOL_MM`` apart, as training checks the channels of a case)."""
    (i, a), (j, b) = ref, other
    if geometry.same_grid(a.affine, a.spatial_shape, b.affine, b.spatial_shape, GRID_TOL_MM):
        return
    if a.spatial_shape != b.spatial_shape:
        what = f"shape {b.spatial_shape} vs {a.spatial_shape}"
    else:
        d = geometry.grid_distance(a.affine, a.spatial_shape, b.affine, b.spatial_shape)
        what = f"voxels up to {d:.3g} mm apart"
    files = case.channels or ()
    raise GeometryMismatchError(
        f"case {case.id}: channel {names[j]} ({_name(files[j])}) is not on the grid of "
        f"{names[i]} ({_name(files[i])}): {what}",
        hint="resample every channel of a case onto one grid first",
    )


def _name(path: Path | None) -> str:
    return path.name if path is not None else "none"
