"""Checks shared by the SEG and RTSTRUCT writers: the mask, its grid and its labels."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError, MedsegError
from medseg.export.labels import LabelSet, LabelSpec, load_labels
from medseg.export.reference import ReferenceSeries, load_reference, place_on_grid
from medseg.volume import Volume

log = logging.getLogger(__name__)


class EmptyMaskError(MedsegError):
    """A mask with no foreground: a SEG needs at least one segment, an RTSTRUCT one ROI."""

    exit_code = 15  # unique per class: docs/troubleshooting.md


@dataclass
class PreparedMask:
    """A mask placed on its reference grid, with the labels of the classes it holds.

    ``array`` is a label map ``[i, j, k]`` (integers), or for fractional export a float
    array ``[i, j, k, c]`` in [0, 1] with one channel per entry of ``labels``.
    """

    array: np.ndarray
    labels: list[LabelSpec]
    reference: ReferenceSeries
    fractional: bool = False


def _as_volume(mask: Volume | str | Path) -> tuple[Volume, str]:
    if isinstance(mask, Volume):
        return mask, f"mask {mask.meta.source}" if mask.meta.source else "the mask"
    from medseg.io import read_volume

    return read_volume(mask), f"mask {mask}"


def _label_array(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise ConfigError(
                f"{what} holds non-integer values (e.g. {float(array[bad].flat[0])!r}); "
                "a SEG or RTSTRUCT is made from a label map",
                hint="export an integer label map (argmax of the probabilities); "
                "fractional SEGs take one probability channel per label",
            )
    if array.size and array.min() < 0:
        raise ConfigError(
            f"{what} holds negative label values", hint="label values are 0 (background) to 65535"
        )
    if array.size and array.max() > 65535:
        raise ConfigError(f"{what} holds label values above 65535")
    return array.astype(np.uint16 if array.size and array.max() > 255 else np.uint8)


def prepare_mask(
    mask: Volume | str | Path,
    reference: ReferenceSeries | str | Path,
    labels: LabelSet | str | Path | dict | list | None,
    fractional: bool = False,
    series: str | None = None,
) -> PreparedMask:
    """Place ``mask`` on the reference grid and pair each class present with its label.

    Raises:
        GeometryMismatchError: the mask is not on the reference grid (nor an axis
            permutation/flip of it).
        ConfigError: non-integer label map, label values the labels file does not name,
            or fractional channels that do not match the labels.
        EmptyMaskError: nothing to export.
    """
    volume, what = _as_volume(mask)
    ref = reference if isinstance(reference, ReferenceSeries) else load_reference(reference, series)
    label_set = load_labels(labels) if labels is not None else None
    target = f"reference series {ref.series_id} in {ref.folder}"
    array = volume.array
    if array.ndim == 4 and array.shape[3] == 1 and not fractional:
        volume = volume.with_array(array[..., 0])
    elif array.ndim == 4 and not fractional:
        raise ConfigError(
            f"{what} is 4D ({array.shape[3]} volumes); a label map is 3D",
            hint="export one 3D label map, or pass fractional=True (--fractional) with one "
            "probability channel per label",
        )
    placed = place_on_grid(volume, ref.affine, ref.shape, what, target)
    if fractional and placed.ndim == 4:
        return _prepare_fractional(placed, what, ref, label_set)
    label_map = _label_array(placed, what)
    present = [int(v) for v in np.unique(label_map) if v != 0]
    if not present:
        raise EmptyMaskError(f"{what} is empty (no voxel above 0): there is nothing to export")
    if label_set is None:
        label_set = LabelSet.generic(present)
        log.warning("no labels file given: segments are named 'Segment N' and coded as generic Tissue")
    missing = [v for v in present if label_set.get(v) is None]
    if missing:
        listed = ", ".join(str(v) for v in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(
            f"{what} holds label value(s) {listed} that the labels file does not name "
            f"(it names {', '.join(str(i) for i in label_set.indices[:10])}"
            f"{' ...' if len(label_set.indices) > 10 else ''})",
            hint="add an entry for each label value to the labels file",
        )
    absent = [label.name for label in label_set.labels if label.index not in present]
    if absent:
        log.info("%d labelled class(es) absent from the mask are not exported: %s", len(absent), absent[:10])
    return PreparedMask(label_map, [label_set.get(v) for v in present], ref)


def _prepare_fractional(
    placed: np.ndarray, what: str, ref: ReferenceSeries, label_set: LabelSet | None
) -> PreparedMask:
    n = placed.shape[3]
    if label_set is None:
        label_set = LabelSet.generic(list(range(1, n + 1)))
    if len(label_set.labels) != n:
        raise ConfigError(
            f"{what} has {n} probability channels but the labels file names {len(label_set.labels)} labels",
            hint="give one channel per label, in the order of the label values (no background channel)",
        )
    probs = placed.astype(np.float32)
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ConfigError(f"{what}: probabilities must lie within [0, 1]")
    keep = [c for c in range(n) if probs[..., c].max() > 0]
    if not keep:
        raise EmptyMaskError(f"{what} is empty (all probabilities are 0): there is nothing to export")
    return PreparedMask(probs[..., keep], [label_set.labels[c] for c in keep], ref, fractional=True)
