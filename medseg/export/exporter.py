"""Entry points: export a mask as SEG/RTSTRUCT, and read either back as a label map."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

from medseg.errors import MedsegError, UnsupportedFormatError
from medseg.export.dicom_common import AlgorithmType, OverlapPolicy, object_kind, read_dicom_object
from medseg.export.labels import LabelSet, load_labels
from medseg.export.reference import ReferenceSeries, load_reference
from medseg.volume import Volume

log = logging.getLogger(__name__)


class ExportFormat(str, Enum):
    """Clinical export formats (``seg`` and ``rtss`` are accepted as aliases)."""

    DICOM_SEG = "dicom-seg"
    RTSTRUCT = "rtstruct"

    @classmethod
    def _missing_(cls, value: object) -> ExportFormat | None:
        aliases = {
            "seg": cls.DICOM_SEG,
            "dicomseg": cls.DICOM_SEG,
            "rtss": cls.RTSTRUCT,
            "rt-struct": cls.RTSTRUCT,
        }
        key = str(value).strip().lower().replace("_", "-")
        return (
            aliases.get(key)
            or aliases.get(key.replace("-", ""))
            or next((m for m in cls if m.value == key), None)
        )

    @property
    def suffix(self) -> str:
        """File name suffix medseg uses for this format."""
        return ".seg.dcm" if self is ExportFormat.DICOM_SEG else ".rtstruct.dcm"


def parse_formats(formats: str | ExportFormat | list[str | ExportFormat]) -> list[ExportFormat]:
    """``"dicom-seg,rtstruct"`` (or a list) -> formats.

    Raises:
        UnsupportedFormatError: an unknown format name.
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            fmt = ExportFormat(item.strip() if isinstance(item, str) else item)
        except ValueError:
            raise UnsupportedFormatError(
                f"unknown export format {item!r}",
                hint=f"choose from {', '.join(f.value for f in ExportFormat)}",
            ) from None
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise UnsupportedFormatError("no export format given", hint="use dicom-seg and/or rtstruct")
    return out


