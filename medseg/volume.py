"""The :class:`Volume`: a voxel array with its exact world geometry and metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg import geometry

if TYPE_CHECKING:  # pragma: no cover
    import nibabel


@dataclass
class VolumeMeta:
    """Metadata carried with a volume. Holds no patient-identifying attributes.

    Attributes:
        modality: DICOM modality (``"CT"``, ``"MR"``...) when known.
        series_uid: SeriesInstanceUID of the DICOM source.
        study_uid: StudyInstanceUID of the DICOM source.
        frame_of_reference_uid: FrameOfReferenceUID of the DICOM source.
        series_description: SeriesDescription of the DICOM source.
        series_number: SeriesNumber of the DICOM source.
        n_files: Number of files the volume was read from.
        source: Path it was read from.
        source_format: ``"dicom"``, ``"nifti"``, ``"nrrd"``, ``"mha"``...
        warnings: Human-readable notes about the source (tilt, uneven spacing, 4D...).
        time_spacing: Seconds between volumes of a 4D series (repetition time), when known.
        sop_instance_uids: For DICOM sources, the SOPInstanceUID of each slice in k order
            (first time point), so exports can reference the exact source instances.
        extra: Free-form extra values (JSON-serialisable).
    """

    modality: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    n_files: int | None = None
    source: str | None = None
    source_format: str | None = None
    warnings: list[str] = field(default_factory=list)
    time_spacing: float | None = None
    sop_instance_uids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary of the metadata."""
        return asdict(self)


@dataclass
class Volume:
    """A 3D (or 4D: several 3D volumes on one grid) image with its geometry.

    Attributes:
        array: Voxel values, indexed ``[i, j, k]`` or ``[i, j, k, t]``. The first
            three axes are spatial; a fourth axis holds time points or volumes.
        affine: 4x4 voxel-to-world matrix, world in RAS+ millimetres (as NIfTI).
        meta: Source metadata (:class:`VolumeMeta`).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: VolumeMeta = field(default_factory=VolumeMeta)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim == 2:
            self.array = self.array[:, :, np.newaxis]
        if self.array.ndim not in (3, 4):
            raise ValueError(f"a Volume holds a 3D or 4D array, got {self.array.ndim} dimensions")
        self.affine = geometry.as_affine(self.affine)

    # -- geometry -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the voxel array."""
        return tuple(self.array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """The first three (spatial) dimensions."""
        return tuple(self.array.shape[:3])  # type: ignore[return-value]

    @property
    def n_volumes(self) -> int:
        """Number of 3D volumes (1 for a 3D volume, the length of axis 3 for 4D)."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return geometry.spacing(self.affine)

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS world position (mm) of the centre of voxel (0, 0, 0)."""
        return geometry.origin(self.affine)

    @property
    def direction(self) -> np.ndarray:
        """3x3 array whose columns are the unit RAS directions of the voxel axes."""
        return geometry.direction(self.affine)

    @property
    def orientation(self) -> str:
        """Orientation code such as ``"LAS"`` (where each voxel axis points)."""
        return geometry.orientation_code(self.affine)

    @property
    def affine_lps(self) -> np.ndarray:
        """The affine with world coordinates in LPS+ (DICOM/ITK convention)."""
        return geometry.LPS_TO_RAS @ self.affine

    # -- derived volumes ------------------------------------------------------------
    def with_array(self, array: np.ndarray, **meta_changes: Any) -> Volume:
        """A new volume on the same grid holding ``array`` (same spatial shape)."""
        array = np.asarray(array)
        if array.shape[:3] != self.spatial_shape:
            raise ValueError(f"array of shape {array.shape} does not fit grid {self.spatial_shape}")
        return Volume(array, self.affine.copy(), replace(self.meta, **meta_changes))

    def reoriented(self, codes: str = "RAS") -> Volume:
        """The same voxels with axes permuted/flipped to orientation ``codes`` (exact)."""
        array, affine = geometry.reorient_array(self.array, self.affine, codes)
        return Volume(np.ascontiguousarray(array), affine, replace(self.meta))

    def to_nifti(self) -> nibabel.Nifti1Image:
        """This volume as an in-memory ``nibabel.Nifti1Image`` (sform and qform set)."""
        return volume_to_nifti(self)

    def describe(self) -> dict[str, Any]:
        """Summary used by ``medseg info``: shape, spacing, origin, orientation, metadata."""
        return {
            "shape": list(self.shape),
            "dtype": str(self.array.dtype),
            "spacing": [round(s, 6) for s in self.spacing],
            "origin": [round(o, 6) for o in self.origin],
            "orientation": self.orientation,
            "direction": np.round(self.direction, 6).tolist(),
            "affine": np.round(self.affine, 6).tolist(),
            "oblique": geometry.is_oblique(self.affine),
            "n_volumes": self.n_volumes,
            "modality": self.meta.modality,
            "series_uid": self.meta.series_uid,
            "series_description": self.meta.series_description,
            "series_number": self.meta.series_number,
            "n_files": self.meta.n_files,
            "source": self.meta.source,
            "format": self.meta.source_format,
            "time_spacing": self.meta.time_spacing,
            "warnings": list(self.meta.warnings),
        }

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing=({sp}), "
            f"orientation={self.orientation!r}, modality={self.meta.modality!r})"
        )


def volume_to_nifti(volume: Volume) -> nibabel.Nifti1Image:
    """Build a ``Nifti1Image`` whose sform *and* qform hold the volume's affine.

    The sform holds the affine exactly (float32). The qform can only express
    rigid rotations with positive spacing; nibabel picks the closest one, which
    is exact for every non-sheared affine.
    """
    import nibabel as nib

    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.int64 and array.size and array.min() >= -(2**31) and array.max() < 2**31:
        array = array.astype(np.int32)
    img = nib.Nifti1Image(array, volume.affine)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    if array.ndim == 4 and volume.meta.time_spacing:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(volume.meta.time_spacing)
        img.header.set_zooms(zooms)
    if volume.meta.series_description:
        img.header["descrip"] = volume.meta.series_description.encode("ascii", "ignore")[:79]
    return img
