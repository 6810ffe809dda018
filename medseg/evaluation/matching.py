"""Pairing prediction and reference files by case id.

A case id is the file name without its image extension and without a trailing
nnU-Net channel suffix ``_0000``, so ``liver_007.nii.gz``, ``liver_007_0000.nii.gz``
and ``liver_007.nrrd`` are all case ``liver_007``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputNotFoundError, MedsegError, NoImageDataError
from medseg.io import formats

__all__ = ["CaseMatch", "case_id", "list_cases", "match_cases"]

_CHANNEL_SUFFIX = "_0000"


def case_id(path: str | Path) -> str:
    """The case id of an image file: its name minus the image suffix (any format of
    :mod:`medseg.io.formats`) and a trailing ``_0000``."""
    stem = formats.case_id(path)
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
    return {cid: _one_file(root, what, cid, files) for cid, files in _files_by_case(root, what).items()}


def _files_by_case(root: Path, what: str) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise InputNotFoundError(
            f"{what} {root} does not exist" if not root.exists() else f"{what} {root} is not a folder",
            hint=f"give a folder of image files: {formats.describe_formats()}",
        )
    cases: dict[str, list[Path]] = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.is_file() or not formats.is_image(p):
            continue
        cases.setdefault(case_id(p), []).append(p)
    if not cases:
        raise NoImageDataError(
            f"{what} {root} holds no image file",
            hint=f"expected image files: {formats.describe_formats()}",
        )
    return cases


def _one_file(root: Path, what: str, cid: str, files: list[Path], like: Path | None = None) -> Path:
    """The file of case ``cid``. A 2D picture and a volume of one case (a prediction of a 2D
    input written as PNG and as NIfTI) give the one of ``like``'s kind (the picture without
    ``like``); other duplicates are an error."""
    if len(files) == 1:
        return files[0]
    pictures = [f for f in files if formats.is_2d_name(f)]
    if len(files) == 2 and len(pictures) == 1:
        volume = next(f for f in files if f not in pictures)
        return volume if like is not None and not formats.is_2d_name(like) else pictures[0]
    raise MedsegError(
        f"{what} {root} holds two files for case {cid!r}: {files[0].name} and {files[1].name}",
        hint="keep one file per case",
    )


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

    A prediction folder may hold a case as a 2D picture and a volume (``--format nifti``
    beside the PNG mask of a 2D input): the one of the reference's kind is used.

    Raises:
        NoImageDataError: no case id occurs in both folders.
    """
    pred_files = _files_by_case(Path(pred_dir), "prediction folder")
    refs = list_cases(ref_dir, "reference folder")
    preds = {
        c: _one_file(Path(pred_dir), "prediction folder", c, files, refs.get(c))
        for c, files in pred_files.items()
    }
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
