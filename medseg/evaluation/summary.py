"""Summary statistics over cases, and the pixel confusion matrix of 2D label images."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ConfusionMatrix", "describe", "iou_summary", "pair_counts"]


def describe(values: Iterable[float]) -> dict[str, Any]:
    """Mean, median, sample standard deviation (ddof=1), min and max of the finite values.

    Infinite and NaN values (distances to an empty mask) are left out of the statistics
    and counted in ``n_nonfinite``; ``n`` counts every value.
    """
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    out: dict[str, Any] = {
        "n": int(arr.size),
        "n_finite": int(finite.size),
        "n_nonfinite": int(arr.size - finite.size),
    }
    if finite.size == 0:
        out.update(mean=None, median=None, std=None, min=None, max=None)
        return out
    out.update(
        mean=float(finite.mean()),
        median=float(np.median(finite)),
        std=float(finite.std(ddof=1)) if finite.size > 1 else None,
        min=float(finite.min()),
        max=float(finite.max()),
    )
    return out


def iou_summary(rows: Iterable[Any], labels: Mapping[int, str], unit: str = "ml") -> dict[str, Any]:
    """The mean IoU over classes two ways, for ``summary.json``'s ``miou``.

    * ``mean_iou_per_case``: mean over the classes of each class's mean IoU over cases (both-empty
      cases count as 1, the convention of :func:`~medseg.evaluation.metrics.iou`);
    * ``mean_iou_pooled``: the semantic-segmentation convention (PASCAL VOC, Cityscapes): per class the
      dataset-level IoU ``sum(|P∩R|) / sum(|P∪R|)`` over cases, then the mean over the classes present
      in some case (a class absent from every prediction and reference is left out).

    Intersections and unions are physical sizes recovered from each row's Dice and sizes
    (``|P∩R| = Dice (|P| + |R|) / 2``), so they pool voxels by volume; on one grid (and for pictures,
    in px²) this is pooling voxel counts.

    Args:
        rows: :class:`~medseg.evaluation.results.MetricRow`-like rows (``class_id``, ``iou``, ``dice``,
            ``volume_pred_ml``, ``volume_ref_ml``).
        labels: The classes ``{id: name}``.
        unit: Unit of the pooled sizes (ml, mm2 or px2), recorded.
    """
    rows = list(rows)
    classes: dict[str, Any] = {}
    for label, name in labels.items():
        subset = [r for r in rows if r.class_id == label]
        ious = [r.iou for r in subset if math.isfinite(r.iou)]
        inter = union = 0.0
        for r in subset:
            size = r.volume_pred_ml + r.volume_ref_ml
            if math.isfinite(r.dice) and math.isfinite(size):
                inter += r.dice * size / 2.0
                union += size - r.dice * size / 2.0
        classes[str(label)] = {
            "name": name,
            "mean_iou_per_case": float(np.mean(ious)) if ious else None,
            "iou_pooled": inter / union if union > 0 else None,
            "intersection": inter,
            "union": union,
        }

    def mean_of(key: str) -> float | None:
        values = [c[key] for c in classes.values() if c[key] is not None]
        return float(np.mean(values)) if values else None

    return {
        "mean_iou_per_case": mean_of("mean_iou_per_case"),
        "mean_iou_pooled": mean_of("iou_pooled"),
        "unit": unit,
        "classes": classes,
    }


def pair_counts(pred: np.ndarray, ref: np.ndarray) -> dict[tuple[int, int], int]:
    """Number of pixels of each (reference label, predicted label) pair."""
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    base = int(max(pred.max(initial=0), ref.max(initial=0))) + 1
    codes, counts = np.unique(
        ref.astype(np.int64).ravel() * base + pred.astype(np.int64).ravel(), return_counts=True
    )
    return {(int(c // base), int(c % base)): int(n) for c, n in zip(codes, counts)}


@dataclass
class ConfusionMatrix:
    """Pixel counts of (reference label, predicted label) over all cases.

    ``matrix[i, j]`` counts pixels whose reference is ``labels[i]`` and whose prediction is
    ``labels[j]``; ``labels[0]`` is background (0). Labels outside ``labels`` count as background.
    """

    labels: list[int]
    names: list[str]
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))

    @classmethod
    def empty(cls, labels: Mapping[int, str]) -> ConfusionMatrix:
        """A zero matrix over background and ``labels``."""
        ids = [0, *sorted(labels)]
        names = ["background", *(labels[i] for i in sorted(labels))]
        return cls(ids, names, np.zeros((len(ids), len(ids)), dtype=np.int64))

    @classmethod
    def from_counts(cls, counts: Mapping[tuple[int, int], int], labels: Mapping[int, str]) -> ConfusionMatrix:
        """The matrix over background and ``labels`` from ``{(reference, prediction): pixels}``
        (see :func:`pair_counts`); labels outside ``labels`` count as background."""
        cm = cls.empty(labels)
        index = {label: i for i, label in enumerate(cm.labels)}
        for (r, p), n in counts.items():
            cm.matrix[index.get(r, 0), index.get(p, 0)] += int(n)
        return cm

    def iou(self) -> dict[int, float]:
        """IoU of every label (background included) from the pooled pixel counts."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        return {
            label: (float(tp[i] / denom[i]) if denom[i] else math.nan) for i, label in enumerate(self.labels)
        }

    def mean_iou(self, include_background: bool = False) -> float:
        """Mean over labels of the pooled IoU (labels absent from both are skipped)."""
        values = [
            v for label, v in self.iou().items() if (include_background or label != 0) and not math.isnan(v)
        ]
        return float(np.mean(values)) if values else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (rows: reference, columns: prediction)."""
        return {
            "labels": list(self.labels),
            "names": list(self.names),
            "rows": "reference",
            "columns": "prediction",
            "matrix": self.matrix.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfusionMatrix:
        """Inverse of :meth:`to_dict`."""
        return cls(list(data["labels"]), list(data["names"]), np.asarray(data["matrix"], dtype=np.int64))

    def to_csv_rows(self) -> list[Sequence[Any]]:
        """Rows of a CSV table: header ``reference\\prediction, names...`` then one row per label."""
        rows: list[Sequence[Any]] = [["reference\\prediction", *self.names]]
        rows.extend([name, *self.matrix[i].tolist()] for i, name in enumerate(self.names))
        return rows
