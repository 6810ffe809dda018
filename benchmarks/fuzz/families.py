"""The reader families of the fuzz campaign: their seed files and how a mutated input is built.

Seeds are real files from ``../shared`` where present (MSD Hippocampus NIfTI, ISBI 2012 PNG,
highdicom's SEG fixture, an rt-utils RTSTRUCT with its CT, the fuzz run's MetaImage files,
the repository's pipelines) plus small files written here (NRRD, MetaImage with detached
data, TIFF, JPEG, BMP, 16-bit images, manifests), so the campaign also runs without them.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import strategies as st

from benchmarks.fuzz import mutations as mu

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


@dataclass
class Family:
    """A reader family: ``seeds(folder)`` makes its seed inputs once, and ``build(data, seed, out)``
    writes one mutated input under ``out`` and returns the path the worker reads."""

    name: str
    seeds: Callable[[Path], list[Any]]
    build: Callable[[Any, Any, Path], Path]


# -- volumes ------------------------------------------------------------------------------------
def _small_volume() -> tuple[np.ndarray, tuple[float, float, float]]:
    rng = np.random.default_rng(0)
    return (rng.normal(100, 20, (6, 9, 7)).astype(np.int16), (0.8, 0.9, 2.5))


def _write_itk(path: Path, compress: bool = False) -> None:
    import SimpleITK as sitk

    array, spacing = _small_volume()
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path), compress)


def _nifti_seeds(folder: Path) -> list[bytes]:
    import nibabel as nib

    seeds = []
    hippo = SHARED / "datasets" / "msd_hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    if hippo.is_file():
        seeds.append(gzip.decompress(hippo.read_bytes()))
    array, _ = _small_volume()
    path = folder / "synthetic.nii"
    nib.save(nib.Nifti1Image(array, np.diag([-0.8, 0.9, 2.5, 1.0])), path)
    seeds.append(path.read_bytes())
    path2 = folder / "synthetic2.nii"
    nib.save(nib.Nifti2Image(array.astype(np.float32), np.eye(4)), path2)
    seeds.append(path2.read_bytes())
    return seeds


_NIFTI_FIELDS = [
    "sizeof_hdr", "dim", "pixdim", "vox_offset", "datatype", "bitpix", "scl_slope", "scl_inter",
    "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "srow_x",
    "srow_y", "srow_z", "intent_code", "slice_duration", "toffset", "magic", "dim_info", "xyzt_units",
]  # fmt: skip


def _build_nifti(data: Any, seed: bytes, out: Path) -> Path:
    import nibabel as nib

    blob = seed
    if data.draw(st.booleans()):
        klass = (
            nib.Nifti2Header if blob[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c") else nib.Nifti1Header
        )
        size = klass.template_dtype.itemsize
        header = np.frombuffer(bytearray(blob[:size]), dtype=klass.template_dtype).copy()
        field = data.draw(st.sampled_from(_NIFTI_FIELDS))
        current = header[field]
        try:
            if current.shape:
                index = data.draw(st.integers(0, current.shape[-1] - 1))
                header[field][0][index] = mu.absurd_number(data)
            else:
                header[field] = mu.absurd_number(data)
        except (OverflowError, ValueError, TypeError):
            header[field] = 0
        blob = header.tobytes() + blob[size:]
    else:
        blob = mu.mutate_bytes(data, blob)
    if data.draw(st.booleans()):
        gz = gzip.compress(blob, compresslevel=1)
        if data.draw(st.integers(0, 5)) == 0:
            gz = mu.mutate_bytes(data, gz)
        path = out / "case.nii.gz"
        path.write_bytes(gz)
    else:
        path = out / "case.nii"
        path.write_bytes(blob)
    return path


def _itk_seeds(folder: Path, attached: str, detached: str) -> list[dict[str, bytes]]:
    seeds = []
    for i, compress in enumerate((False, True)):
        path = folder / f"a{i}{attached}"
        _write_itk(path, compress)
        seeds.append({path.name: path.read_bytes()})
        sub = folder / f"d{i}"
        sub.mkdir()
        _write_itk(sub / f"d{detached}", compress)
        seeds.append({p.name: p.read_bytes() for p in sub.iterdir()})
    return seeds


def _build_itk(separator: str) -> Callable[[Any, Any, Path], Path]:
    def build(data: Any, seed: dict[str, bytes], out: Path) -> Path:
        files = dict(seed)
        header_name = next(n for n in files if n.endswith((".nrrd", ".nhdr", ".mha", ".mhd")))
        target = data.draw(st.sampled_from(sorted(files)))
        blob = files[target]
        if target == header_name and data.draw(st.integers(0, 3)) > 0:
            text = blob.decode("latin-1")
            # the header is the text before the data: NRRD ends it with a blank line,
            # MetaImage with the ElementDataFile line
            cut = text.find("\n\n") + 2 if separator == ":" else text.find("\n", text.find("ElementDataFile"))
            if cut <= 1 or cut > len(text):
                cut = len(text)
            head = mu.mutate_header_lines(data, text[:cut], separator)
            blob = head.encode("latin-1", "replace") + blob[cut:]
        else:
            blob = mu.mutate_bytes(data, blob)
        files[target] = blob
        for name, content in files.items():
            (out / name).write_bytes(content)
        return out / header_name

    return build


def _metaimage_seeds(folder: Path) -> list[dict[str, bytes]]:
    seeds = _itk_seeds(folder, ".mha", ".mhd")
    cases = SHARED / "cases" / "corrupt_metaimage_headers"
    if cases.is_dir():
        seeds.extend({p.name: p.read_bytes()} for p in sorted(cases.glob("*.mha")))
    return seeds


# -- 2D images ----------------------------------------------------------------------------------
def _image2d_seeds(folder: Path) -> list[tuple[str, bytes]]:
    import skimage.io

    seeds = []
    png = SHARED / "datasets" / "isbi2012_em" / "train" / "image" / "0.png"
    if png.is_file():
        seeds.append((".png", png.read_bytes()))
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, (40, 30), dtype=np.uint8)
    rgb = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
    deep = rng.integers(0, 65535, (16, 18), dtype=np.uint16)
    for name, array in [("g.png", gray), ("c.png", rgb), ("d.png", deep), ("g.tif", gray),
                        ("d.tif", deep), ("c.jpg", rgb), ("g.bmp", gray)]:  # fmt: skip
        path = folder / name
        skimage.io.imsave(path, array, check_contrast=False)
        seeds.append((path.suffix, path.read_bytes()))
    return seeds


def _build_image2d(data: Any, seed: tuple[str, bytes], out: Path) -> Path:
    suffix, blob = seed
    for _ in range(data.draw(st.integers(1, 3))):
        blob = mu.mutate_bytes(data, blob)
    path = out / f"slice{suffix}"
    path.write_bytes(blob)
    return path


# -- DICOM --------------------------------------------------------------------------------------
def _dicom_series_seeds(folder: Path) -> list[Path]:
    seeds = []
    for name in ("rtstruct_contours_on_voxel_centres", "rtstruct_two_frames_of_reference"):
        ct = SHARED / "cases" / name / "ct"
        if ct.is_dir():
            seeds.append(ct)
    mf = SHARED / "datasets" / "dicom_rtstruct_seg_fixtures" / "highdicom_ct_image.dcm"
    if mf.is_file():
        sub = folder / "single"
        sub.mkdir()
        shutil.copy(mf, sub / "ct.dcm")
        seeds.append(sub)
    nih = SHARED / "datasets" / "dcm_qa_nih" / "In" / "20180918Si" / "mr_0003"
    if nih.is_dir():
        seeds.append(nih)
    return seeds


def _mutate_dicom_file(data: Any, src: Path, dst: Path) -> None:
    import pydicom

    if data.draw(st.integers(0, 3)) == 0:
        dst.write_bytes(mu.mutate_bytes(data, src.read_bytes()))
        return
    try:
        ds = pydicom.dcmread(src, force=True)
        mu.mutate_dicom(data, ds)
        ds.save_as(dst, enforce_file_format=False)
    except Exception:  # pydicom cannot parse or encode it (an earlier mutation): mutate the bytes
        dst.write_bytes(mu.mutate_bytes(data, src.read_bytes()))


def _mutate_series(data: Any, seed: Path, out: Path, name: str = "series") -> Path:
    folder = out / name
    folder.mkdir()
    files = sorted(p for p in seed.iterdir() if p.is_file())
    victims = set(data.draw(st.lists(st.sampled_from(files), min_size=0, max_size=2)))
    for f in files:
        if f in victims:
            action = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "drop", "copy"]))
            if action == "drop":
                continue
            if action == "copy":
                shutil.copy(f, folder / f"copy_{f.name}")
            _mutate_dicom_file(data, f, folder / f.name)
        else:
            shutil.copy(f, folder / f.name)
    return folder


def _object_seeds(kind: str) -> Callable[[Path], list[tuple[Path, Path]]]:
    def seeds(folder: Path) -> list[tuple[Path, Path]]:
        out = []
        if kind == "seg":
            fx = SHARED / "datasets" / "dicom_rtstruct_seg_fixtures"
            for name in ("highdicom_seg_image_ct_binary.dcm", "highdicom_seg_image_ct_true_fractional.dcm"):
                if (fx / name).is_file():
                    out.append((fx / name, None))  # read on the SEG's own geometry
            ct = SHARED / "cases" / "rtstruct_contours_on_voxel_centres" / "ct"
            if ct.is_dir():
                out.append((_medseg_seg(ct, folder / "medseg.seg.dcm"), ct))
        else:
            for name in ("rtstruct_contours_on_voxel_centres", "rtstruct_two_frames_of_reference"):
                case = SHARED / "cases" / name
                if case.is_dir():
                    out.append((case / "rtstruct.dcm", case / "ct"))
        return out

    return seeds


def _medseg_seg(ct: Path, path: Path) -> Path:
    """A SEG written by medseg (two segments) on a real CT series."""
    from medseg.export import export_mask
    from medseg.io import read_volume

    image = read_volume(ct)
    mask = np.zeros(image.array.shape, np.uint8)
    mask[2:5, 2:6, 1:3] = 1
    mask[5:7, 5:8, 3:4] = 2
    export_mask(image.with_array(mask), ct, "dicom-seg", {"1": "gtv", "2": "ctv"}, path)
    return path


def _build_object(kind: str) -> Callable[[Any, Any, Path], Path]:
    def build(data: Any, seed: tuple[Path, Path], out: Path) -> Path:
        obj, ref = seed
        folder = out / "case"
        folder.mkdir()
        if ref is not None and data.draw(st.integers(0, 5)) == 0:
            _mutate_series(data, ref, folder, "reference")
            shutil.copy(obj, folder / f"{kind}.dcm")
        else:
            if ref is not None:
                shutil.copytree(ref, folder / "reference")
            for _ in range(data.draw(st.integers(1, 2))):
                src = folder / f"{kind}.dcm" if (folder / f"{kind}.dcm").exists() else obj
                _mutate_dicom_file(data, src, folder / f"{kind}.dcm.tmp")
                (folder / f"{kind}.dcm.tmp").replace(folder / f"{kind}.dcm")
        return folder

    return build


# -- documents ----------------------------------------------------------------------------------
def _manifest_seeds(folder: Path) -> list[tuple[str, Any]]:
    import nibabel as nib

    array, _ = _small_volume()
    for name in ("a", "a_seg", "b", "b_seg"):
        nib.save(nib.Nifti1Image(array if "seg" not in name else (array > 100).astype(np.uint8), np.eye(4)),
                 folder / f"{name}.nii.gz")  # fmt: skip
    medseg = {
        "name": "fuzz",
        "labels": {"0": "background", "1": "thing"},
        "cases": [
            {"id": c, "images": [str(folder / f"{c}.nii.gz")], "label": str(folder / f"{c}_seg.nii.gz"),
             "split": split}
            for c, split in (("a", "train"), ("b", "val"))
        ],
    }  # fmt: skip
    seeds: list[tuple[str, Any]] = [("manifest.json", medseg)]
    msd = SHARED / "datasets" / "msd_hippocampus" / "dataset.json"
    if msd.is_file():
        seeds.append(("dataset.json", json.loads(msd.read_text())))
    return seeds


def _build_document(data: Any, seed: tuple[str, Any], out: Path) -> Path:
    name, tree = seed
    path = out / name
    if data.draw(st.integers(0, 4)) == 0:
        text = json.dumps(tree) if name.endswith(".json") else yaml.safe_dump(tree)
        path.write_bytes(mu.mutate_bytes(data, text.encode()))
        return path
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, 3))):
        tree = mu.mutate_tree(data, tree)
    text = json.dumps(tree, allow_nan=True) if name.endswith(".json") else yaml.safe_dump(tree)
    path.write_text(text)
    return path


def _pipeline_seeds(folder: Path) -> list[tuple[str, Any]]:
    return [
        ("pipeline.yaml", yaml.safe_load(p.read_text()))
        for p in sorted((REPO / "pipelines").glob("*.yaml"))[:3]
    ]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("nifti", _nifti_seeds, _build_nifti),
        Family("nrrd", lambda d: _itk_seeds(d, ".nrrd", ".nhdr"), _build_itk(":")),
        Family("metaimage", _metaimage_seeds, _build_itk(" =")),
        Family("image2d", _image2d_seeds, _build_image2d),
        Family("dicom-series", _dicom_series_seeds, _mutate_series),
        Family("dicom-seg", _object_seeds("seg"), _build_object("seg")),
        Family("dicom-rtstruct", _object_seeds("rtstruct"), _build_object("rtstruct")),
        Family("manifest", _manifest_seeds, _build_document),
        Family("pipeline", _pipeline_seeds, _build_document),
    ]
}