def export_mask(
    mask: Volume | str | Path,
    reference_dir: str | Path | ReferenceSeries,
    fmt: ExportFormat | str,
    labels: LabelSet | str | Path | dict | list | None,
    output: str | Path,
    algorithm_name: str = "medseg",
    model_name: str | None = None,
    fractional: bool = False,
    algorithm_type: AlgorithmType | str = AlgorithmType.AUTOMATIC,
    series: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a mask (Volume or image file) as a DICOM SEG or RTSTRUCT on its source series.

    The mask must be on the grid of the reference series as medseg reads it (the
    dcm2niix grid), or any exact permutation/flip of its axes; anything else raises
    :class:`~medseg.errors.GeometryMismatchError`. Every label value in the mask must
    be named in ``labels``. ``fractional`` applies to SEG only.

    Returns:
        The written file.
    """
    fmt = ExportFormat(fmt)
    out = Path(output)
    if out.exists() and not overwrite:
        raise MedsegError(f"{out} already exists", hint="pass --overwrite to replace it")
    if out.is_dir():
        raise MedsegError(f"{out} is a folder", hint="give a file name such as mask.seg.dcm")
    if fmt is ExportFormat.DICOM_SEG:
        from medseg.export.seg import write_seg

        return write_seg(
            mask,
            reference_dir,
            labels,
            out,
            algorithm_name=algorithm_name,
            model_name=model_name,
            fractional=fractional,
            algorithm_type=algorithm_type,
            series=series,
        )
    if fractional:
        raise MedsegError("RTSTRUCT holds contours, not probabilities", hint="drop --fractional for rtstruct")
    from medseg.export.rtstruct import write_rtstruct

    return write_rtstruct(
        mask,
        reference_dir,
        labels,
        out,
        algorithm_name=algorithm_name,
        model_name=model_name,
        algorithm_type=algorithm_type,
        series=series,
    )


class MaskExporter:
    """Export masks to several clinical formats with one labels set and model identity
    (for pipelines: ``predict --format nifti,dicom-seg,rtstruct`` calls this per scan).

    Args:
        formats: Formats to write (``"dicom-seg,rtstruct"`` or a list).
        labels: Labels file/dict (loaded once), or None for generic names.
        algorithm_name: Algorithm name recorded in the objects.
        model_name: Model recorded with the algorithm (e.g. the run name).
        fractional: FRACTIONAL SEG from probability channels.
        algorithm_type: ``automatic``, ``semiautomatic`` or ``manual``.
    """

    def __init__(
        self,
        formats: str | list[str | ExportFormat] = "dicom-seg",
        labels: LabelSet | str | Path | dict | list | None = None,
        algorithm_name: str = "medseg",
        model_name: str | None = None,
        fractional: bool = False,
        algorithm_type: AlgorithmType | str = AlgorithmType.AUTOMATIC,
    ) -> None:
        self.formats = parse_formats(formats)
        self.labels = load_labels(labels) if labels is not None else None
        self.algorithm_name = algorithm_name
        self.model_name = model_name
        self.fractional = fractional
        self.algorithm_type = AlgorithmType(algorithm_type)

    def __call__(
        self,
        mask: Volume | str | Path,
        reference_dir: str | Path,
        output_dir: str | Path,
        stem: str = "mask",
        series: str | None = None,
        overwrite: bool = False,
    ) -> dict[str, Path]:
        """Write ``<output_dir>/<stem>.seg.dcm`` and/or ``<stem>.rtstruct.dcm``; returns the
        written paths by format value."""
        reference = load_reference(reference_dir, series)
        written = {}
        for fmt in self.formats:
            written[fmt.value] = export_mask(
                mask,
                reference,
                fmt,
                self.labels,
                Path(output_dir) / f"{stem}{fmt.suffix}",
                algorithm_name=self.algorithm_name,
                model_name=self.model_name,
                fractional=self.fractional and fmt is ExportFormat.DICOM_SEG,
                algorithm_type=self.algorithm_type,
                overwrite=overwrite,
            )
        return written


def label_object_kind(path: str | Path) -> str | None:
    """``"SEG"`` or ``"RTSTRUCT"`` when ``path`` is such a DICOM file, else None (cheap:
    reads the header only; never raises for non-DICOM files)."""
    import pydicom

    p = Path(path)
    name = p.name.lower()
    if not p.is_file() or name.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")):
        return None
    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, force=True)
    except Exception:
        return None
    return object_kind(ds)


def read_label_object(
    path: str | Path,
    reference_dir: str | Path | None = None,
    labels: LabelSet | str | Path | dict | list | None = None,
    overlap: OverlapPolicy | str = OverlapPolicy.ERROR,
    series: str | None = None,
) -> Volume:
    """Read a DICOM SEG or RTSTRUCT as a label map on the grid of its source series.

    This is what a manifest entry naming a SEG/RTSTRUCT as its label calls. The
    reference series is required for an RTSTRUCT; a SEG without one is read on its own
    geometry (the slices it stores).

    Args:
        path: The SEG or RTSTRUCT file.
        reference_dir: Folder of the source DICOM series.
        labels: Optional labels: structures are matched to label values by name, and
            structures not named are left out.
        overlap: ``error`` (default), ``last`` or ``split`` (see :class:`OverlapPolicy`).
        series: Which series of ``reference_dir`` (when it holds several).

    Raises:
        UnsupportedFormatError: not a SEG or RTSTRUCT.
        MedsegError: subclasses for geometry, overlap, missing reference.
    """
    ds = read_dicom_object(path)
    kind = object_kind(ds)
    if kind == "SEG":
        from medseg.export.seg import read_seg

        return read_seg(path, reference_dir, labels=labels, overlap=overlap, series=series)
    if kind == "RTSTRUCT":
        if reference_dir is None:
            raise MedsegError(
                f"{path} is an RTSTRUCT: its contours can only be rasterised on the image series "
                "they were drawn on",
                hint="give that series with --reference DICOM_FOLDER",
            )
        from medseg.export.rtstruct import read_rtstruct

        return read_rtstruct(path, reference_dir, labels=labels, overlap=overlap, series=series)
    raise UnsupportedFormatError(
        f"{path} is not a DICOM SEG or RTSTRUCT (modality {getattr(ds, 'Modality', 'unknown')})",
        hint="give a Segmentation or RT Structure Set file",
    )
