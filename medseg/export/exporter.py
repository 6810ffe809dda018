"""Entry points: export a mask in any registered format, and read a SEG/RTSTRUCT back as a label map."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from medseg.errors import MedsegError, UnsupportedFormatError
from medseg.export.labels import LabelSet, load_labels
from medseg.export.options import ExportOptions
from medseg.export.reference import ReferenceSeries, load_reference
from medseg.export.registry import ExportFormat, check_request, get_export, parse_formats
from medseg.volume import Volume

log = logging.getLogger(__name__)


def write_label_volume(
    mask: Volume | str | Path,
    reference: ReferenceSeries | str | Path | None,
    labels: LabelSet | str | Path | dict | list | None,
    output: str | Path,
    options: ExportOptions,
) -> Path:
    """The ``nifti`` row's writer: the label map itself, on its own grid, atomically.

    ``mask`` is a label map ``[i, j, k]`` (Volume or image path); it is written unchanged
    (array, affine) as NIfTI-1 by :func:`medseg.io.write_volume`. ``reference``, ``labels``
    and ``options`` are accepted for the writer contract; a NIfTI file records none of them.

    Returns:
        The written path.
    """
    from medseg.io import read_volume, write_volume

    volume = mask if isinstance(mask, Volume) else read_volume(mask)
    out = Path(output)
    write_volume(volume, out)
    log.info("wrote label volume %s", out)
    return out


def _one_class(mask: Volume | str | Path, fmt: ExportFormat) -> Volume:
    """``mask`` as a Volume, refused when it holds several classes and ``fmt`` stores one."""
    import numpy as np

    from medseg.io import read_volume

    volume = mask if isinstance(mask, Volume) else read_volume(mask)
    classes = [int(v) for v in np.unique(volume.array) if v != 0]
    if len(classes) > 1:
        raise UnsupportedFormatError(
            f"{fmt.name} holds one class per file; the mask holds {len(classes)} ({classes[:10]})",
            hint="export each class as its own mask",
        )
    return volume


def export_mask(
    mask: Volume | str | Path,
    reference_dir: str | Path | ReferenceSeries | None,
    fmt: ExportFormat | str,
    labels: LabelSet | str | Path | dict | list | None,
    output: str | Path,
    options: ExportOptions | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a mask (Volume or image file) in one registered format (see :data:`EXPORTS`).

    For formats that reference the source DICOM series (DICOM SEG, PS3.3 A.51; RT Structure
    Set, PS3.3 A.19) the mask must be on the grid of that series as medseg reads it (the
    dcm2niix grid), or any exact permutation/flip of its axes; anything else raises
    :class:`~medseg.errors.GeometryMismatchError`. Every label value in the mask must be
    named in ``labels``.

    Args:
        mask: Label map ``[i, j, k]`` (or ``[i, j, k, label]`` probabilities in [0, 1] for a
            fractional export).
        reference_dir: Folder of the source DICOM series (or a loaded reference); None
            for formats that need none.
        fmt: A registered name or alias (``dicom-seg``, ``seg``, ``rtstruct`` ...) or row.
        labels: Labels file/dict naming each class (None: generic names and codes).
        output: The file to write.
        options: What the object records (algorithm, model, series ...); default
            :class:`ExportOptions`.
        overwrite: Replace an existing ``output``.

    Returns:
        The written file.

    Raises:
        UnsupportedFormatError: an unknown format, or a capability it lacks (fractional,
            several classes).
        MedsegError: an existing output, no reference for a format that needs one, and
            the writers' errors (geometry, labels, empty mask).
    """
    fmt = get_export(fmt)
    options = options or ExportOptions()
    out = Path(output)
    if out.exists() and not overwrite:
        raise MedsegError(f"{out} already exists", hint="pass --overwrite to replace it")
    if out.is_dir():
        raise MedsegError(f"{out} is a folder", hint=f"give a file name such as mask{fmt.suffix}")
    check_request([fmt], options.fractional, reference_dir is not None)
    if not fmt.multi_class:
        mask = _one_class(mask, fmt)
    return fmt.writer(mask, reference_dir, labels, out, options)


class MaskExporter:
    """Export masks to several formats with one labels set and one :class:`ExportOptions`
    (for pipelines: ``predict --format nifti,dicom-seg,rtstruct`` calls this per scan).

    Args:
        formats: Formats to write (``"dicom-seg,rtstruct"``, or a list of names or rows).
        labels: Labels file/dict (loaded once), or None for generic names.
        options: What the objects record; ``fractional`` applies to the formats that
            declare it and is left out for the others.

    Raises:
        UnsupportedFormatError: an unknown format name.
    """

    def __init__(
        self,
        formats: str | ExportFormat | list[str | ExportFormat] = "dicom-seg",
        labels: LabelSet | str | Path | dict | list | None = None,
        options: ExportOptions | None = None,
    ) -> None:
        self.formats = parse_formats(formats)
        self.labels = load_labels(labels) if labels is not None else None
        self.options = options or ExportOptions()

    def __call__(
        self,
        mask: Volume | str | Path,
        reference_dir: str | Path | ReferenceSeries | None,
        output_dir: str | Path,
        stem: str = "mask",
        overwrite: bool = False,
    ) -> dict[str, Path]:
        """Write ``<output_dir>/<stem><suffix>`` per format; returns the paths by format name.

        Raises:
            MedsegError: as :func:`export_mask`; capabilities are checked before anything
                is written.
        """
        check_request(self.formats, self.options.fractional, reference_dir is not None)
        reference = reference_dir
        if reference_dir is not None and any(f.needs_dicom_reference for f in self.formats):
            reference = load_reference(reference_dir, self.options.series)
        written = {}
        for fmt in self.formats:
            written[fmt.name] = export_mask(
                mask,
                reference,
                fmt,
                self.labels,
                Path(output_dir) / f"{stem}{fmt.suffix}",
                replace(self.options, fractional=self.options.fractional and fmt.fractional),
                overwrite=overwrite,
            )
        return written
