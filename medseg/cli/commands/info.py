"""``medseg info PATH``: geometry and metadata of a scan or of the series in a folder."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show shape, spacing, origin, orientation and metadata of a scan",
        description="Show the geometry (shape, spacing, origin, orientation code, direction) and "
        "metadata (modality, series, warnings such as tilt, uneven spacing or 4D) of a NIfTI/"
        "NRRD/MHA file, a DICOM file, or every series in a DICOM folder.",
    )
    p.add_argument("path", help="image file, DICOM file, or folder of DICOM files")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--series", help="only this DICOM series (id or series number)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.api import inspect

    reports = inspect(args.path, series=args.series)
    if args.json:
        sys.stdout.write(json.dumps(reports if len(reports) > 1 else reports[0], indent=2) + "\n")
        return 0
    for n, report in enumerate(reports):
        if n:
            sys.stdout.write("\n")
        sys.stdout.write(format_report(report))
    return 0


def format_report(r: dict) -> str:
    """Human-readable text of one :func:`medseg.api.inspect` report."""
    lines = []
    if r.get("series_id"):
        lines.append(f"series        {r['series_id']}")
    if r.get("error"):
        lines.append(f"error         {r['error']}")
        return "\n".join(lines) + "\n"
    fmt = [
        ("source", r.get("source")),
        ("format", r.get("format")),
        ("modality", r.get("modality")),
        ("description", r.get("series_description")),
        ("series number", r.get("series_number")),
        ("files", r.get("n_files")),
        ("shape", " x ".join(str(s) for s in r["shape"])),
        ("dtype", r["dtype"]),
        ("spacing (mm)", ", ".join(f"{s:.6g}" for s in r["spacing"])),
        ("origin (RAS)", ", ".join(f"{o:.6g}" for o in r["origin"])),
        ("orientation", f"{r['orientation']}{' (oblique)' if r['oblique'] else ''}"),
        ("direction", "; ".join(", ".join(f"{v:.4g}" for v in row) for row in r["direction"])),
        ("volumes", r["n_volumes"] if r["n_volumes"] > 1 else None),
        ("time step (s)", r.get("time_spacing")),
    ]
    for key, value in fmt:
        if value not in (None, ""):
            lines.append(f"{key:<14}{value}")
    for w in r.get("warnings", []):
        lines.append(f"{'warning':<14}{w}")
    return "\n".join(lines) + "\n"
