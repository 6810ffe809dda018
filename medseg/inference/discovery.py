"""Find the scans to predict under a path: image files and DICOM series, mixed and nested.

Every scan becomes a :class:`CaseInput` with a stable, readable id (the path
relative to the input root without extension, ``/`` replaced by ``__``; for
DICOM series the folder, plus ``_S<number>`` when a folder holds several
series). Whatever cannot be a scan is reported as :class:`Skipped` with the
reason, never silently ignored.

For a model with several input channels, the files of one case's channels
(``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``... as MSD and nnU-Net name them, or
``<case>_<channel name>.nii.gz`` with the names the run recorded, in any case) in one folder
become one case named ``<case>`` (:mod:`medseg.inference.channels` reads and stacks them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from medseg.errors import InputNotFoundError
from medseg.io.formats import FORMATS, image_suffix, is_companion

#: The reason a file that is no scan is skipped.
_NOT_AN_IMAGE = f"not an image ({', '.join(f.title for f in FORMATS)} or DICOM)"


@dataclass(frozen=True)
class CaseInput:
    """One scan to predict."""

    id: str
    path: Path
    series: str | None = None  # DICOM series id within ``path`` (a folder or file)
    #: For the channel files of a multi-channel model: one file per channel in the model's order
    #: (``None`` where a channel has no file); ``path`` is then the first file found.
    channels: tuple[Path | None, ...] | None = None
    #: Why the channel files cannot make this case (a channel given twice, one the model lacks).
    problem: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A path that is not a readable scan, with the reason. ``ignored`` marks expected
    companions of scans (DICOMDIR, SEG/RTSTRUCT objects, JSON sidecars) that are listed
    but are not failures."""

    path: Path
    reason: str
    ignored: bool = False


