"""Class weights from the label voxel frequencies of the training cases.

Two schemes (``loss.class_weighting``):

* ``median_frequency``: median frequency balancing, Eigen & Fergus, "Predicting Depth, Surface
  Normals and Semantic Labels with a Common Multi-Scale Convolutional Architecture", ICCV 2015:
  ``w_c = median(f) / f_c``, where ``f_c`` is the number of voxels of class ``c`` divided by the
  number of voxels of the cases in which ``c`` is present, and the median is over the present
  classes (the median class gets weight 1).
* ``enet``: Paszke et al., "ENet: A Deep Neural Network Architecture for Real-Time Semantic
  Segmentation", 2016: ``w_c = 1 / ln(1.02 + p_c)``, where ``p_c`` is class ``c``'s share of all
  voxels (weights between about 1.4 and 50.5).

A class absent from every case gets weight 0 (it never is a training target, so the weight
changes nothing for cross-entropy) and is reported in :attr:`ClassFrequencies.absent`, for the
caller to warn about. Counting is one ``bincount`` per case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: The schemes of :func:`class_weights`.
SCHEMES = ("median_frequency", "enet")

#: ENet's constant ``c`` in ``1 / ln(c + p)``.
ENET_C = 1.02


@dataclass(frozen=True)
class ClassFrequencies:
    """Voxel counts per class (or region) over a set of cases.

    Attributes:
        counts: Voxels of each class, ``[K]``.
        present_voxels: Voxels of the cases in which each class is present, ``[K]``.
        total: Voxels of all cases.
    """

    counts: np.ndarray
    present_voxels: np.ndarray
    total: int

    @property
    def absent(self) -> list[int]:
        """Indices of the classes with no voxel in any case."""
        return [int(k) for k in np.flatnonzero(self.counts == 0)]


def count_classes(
    labels: Iterable[np.ndarray], n_classes: int | None, groups: Sequence[Sequence[int]] | None = None
) -> ClassFrequencies:
    """Count the voxels of each class over integer label arrays (any shape), one bincount per case.

    Args:
        labels: Label arrays (NumPy or anything ``np.asarray`` takes, e.g. CPU tensors).
        n_classes: Classes ``C`` (label values ``0..C-1``, background included); None: no bound
            (with ``groups``).
        groups: Optional: the label values of each of ``K`` units (regions), counted as their
            union; default: each class is a unit (``K = C``).

    Raises:
        ValueError: a label value outside ``0..C-1``, a negative label, or no case.
    """
    width = max([n_classes or 0] + [max(g) + 1 for g in groups or [] if len(g)])
    rows, totals = [], []
    for lab in labels:
        flat = np.asarray(lab).reshape(-1).astype(np.int64, copy=False)
        if flat.size and flat.min() < 0:
            raise ValueError(f"negative label value {int(flat.min())}")
        h = np.bincount(flat, minlength=width)
        if n_classes is not None and h.size > n_classes:
            raise ValueError(f"label value {h.size - 1} is outside the {n_classes} classes")
        rows.append(h)
        totals.append(flat.size)
    if not rows:
        raise ValueError("no label arrays to count classes in")
    width = max(h.size for h in rows)
    per_case = np.stack([np.pad(h, (0, width - h.size)) for h in rows]).astype(np.float64)  # [cases, C]
    if groups is not None:
        per_case = np.stack([per_case[:, list(g)].sum(axis=1) for g in groups], axis=1)  # [cases, K]
    case_totals = np.asarray(totals, dtype=np.float64)
    present = (per_case > 0) * case_totals[:, None]
    return ClassFrequencies(per_case.sum(axis=0), present.sum(axis=0), int(case_totals.sum()))


def class_weights(freq: ClassFrequencies, scheme: str) -> np.ndarray:
    """The weight of each class (``[K]``, float64) under ``scheme``; 0 for absent classes.

    Raises:
        ValueError: an unknown scheme.
    """
    present = freq.counts > 0
    out = np.zeros(freq.counts.shape, dtype=np.float64)
    if scheme == "median_frequency":
        f = freq.counts[present] / freq.present_voxels[present]
        out[present] = np.median(f) / f
    elif scheme == "enet":
        p = freq.counts[present] / max(freq.total, 1)
        out[present] = 1.0 / np.log(ENET_C + p)
    else:
        raise ValueError(f"unknown class weighting {scheme!r}: choose {' or '.join(SCHEMES)}")
    return out
