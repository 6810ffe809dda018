"""What a prediction is made of: the scan prepared for the network (:class:`PreparedCase`), the
result (:class:`Prediction`), and the pieces every predictor (one model or an ensemble) builds it
from: the label map on the source grid and the record written beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.inference.postprocess import PostprocessOptions
from medseg.volume import Volume

if TYPE_CHECKING:
    from medseg.transforms.preprocess import PreprocessedCase


@dataclass
class PreparedCase:
    """A scan checked and preprocessed for the network (what :meth:`Predictor.prepare` returns).

    Attributes:
        image: The source scan (the mask is mapped back onto its grid).
        case: The scan on the network's grid: ``case.image`` ``[C, *S]`` float32, and
            ``case.record``, which inverts the preprocessing.
        seconds: Time spent on this case so far (each stage adds its own), in seconds.
        crf: What the dense CRF did (options, voxels, seconds), when it ran.
        softmax: The softmax ``[K, *S]`` kept by :meth:`Predictor.infer` for a case it predicted on
            a resampled grid, which :meth:`Predictor.finish` resamples (not the labels) to the
            source grid, then drops.
    """

    image: Volume
    case: PreprocessedCase
    seconds: float = 0.0
    crf: dict[str, Any] | None = None
    softmax: Any = None


@dataclass
class Prediction:
    """A predicted label map on the source grid, with optional probabilities and a record."""

    labels: Volume
    probabilities: Volume | None = None
    info: dict[str, Any] = field(default_factory=dict)


def source_grid_labels(array: np.ndarray, image: Volume, meta: Any = None) -> Volume:
    """A label map on the grid of ``image`` carrying its source path and DICOM identifiers (what
    the SEG/RTSTRUCT exports reference)."""
    out = Volume(array, image.affine.copy(), meta) if meta is not None else Volume(array, image.affine.copy())
    for key in ("source", "series_uid", "study_uid", "frame_of_reference_uid"):
        setattr(out.meta, key, getattr(image.meta, key))
    out.meta.sop_instance_uids = list(image.meta.sop_instance_uids)
    return out


def prediction_record(
    predictor: Any, model_name: str, options: PostprocessOptions, prepared: PreparedCase, **extra: Any
) -> dict[str, Any]:
    """The record of one prediction (``<case>.json``): the model, labels, TTA, engine, overlap,
    post-processing, seconds, and the CRF and regions when used; ``extra`` keys come after the model."""
    info: dict[str, Any] = {
        "model": model_name,
        **extra,
        "labels": {str(k): v for k, v in predictor.plan.labels.items()},
        "tta": predictor.tta,
        "tta_axes": predictor.tta_axes if predictor.tta else [],
        "backend": predictor.backend.name,
        "precision": predictor.precision.value,
        "overlap": predictor.overlap,
        "postprocess": options.to_dict(),
        "seconds": round(prepared.seconds, 3),
    }
    if prepared.crf is not None:
        info["crf"] = prepared.crf
    if predictor.regions:  # the probability maps, one per region, follow this order
        info["regions"] = [r.model_dump() for r in predictor.regions]
    return info