def _case_id(rel: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__")).strip("_")
    return text or "scan"


def discover(
    path: str | Path, exclude: Path | None = None, channel_names: Sequence[str] | None = None
) -> tuple[list[CaseInput], list[Skipped]]:
    """Scans under ``path`` (a file, a DICOM folder, or a tree of both) and what was skipped.

    ``exclude`` (e.g. an output folder inside the input folder) is never searched.
    ``channel_names``: the input channels of a multi-channel model, in order; image files named
    after them (or ``_0000``, ``_0001``...) are grouped into one case per folder and stem.
    """
    root = Path(path)
    if not root.exists():
        raise InputNotFoundError(f"no such file or folder: {root}", hint="check the --input path")
    if root.is_file():
        return _discover_file(root)
    excluded = exclude.resolve() if exclude is not None else None
    cases: list[CaseInput] = []
    skipped: list[Skipped] = []
    other: list[Path] = []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue  # hidden files and folders
        if excluded is not None and (p.resolve() == excluded or excluded in p.resolve().parents):
            continue
        if p.is_dir():
            if not any(p.iterdir()):
                skipped.append(Skipped(p, "empty folder"))
            continue
        suffix = image_suffix(p)
        if suffix:
            rel = str(p.relative_to(root))[: -len(suffix)]
            cases.append(CaseInput(_case_id(rel), p))
        elif is_companion(p):
            continue  # data files next to .mhd/.nhdr headers
        else:
            other.append(p)
    if other:
        cases_dicom, skipped_dicom = _discover_dicom(root, other, excluded, cases)
        cases.extend(cases_dicom)
        skipped.extend(skipped_dicom)
    if channel_names is not None and len(channel_names) > 1:
        cases = _group_channels(cases, root, channel_names)
    ids: dict[str, int] = defaultdict(int)
    unique = []
    for c in cases:  # make ids unique (e.g. a.nii and a.nii.gz)
        ids[c.id] += 1
        unique.append(c if ids[c.id] == 1 else replace(c, id=f"{c.id}_{ids[c.id]}"))
    return unique, sorted(skipped, key=lambda s: str(s.path))


def _discover_file(root: Path) -> tuple[list[CaseInput], list[Skipped]]:
    from medseg.io.dicom.scan import scan_dicom

    suffix = image_suffix(root)
    if suffix:
        return [CaseInput(_case_id(root.name[: -len(suffix)]), root)], []
    scan = scan_dicom(root)
    if scan.series:
        return [CaseInput(_case_id(root.stem), root, scan.series[0].id)], []
    reason = scan.corrupt[0][1] if scan.corrupt else _NOT_AN_IMAGE
    return [], [Skipped(root, reason)]


def _discover_dicom(
    root: Path, other: list[Path], excluded: Path | None, image_cases: list[CaseInput]
) -> tuple[list[CaseInput], list[Skipped]]:
    """DICOM series among ``other`` files; the rest is reported."""
    import os

    from medseg.io.dicom.scan import scan_dicom

    cases: list[CaseInput] = []
    skipped: list[Skipped] = []
    scan = scan_dicom(root, exclude=excluded)
    dicom_files: set[Path] = set()
    by_folder: dict[Path, list] = defaultdict(list)
    for s in scan.series:
        # the folder holding every file of the series (CD exports split series over folders)
        folder = Path(os.path.commonpath([str(Path(f).parent) for f in s.files]))
        by_folder[folder].append(s)
        dicom_files.update(Path(f) for f in s.files)
    for folder, series in sorted(by_folder.items()):
        rel = str(folder.relative_to(root)) if folder != root else root.name
        for s in series:
            suffix = ""
            if len(series) > 1:
                number = s.summary()["series_number"]
                suffix = f"_S{number}" if number is not None else f"_{s.id[-8:]}"
            cases.append(CaseInput(_case_id(rel) + suffix, folder, s.id))
    for f, reason in scan.corrupt:
        skipped.append(Skipped(Path(f), reason))
        dicom_files.add(Path(f))
    for f, kind in scan.non_image:
        skipped.append(Skipped(Path(f), f"DICOM {kind} object, not an image", ignored=True))
        dicom_files.add(Path(f))
    image_stems = {c.path.name.split(".")[0] for c in image_cases}
    for p in other:
        if p in dicom_files:
            continue
        if p.name.upper() == "DICOMDIR":
            skipped.append(Skipped(p, "DICOMDIR index, not an image", ignored=True))
        elif p.suffix.lower() == ".json" and p.name.split(".")[0] in image_stems:
            skipped.append(Skipped(p, "sidecar of an image", ignored=True))
        else:
            skipped.append(Skipped(p, _NOT_AN_IMAGE))
    return cases, skipped


def channel_pattern(names: Sequence[str]) -> re.Pattern[str]:
    """Matches a file stem ``<case>_<NNNN>`` or ``<case>_<name>`` (any case) for the channel
    ``names``; groups ``case``, ``index`` (four digits) and ``name``."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"^(?P<case>.+)_(?:(?P<index>\d{{4}})|(?P<name>{alternatives}))$", re.IGNORECASE)


def _group_channels(cases: list[CaseInput], root: Path, names: Sequence[str]) -> list[CaseInput]:
    """Image files named as channels of one case (same folder and stem) become one case; other
    cases are kept as they are, in their order (the group takes its first file's place)."""
    pattern = channel_pattern(names)
    by_name = {n.casefold(): i for i, n in enumerate(names)}
    groups: dict[tuple[Path, str], list[tuple[int, Path]]] = {}
    order: list[CaseInput | tuple[Path, str]] = []
    for c in cases:
        suffix = image_suffix(c.path) if c.series is None else ""
        match = pattern.match(c.path.name[: -len(suffix)]) if suffix else None
        if match is None:
            order.append(c)
            continue
        index = int(match["index"]) if match["index"] is not None else by_name[match["name"].casefold()]
        key = (c.path.parent, match["case"])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((index, c.path))
    out = []
    for item in order:
        if isinstance(item, CaseInput):
            out.append(item)
            continue
        folder, stem = item
        rel = str((folder / stem).relative_to(root))
        out.append(_channel_case(_case_id(rel), groups[item], names))
    return out


def _channel_case(case_id: str, files: list[tuple[int, Path]], names: Sequence[str]) -> CaseInput:
    """The case of one group of channel files, with its problem when a channel is given twice or
    is not one of the model's."""
    slots: list[Path | None] = [None] * len(names)
    problems = []
    for index, path in sorted(files, key=lambda f: (f[0], f[1].name)):
        if index >= len(names):
            problems.append(f"{path.name} is channel {index:04d} but the model takes {len(names)}")
        elif slots[index] is not None:
            problems.append(f"channel {names[index]} is given twice ({slots[index].name}, {path.name})")
        else:
            slots[index] = path
    first = min((p for _, p in files), key=lambda p: p.name)
    return CaseInput(case_id, first, channels=tuple(slots), problem="; ".join(problems) or None)
