"""The preprocessing :class:`Plan`: what a model was trained on, replayed exactly at prediction.

Order of the steps, per case (each recorded in a :class:`CaseRecord`):

1. **Reorient** to the plan's canonical orientation (axis permutation/flips, exact).
2. **Crop** to the bounding box of the non-zero region (optional).
3. **Resample** to the target spacing (edge-aligned; images linear, labels nearest).
4. **Normalise** intensities (z-score, CT percentile clip + dataset z-score, CT window, or
   per-case percentiles), one scheme for every channel or one per channel (e.g. CT + PET).

:meth:`Plan.invert` undoes 3, 2 and 1 for a label map (nearest) or probabilities (linear),
giving an array on the source grid with the source affine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg import geometry
from medseg.transforms.preprocess.resample import (
    resample_argmax,
    resample_array,
    resampled_affine,
    resampled_shape,
)
from medseg.volume import Volume, VolumeMeta

if TYPE_CHECKING:
    import torch

PLAN_VERSION = 1

NORMALIZATIONS = ("zscore", "ct", "window", "percentile", "none")


def channel_schemes(normalization: str | list[str], n_channels: int) -> list[str]:
    """The normalisation scheme of each of ``n_channels`` channels, in channel order.

    Args:
        normalization: One scheme for every channel, or a list of one scheme per channel.
        n_channels: The number of input channels.

    Raises:
        ValueError: a list whose length is not ``n_channels``, or an unknown scheme (one line).
    """
    schemes = [normalization] * n_channels if isinstance(normalization, str) else list(normalization)
    if len(schemes) != n_channels:
        raise ValueError(
            f"preprocessing.normalization lists {len(schemes)} scheme(s) ({', '.join(schemes)}) but the "
            f"images have {n_channels} channel(s); give one scheme per channel, in channel order"
        )
    unknown = [x for x in schemes if x not in NORMALIZATIONS]
    if unknown:
        raise ValueError(f"unknown normalization {unknown[0]!r} (one of {', '.join(NORMALIZATIONS)})")
    return schemes


@dataclass
class CaseRecord:
    """What the plan did to one case (enough to invert it)."""

    source_shape: list[int]
    source_affine: list[list[float]]
    reoriented_shape: list[int]
    crop_start: list[int]
    crop_stop: list[int]
    resampled_shape: list[int]
    affine: list[list[float]]  # affine of the preprocessed grid
    norm: list[dict[str, float]] = field(default_factory=list)  # per channel

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseRecord:
        return cls(**d)


@dataclass
class PreprocessedCase:
    """A case on the preprocessed grid: ``image`` [C, *spatial] float32, ``label`` [*spatial]."""

    image: np.ndarray
    label: np.ndarray | None
    record: CaseRecord


def _target(
    target_spacing: list[float] | str | None, median_spacing: list[float], keep_axes: tuple[int, ...]
) -> list[float | None] | None:
    """The plan's target spacing (mm per axis; None on an axis: never resampled; None: keep)."""
    if target_spacing is None:
        return None
    if target_spacing == "median":
        target: list[float | None] = [float(s) for s in median_spacing]
    else:
        target = [float(s) for s in target_spacing]
        if len(target) == 2:  # 2D model: in-plane spacing, keep the third axis
            target = [*target, None]
    for ax in keep_axes:
        target[ax] = None
    return target


def _ct_stats(fg_values: list[np.ndarray], schemes: list[str]) -> list[dict[str, float]] | None:
    """Per channel: dataset foreground percentiles (0.5, 99.5) and the clipped mean/std for the
    ``ct`` channels, ``{}`` for the others; None when no channel is ``ct``.

    Raises:
        ValueError: a ``ct`` channel but no labelled foreground voxels.
    """
    if "ct" not in schemes:
        return None
    if not fg_values:
        raise ValueError("CT normalisation needs labelled training cases")
    vals = np.concatenate(fg_values).reshape(-1, len(schemes))
    out: list[dict[str, float]] = []
    for c, scheme in enumerate(schemes):
        if scheme != "ct":
            out.append({})
            continue
        v = vals[:, c].astype(np.float64)
        lo, hi = np.percentile(v, [0.5, 99.5])
        clipped = np.clip(v, lo, hi)
        out.append(
            {"lo": float(lo), "hi": float(hi), "mean": float(clipped.mean()), "std": float(clipped.std())}
        )
    return out


