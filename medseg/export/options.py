"""What an export records besides the mask: one options object shared by every writer."""

from __future__ import annotations

from dataclasses import dataclass

from medseg.export.dicom_common import AlgorithmType


@dataclass(frozen=True)
class ExportOptions:
    """How a mask is exported, passed unchanged from the CLI and batch prediction to the writers.

    Writers read the fields that apply to their format and ignore the others (a NIfTI label
    volume records none of them).

    Args:
        algorithm_name: Algorithm name recorded in each segment/ROI (DICOM Algorithm
            Identification Sequence, PS3.3 C.8.20.2 and C.8.8.5).
        model_name: Model recorded as an algorithm parameter and as the device model
            (ManufacturerModelName); e.g. the run name.
        algorithm_type: ``automatic`` (default), ``semiautomatic`` or ``manual``
            (SegmentAlgorithmType / ROIGenerationAlgorithm).
        fractional: Store probabilities (FRACTIONAL SEG) rather than labels; only formats
            whose registry row declares ``fractional`` accept it.
        series: Which series of the reference folder (when it holds several).
        series_description: SeriesDescription of the written object (default names the model).

    Raises:
        ValueError: an unknown ``algorithm_type``.
    """

    algorithm_name: str = "medseg"
    model_name: str | None = None
    algorithm_type: AlgorithmType = AlgorithmType.AUTOMATIC
    fractional: bool = False
    series: str | None = None
    series_description: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm_type", AlgorithmType(self.algorithm_type))

    @property
    def recorded_name(self) -> str:
        """The name objects are described by: the model when given, else the algorithm."""
        return self.model_name or self.algorithm_name
