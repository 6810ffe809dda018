"""Pairing prediction and reference files by case id.

A case id is the file name without its image extension and without a trailing
nnU-Net channel suffix ``_0000``, so ``liver_007.nii.gz``, ``liver_007_0000.nii.gz``
and ``liver_007.nrrd`` are all case ``liver_007``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputNotFoundError, MedsegError, NoImageDataError

__all__ = ["IMAGE_EXTENSIONS", "CaseMatch", "case_id", "list_cases", "match_cases"]

#: Extensions recognised as images, longest first.
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".tiff", ".tif")
_CHANNEL_SUFFIX = "_0000"


def _image_extension(name: str) -> str | None:
    lower = name.lower()
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def case_id(path: str | Path) -> str:
    """The case id of an image file: its name minus the extension and a trailing ``_0000``."""
    name = Path(path).name
    ext = _image_extension(name)
    stem = name[: -len(ext)] if ext else name
    if stem.endswith(_CHANNEL_SUFFIX) and len(stem) > len(_CHANNEL_SUFFIX):
        stem = stem[: -len(_CHANNEL_SUFFIX)]
    return stem


def list_cases(folder: str | Path, what: str = "folder") -> dict[str, Path]:
    """Image files of ``folder`` (not recursive, hidden files skipped) keyed by case id.

    Args:
        folder: The folder to list.
        what: How to name the folder in messages (``"prediction folder"``...).

    Raises:
        InputNotFoundError: the folder does not exist.
        NoImageDataError: the folder holds no image file.
        MedsegError: two files with the same case id.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputNotFoundError(
            f"{what} {root} does not exist" if not root.exists() else f"{what} {root} is not a folder",
            hint="give a folder of .nii.gz/.nrrd/.mha/.png/.tif files",
        )
    cases: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.is_file() or _image_extension(p.name) is None:
            continue
        cid = case_id(p)
        if cid in cases:
            raise MedsegError(
                f"{what} {root} holds two files for case {cid!r}: {cases[cid].name} and {p.name}",
                hint="keep one file per case",
            )
        cases[cid] = p
    if not cases:
        raise NoImageDataError(
            f"{what} {root} holds no image file",
            hint="expected .nii.gz, .nii, .nrrd, .mha, .mhd, .png or .tif files",
        )
    return cases


@dataclass
class CaseMatch:
    """Result of :func:`match_cases`.

    Attributes:
        pairs: ``(case_id, prediction file, reference file)`` sorted by case id.
        unmatched_pred: Case ids with a prediction but no reference.
        unmatched_ref: Case ids with a reference but no prediction.
    """

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_ref: list[str] = field(default_factory=list)


def match_cases(pred_dir: str | Path, ref_dir: str | Path) -> CaseMatch:
    """Pair the files of two folders by case id.

    Raises:
        NoImageDataError: no case id occurs in both folders.
    """
    preds = list_cases(pred_dir, "prediction folder")
    refs = list_cases(ref_dir, "reference folder")
    common = sorted(preds.keys() & refs.keys())
    if not common:
        raise NoImageDataError(
            f"no case of prediction folder {pred_dir} matches a case of reference folder {ref_dir} "
            f"(e.g. {next(iter(preds))!r} vs {next(iter(refs))!r})",
            hint="name predictions like the references (case id = file name without extension and _0000)",
        )
    return CaseMatch(
        pairs=[(c, preds[c], refs[c]) for c in common],
        unmatched_pred=sorted(preds.keys() - refs.keys()),
        unmatched_ref=sorted(refs.keys() - preds.keys()),
    )
