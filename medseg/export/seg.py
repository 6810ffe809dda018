"""DICOM Segmentation (SEG) export through highdicom (PS3.3 A.51, C.8.20).

Export writes one segment per class present in the mask (BINARY, or FRACTIONAL
probabilities), frames referencing the exact source instances, empty frames omitted.
Segments are numbered 1..N in label order (the standard asks for consecutive
numbers); each segment records its original label value in its Segment Description
(``medseg label value 5``) so that import gives back the same label map.

Import (:func:`read_seg`) lives in core, :mod:`medseg.io.dicom.seg_read`, and is
re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.export.dicom_common import (
    AlgorithmType,
    algorithm_parameters,
    derived_series_number,
    label_value_note,
    medseg_version,
    minimal_source_header,
)
from medseg.export.labels import LabelSet, LabelSpec
from medseg.export.options import ExportOptions
from medseg.export.prepare import prepare_mask
from medseg.export.reference import (
    ReferenceSeries,
    frames_from_array,
)
from medseg.io.atomic import atomic_output
from medseg.io.dicom.seg_read import read_seg
from medseg.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["read_seg", "write_seg"]


def _segment_description(
    number: int,
    label: LabelSpec,
    options: ExportOptions,
) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = None
    if options.algorithm_type is not AlgorithmType.MANUAL:
        identification = hd.AlgorithmIdentificationSequence(
            name=options.algorithm_name,
            family=codes.cid7162.ArtificialIntelligence,
            version=medseg_version(),
            source="medseg",
            parameters=algorithm_parameters(options.model_name),
        )
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label.name,
        segmented_property_category=label.category.to_highdicom(),
        segmented_property_type=label.type.to_highdicom(),
        algorithm_type=options.algorithm_type.value.upper(),
        algorithm_identification=identification,
        display_color=hd.color.CIELabColor.from_rgb(*label.color),
    )
    if label.modifier is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            label.modifier.to_highdicom()
        ]
    description.SegmentDescription = label_value_note(label.index)
    return description


def write_seg(
    mask: Volume | str | Path,
    reference_dir: str | Path | ReferenceSeries,
    labels: LabelSet | str | Path | dict | list | None,
    output: str | Path,
    options: ExportOptions | None = None,
) -> Path:
    """Write ``mask`` as a DICOM SEG that references the source series, atomically.

    Args:
        mask: Label map (Volume or image path) on the reference series grid, or on any
            axis permutation/flip of it. With ``options.fractional`` it may instead be a 4D
            array of probabilities in [0, 1], one channel per label of ``labels``.
        reference_dir: Folder of the source DICOM series (or a loaded reference).
        labels: Labels file/dict naming each class (None: generic names and codes).
        output: The ``.dcm`` file to write.
        options: Algorithm and model recorded in each segment, ``fractional`` (a
            FRACTIONAL, probability, SEG instead of BINARY), ``series`` of
            ``reference_dir``, SeriesDescription (default names the model).

    Returns:
        The written path.

    Raises:
        MedsegError: a geometry mismatch, unnamed labels, an empty mask, an
            unusable reference series (subclasses name which).
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    options = options or ExportOptions()
    fractional = options.fractional
    prepared = prepare_mask(mask, reference_dir, labels, fractional=fractional, series=options.series)
    ref = prepared.reference
    descriptions = [
        _segment_description(n, label, options) for n, label in enumerate(prepared.labels, start=1)
    ]
    frames = frames_from_array(prepared.array)
    if prepared.fractional:
        pixels = frames  # [k, row, column, segment] probabilities
        seg_type = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        lut = np.zeros(int(prepared.array.max()) + 1, dtype=np.uint16)
        for n, label in enumerate(prepared.labels, start=1):
            lut[label.index] = n
        relabelled = lut[frames]  # consecutive segment numbers, label-map style
        pixels = relabelled.astype(np.uint8 if len(descriptions) < 256 else np.uint16)
        seg_type = (
            hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
        )
        if fractional:  # a label map written as FRACTIONAL: one 0/1 channel per segment
            pixels = np.stack([relabelled == n for n in range(1, len(descriptions) + 1)], axis=-1)
            pixels = pixels.astype(np.float32)
    what = options.recorded_name
    try:
        seg = hd.seg.Segmentation(
            source_images=[minimal_source_header(ds) for ds in ref.datasets],
            pixel_array=pixels,
            segmentation_type=seg_type,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=derived_series_number(ref.meta),
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name=what[:64],
            software_versions=f"medseg {medseg_version()}",
            device_serial_number="none",
            content_description=f"Segmentation by {what}"[:64],
            content_label="MEDSEG",
            series_description=(options.series_description or f"SEG {what}")[:64],
            omit_empty_frames=True,
        )
    except (ValueError, TypeError) as exc:
        raise MedsegError(
            f"highdicom could not build a SEG on reference series {ref.series_id}: {exc}",
            hint="check that the reference folder holds the series the mask was made on",
        ) from exc
    out = Path(output)
    with atomic_output(out) as tmp:
        seg.save_as(str(tmp))
    log.info("wrote SEG %s (%d segments, %d frames)", out, len(descriptions), int(seg.NumberOfFrames))
    return out