@dataclass
class Plan:
    """Dataset-level preprocessing settings plus the dataset fingerprint they came from."""

    orientation: str = "RAS"
    target_spacing: list[float | None] | None = None
    normalization: str | list[str] = "zscore"  # one scheme, or one per channel
    window: str | None = None
    crop_foreground: bool = True
    n_channels: int = 1
    labels: dict[int, str] = field(default_factory=lambda: {0: "background"})
    ct_stats: list[dict[str, float]] | None = None  # per channel: lo, hi, mean, std ({} if not ct)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        channel_schemes(self.normalization, self.n_channels)  # refuse a list of the wrong length

    @property
    def schemes(self) -> list[str]:
        """The normalisation scheme of each channel, in channel order."""
        return channel_schemes(self.normalization, self.n_channels)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_dataset(
        cls,
        cases: list[tuple[Volume, Volume | None]],
        labels: dict[int, str],
        orientation: str = "RAS",
        target_spacing: list[float] | str | None = "median",
        normalization: str | list[str] = "zscore",
        window: str | None = None,
        crop_foreground: bool = True,
        keep_axes: tuple[int, ...] = (),
    ) -> Plan:
        """Fingerprint the training cases (spacings, shapes, CT intensities) and fix the settings.

        Args:
            cases: (image [i, j, k, c], label) pairs of the training cases.
            normalization: One scheme for every channel, or a list of one scheme per channel
                (channel order); CT statistics are computed for the ``ct`` channels only.
            keep_axes: axes never resampled (e.g. the slice axis of single-slice 2D images).

        Raises:
            ValueError: a normalisation list whose length is not the number of channels, an
                unknown scheme, or ``ct`` without labelled foreground in the training cases.
        """
        n_channels = cases[0][0].array.shape[3] if cases[0][0].array.ndim == 4 else 1
        schemes = channel_schemes(normalization, n_channels)
        spacings, shapes, fg_values = [], [], []
        rng = np.random.default_rng(0)
        for image, label in cases:
            arr, aff = geometry.reorient_array(image.array, image.affine, orientation)
            spacings.append(geometry.spacing(aff))
            shapes.append(arr.shape[:3])
            if "ct" in schemes and label is not None:
                lab, _ = geometry.reorient_array(label.array, label.affine, orientation)
                fg = arr[lab > 0]
                if fg.size:
                    fg_values.append(fg[rng.choice(len(fg), min(len(fg), 10000), replace=False)])
        median_spacing = np.median(np.array(spacings), axis=0).tolist()
        return cls(
            orientation=orientation,
            target_spacing=_target(target_spacing, median_spacing, keep_axes),
            normalization=normalization if isinstance(normalization, str) else list(normalization),
            window=window,
            crop_foreground=crop_foreground,
            n_channels=n_channels,
            labels=dict(labels),
            ct_stats=_ct_stats(fg_values, schemes),
            fingerprint={
                "n_cases": len(cases),
                "median_spacing": median_spacing,
                "median_shape": np.median(np.array(shapes), axis=0).tolist(),
                "min_shape": np.min(np.array(shapes), axis=0).tolist(),
                "max_shape": np.max(np.array(shapes), axis=0).tolist(),
            },
        )

    # -- serialisation -------------------------------------------------------------------
    def to_json(self) -> str:
        d = asdict(self)
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Read a plan written by :meth:`to_json`.

        Raises:
            CorruptFileError: text that is not a plan of this version (one line, with a hint).
        """
        from medseg.errors import CorruptFileError

        try:
            d = json.loads(text)
            if d.get("version") != PLAN_VERSION:
                raise ValueError(f"unsupported plan version {d.get('version')}")
            d["labels"] = {int(k): v for k, v in d["labels"].items()}
            return cls(**d)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptFileError(
                f"the preprocessing plan is damaged or from another medseg version: {exc}".splitlines()[0],
                hint="train again, or delete the preprocessing cache (data.cache_dir) if it holds this plan",
            ) from None

    def settings_key(self) -> str:
        """A hash of everything that changes the preprocessed arrays (cache key)."""
        import hashlib

        return hashlib.sha1(self.to_json().encode()).hexdigest()[:16]

    # -- forward ---------------------------------------------------------------------------
    def apply(
        self, image: Volume, label: Volume | None = None, device: torch.device | str | None = None
    ) -> PreprocessedCase:
        """Preprocess one case. ``image`` holds channels on axis 3 (or is 3D for one channel).

        ``device``: where the resampling runs (``None``: scipy on the CPU; a torch device: the
        torch implementation there, see :func:`~medseg.transforms.preprocess.resample.resample_array`).
        """
        arr = image.array if image.array.ndim == 4 else image.array[..., np.newaxis]
        if arr.shape[3] != self.n_channels:
            raise ValueError(f"plan expects {self.n_channels} channel(s), image has {arr.shape[3]}")
        arr_r, aff_r = geometry.reorient_array(arr, image.affine, self.orientation)
        lab_r = None
        if label is not None:
            lab_r, _ = geometry.reorient_array(label.array, label.affine, self.orientation)
        shape_r = arr_r.shape[:3]
        if self.crop_foreground:
            nz = np.any(arr_r != 0, axis=3)
            if lab_r is not None:
                nz |= lab_r > 0
            if nz.any():
                idx = np.nonzero(nz)
                start = [int(i.min()) for i in idx]
                stop = [int(i.max()) + 1 for i in idx]
            else:
                start, stop = [0, 0, 0], list(shape_r)
        else:
            start, stop = [0, 0, 0], list(shape_r)
        sl = tuple(slice(a, b) for a, b in zip(start, stop))
        arr_c = arr_r[sl]
        aff_c = aff_r.copy()
        aff_c[:3, 3] = (aff_r @ [*start, 1.0])[:3]
        lab_c = lab_r[sl] if lab_r is not None else None
        shape_c = arr_c.shape[:3]
        if self.target_spacing is None:
            shape_s = shape_c
        else:
            shape_s = resampled_shape(shape_c, geometry.spacing(aff_c), self.target_spacing)
        # one float32 copy (the crop is a view of the caller's array), normalised in place below
        img = resample_array(arr_c.astype(np.float32), shape_s, order=1, device=device)
        aff_s = resampled_affine(aff_c, shape_c, shape_s)
        lab = resample_array(lab_c, shape_s, order=0, device=device) if lab_c is not None else None
        img, norm = self._normalize(img)
        record = CaseRecord(
            source_shape=list(image.spatial_shape),
            source_affine=image.affine.tolist(),
            reoriented_shape=list(shape_r),
            crop_start=start,
            crop_stop=stop,
            resampled_shape=list(shape_s),
            affine=aff_s.tolist(),
            norm=norm,
        )
        image_out = np.ascontiguousarray(np.moveaxis(img, 3, 0), dtype=np.float32)
        label_out = np.ascontiguousarray(lab).astype(np.uint8) if lab is not None else None
        return PreprocessedCase(image_out, label_out, record)

    def _normalize(self, img: np.ndarray) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Normalise channel c of float32 ``img`` [*spatial, C] in place with scheme c (no copies)."""
        from medseg.transforms.intensity import apply_window

        stats = []
        for c, scheme in enumerate(channel_schemes(self.normalization, img.shape[3])):
            x = img[..., c]
            if scheme == "zscore":
                mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
                x -= np.float32(mean)
                x /= np.float32(max(std, 1e-8))
                stats.append({"mean": mean, "std": std})
            elif scheme == "ct":
                s = self.ct_stats[c]  # type: ignore[index]
                np.clip(x, s["lo"], s["hi"], out=x)
                x -= np.float32(s["mean"])
                x /= np.float32(max(s["std"], 1e-8))
                stats.append(dict(s))
            elif scheme == "window":
                x[...] = apply_window(x, self.window or "soft_tissue")
                stats.append({})
            elif scheme == "percentile":
                lo, hi = (float(v) for v in np.percentile(x, [0.5, 99.5]))
                np.clip(x, lo, hi, out=x)
                x -= np.float32(lo)
                x /= np.float32(max(hi - lo, 1e-8))
                stats.append({"lo": lo, "hi": hi})
            else:  # "none" (channel_schemes refuses unknown names)
                stats.append({})
        return img, stats

    def source_crop_box(self, record: CaseRecord) -> tuple[slice, ...]:
        """The crop box of ``record`` as slices of the *source* grid (after undoing the reorientation)."""
        source_affine = np.array(record.source_affine)
        mask = np.zeros(record.reoriented_shape, dtype=bool)
        mask[tuple(slice(a, b) for a, b in zip(record.crop_start, record.crop_stop))] = True
        reoriented_affine = geometry.reorient_array(
            np.zeros(record.source_shape, dtype=np.uint8), source_affine, self.orientation
        )[1]
        back, _ = geometry.reorient_array(mask, reoriented_affine, geometry.orientation_code(source_affine))
        idx = np.nonzero(back)
        return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)

    # -- inverse -----------------------------------------------------------------------------
    def invert(
        self,
        array: np.ndarray,
        record: CaseRecord,
        order: int = 0,
        fill: float = 0,
        device: torch.device | str | None = None,
    ) -> Volume:
        """Map an array on the preprocessed grid back onto the case's source grid.

        Args:
            array: ``[*spatial]`` labels (``order=0``) or ``[C, *spatial]`` probabilities (``order=1``);
                for the latter the returned Volume's array is channels-first ``[C, *spatial]``.
            record: The case's record from :meth:`apply`.
            order: 0 nearest (labels), 1 linear (probabilities).
            fill: Value outside the cropped region (background).
            device: Where the resampling runs (``None``: scipy on the CPU; a torch device: the
                torch implementation there).
        """
        channels_first = array.ndim == 4
        arr = np.moveaxis(array, 0, -1) if channels_first else array
        shape_c = [b - a for a, b in zip(record.crop_start, record.crop_stop)]
        back = resample_array(arr, shape_c, order=order, device=device)
        out = self._on_source_grid(back, record, fill)
        if channels_first:
            out = np.moveaxis(out, -1, 0)
        arr_out = out if channels_first else np.ascontiguousarray(out)
        return Volume(arr_out, np.array(record.source_affine), VolumeMeta())

    def invert_argmax(
        self,
        probabilities: np.ndarray,
        record: CaseRecord,
        dtype: np.dtype | type = np.uint8,
        device: torch.device | str | None = None,
    ) -> Volume:
        """The labels of class probabilities on the preprocessed grid, on the case's source grid:
        the probabilities resampled linearly to the source spacing, then the arg-max
        (:func:`~medseg.transforms.preprocess.resample.resample_argmax`, nnU-Net's export), so
        boundaries fall between the coarse grid's voxels where the network put them.

        Args:
            probabilities: ``[K, *S]`` softmax on the preprocessed grid ``S`` (class 0 background).
            record: The case's record from :meth:`apply`.
            dtype: Of the labels.
            device: Where the resampling runs (None: the CPU).

        Returns:
            A Volume of labels ``[X, Y, Z]`` on the source grid (0 outside the cropped region).
        """
        shape_c = [b - a for a, b in zip(record.crop_start, record.crop_stop)]
        back = resample_argmax(probabilities, shape_c, dtype=dtype, device=device)
        out = self._on_source_grid(back, record, 0)
        return Volume(np.ascontiguousarray(out), np.array(record.source_affine), VolumeMeta())

    def _on_source_grid(self, back: np.ndarray, record: CaseRecord, fill: float) -> np.ndarray:
        """``back`` ``[*crop, *extra]`` put into the reoriented grid (``fill`` outside the crop)
        and turned back to the source orientation ``[*source, *extra]``."""
        full_shape = list(record.reoriented_shape) + list(back.shape[3:])
        full = np.full(full_shape, fill, dtype=back.dtype)
        sl = tuple(slice(a, b) for a, b in zip(record.crop_start, record.crop_stop))
        full[sl] = back
        source_affine = np.array(record.source_affine)
        source_codes = geometry.orientation_code(source_affine)
        reoriented_affine = geometry.reorient_array(
            np.zeros(record.source_shape, dtype=np.uint8), source_affine, self.orientation
        )[1]
        out, out_affine = geometry.reorient_array(full, reoriented_affine, source_codes)
        if not geometry.same_grid(out_affine, out.shape, source_affine, record.source_shape, 1e-3):
            raise RuntimeError("inverse preprocessing did not land on the source grid (bug)")
        return out
