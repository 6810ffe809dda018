"""The export-format registry: one row per output format, and nothing else keeps a list.

A new export target is one row in :data:`EXPORTS` (name, aliases, file suffix, writer,
capabilities). ``medseg predict --format``, ``medseg export --format``, batch prediction,
:class:`~medseg.export.MaskExporter` and their help texts all read this table.

This module imports only the standard library (writers are imported when first called),
so the CLI can build its help from it without loading numpy or pydicom.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medseg.errors import MedsegError, UnsupportedFormatError

if TYPE_CHECKING:  # pragma: no cover
    from medseg.export.labels import LabelSet
    from medseg.export.options import ExportOptions
    from medseg.export.reference import ReferenceSeries
    from medseg.volume import Volume


class Writer(Protocol):
    """What a row's writer is called with (by :func:`medseg.export.export_mask`).

    ``mask`` is a label map ``[i, j, k]`` (Volume or image path; for fractional formats
    possibly ``[i, j, k, label]`` probabilities in [0, 1]); ``reference`` is the source DICOM
    series (folder or loaded) or None for formats that need none. It writes ``output``
    atomically and returns it.
    """

    def __call__(
        self,
        mask: Volume | str | Path,
        reference: ReferenceSeries | str | Path | None,
        labels: LabelSet | str | Path | dict | list | None,
        output: Path,
        options: ExportOptions,
    ) -> Path: ...


@dataclass(frozen=True)
class LazyWriter:
    """A writer named by module and function, imported on its first call."""

    module: str
    function: str

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return getattr(importlib.import_module(self.module), self.function)(*args, **kwargs)


@dataclass(frozen=True)
class ExportFormat:
    """One export target.

    Args:
        name: The name users type (``--format NAME``) and results are keyed by.
        suffix: File name suffix of its output (``<case><suffix>``).
        writer: Writes one mask (see :class:`Writer`).
        description: What the file is, with the standard it follows.
        aliases: Other accepted spellings (matched ignoring case, ``-`` and ``_``).
        needs_dicom_reference: The output references the source DICOM series, which must
            be given (a NIfTI input cannot be exported so).
        multi_class: One file holds several classes (otherwise masks must hold one).
        fractional: It can store per-class probabilities (``ExportOptions.fractional``).
    """

    name: str
    suffix: str
    writer: Writer
    description: str
    aliases: tuple[str, ...] = ()
    needs_dicom_reference: bool = True
    multi_class: bool = True
    fractional: bool = False


#: Every export format, in the order help texts list them.
EXPORTS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "nifti",
        ".nii.gz",
        LazyWriter("medseg.export.exporter", "write_label_volume"),
        "the label map as NIfTI-1 on the mask's own grid",
        aliases=("nii",),
        needs_dicom_reference=False,
    ),
    ExportFormat(
        "dicom-seg",
        ".seg.dcm",
        LazyWriter("medseg.export.seg", "write_seg"),
        "DICOM Segmentation (PS3.3 A.51) referencing the source series",
        aliases=("seg", "dicomseg"),
        fractional=True,
    ),
    ExportFormat(
        "rtstruct",
        ".rtstruct.dcm",
        LazyWriter("medseg.export.rtstruct", "write_rtstruct"),
        "RT Structure Set (PS3.3 A.19) of planar contours on the source series",
        aliases=("rtss", "rt-struct"),
    ),
)


def _key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name.lower())


def export_names() -> list[str]:
    """The registered format names, in table order."""
    return [f.name for f in EXPORTS]


def describe_formats() -> str:
    """The names for help texts, e.g. ``nifti, dicom-seg, rtstruct (dicom-seg and rtstruct
    need the source DICOM series)``."""
    text = ", ".join(export_names())
    dicom = [f.name for f in EXPORTS if f.needs_dicom_reference]
    if dicom:
        verb = "needs" if len(dicom) == 1 else "need"
        text += f" ({' and '.join(dicom)} {verb} the source DICOM series)"
    return text


def formats_table() -> str:
    """The registry as a Markdown table (docs/export.md holds it; a test keeps it current)."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    lines = [
        "| name | aliases | suffix | needs the DICOM series | fractional |",
        "|---|---|---|---|---|",
    ]
    for f in EXPORTS:
        aliases = ", ".join(f"`{a}`" for a in f.aliases)
        flags = f"{yes(f.needs_dicom_reference)} | {yes(f.fractional)}"
        lines.append(f"| `{f.name}` | {aliases} | `{f.suffix}` | {flags} |")
    return "\n".join(lines) + "\n"


def get_export(name: str | ExportFormat) -> ExportFormat:
    """The row named ``name`` (or one of its aliases; case, ``-`` and ``_`` ignored).

    Raises:
        UnsupportedFormatError: an unknown name (the message lists the known names and the
            closest one).
    """
    if isinstance(name, ExportFormat):
        return name
    spellings = {_key(s): f for f in EXPORTS for s in (f.name, *f.aliases)}
    found = spellings.get(_key(str(name)))
    if found is not None:
        return found
    close = difflib.get_close_matches(_key(str(name)), list(spellings), n=1, cutoff=0.5)
    guess = f"did you mean '{spellings[close[0]].name}'? " if close else ""
    raise UnsupportedFormatError(
        f"unknown export format {name!r}", hint=f"{guess}known formats: {', '.join(export_names())}"
    )


def parse_formats(formats: str | ExportFormat | Iterable[str | ExportFormat]) -> list[ExportFormat]:
    """``"nifti,dicom-seg"`` (or a list of names/rows) -> rows, in the order given, once each.

    Raises:
        UnsupportedFormatError: an unknown name, or none given.
    """
    if isinstance(formats, ExportFormat):
        items: list[str | ExportFormat] = [formats]
    elif isinstance(formats, str):
        items = formats.split(",")
    else:
        items = list(formats)
    out: list[ExportFormat] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        fmt = get_export(item.strip() if isinstance(item, str) else item)
        if fmt not in out:
            out.append(fmt)
    if not out:
        known = ", ".join(export_names())
        raise UnsupportedFormatError("no export format given", hint=f"choose from {known}")
    return out


def check_request(formats: Iterable[ExportFormat], fractional: bool, has_reference: bool) -> None:
    """Refuse what the formats' capabilities rule out, before anything is written.

    Raises:
        MedsegError: a format that needs the source DICOM series, without one.
        UnsupportedFormatError: ``fractional`` where no format stores probabilities.
    """
    formats = list(formats)
    needing = [f.name for f in formats if f.needs_dicom_reference]
    if needing and not has_reference:
        others = " or ".join(f.name for f in EXPORTS if not f.needs_dicom_reference)
        raise MedsegError(
            f"{', '.join(needing)} export needs the source DICOM series of the mask",
            hint="give the source series (medseg export --reference DICOM_DIR, or predict from the DICOM "
            "series)" + (f"; or use {others}" if others else ""),
        )
    if fractional and not any(f.fractional for f in formats):
        able = [f.name for f in EXPORTS if f.fractional]
        raise UnsupportedFormatError(
            f"{', '.join(f.name for f in formats)} cannot store fractional (probability) segments",
            hint=f"drop --fractional, or export {' or '.join(able)}",
        )
