"""``medseg convert INPUT OUTPUT``: any supported scan to any format medseg writes."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from medseg.io.formats import describe_formats

    p = sub.add_parser(
        "convert",
        help="convert a scan or DICOM series (or a DICOM SEG/RTSTRUCT) to NIfTI, NRRD, MHA or PNG/TIFF",
        description=f"Convert a scan ({describe_formats()}, or a DICOM file or folder) to "
        f"{describe_formats(writable=True)}; the output format follows the extension. The "
        "geometry is kept exactly (a 2D picture has 1 mm pixels and stores no geometry; a PNG "
        "holds one slice of whole numbers 0-65535, a TIFF any values and pages); outputs are "
        "written atomically. A DICOM SEG or RTSTRUCT file becomes a label map on the grid of its "
        "source series (--reference).",
    )
    p.add_argument("input", help="image file, DICOM file, or folder of DICOM files")
    p.add_argument("output", help="output file (or folder with --all)")
    p.add_argument("--series", help="DICOM series to convert (id or series number)")
    p.add_argument(
        "--all",
        action="store_true",
        help="convert every series of a DICOM folder into OUTPUT (a folder), one file each",
    )
    p.add_argument(
        "--resample-uneven",
        action="store_true",
        help="resample DICOM series with uneven spacing, missing slices or gantry tilt onto a "
        "regular grid (otherwise they are refused)",
    )
    p.add_argument("--slice-spacing", type=float, help="slice spacing (mm) for --resample-uneven")
    p.add_argument(
        "--window",
        metavar="NAME|L,W",
        help="apply a CT window (preset name or level,width) and write float32 in [0, 1]",
    )
    p.add_argument("--format", default="nii.gz", help="output extension with --all (default nii.gz)")
    p.add_argument(
        "--reference",
        metavar="DICOM_DIR",
        help="for a DICOM SEG or RTSTRUCT input: the source image series, so the label map is on "
        "its grid (required for RTSTRUCT)",
    )
    p.add_argument(
        "--labels",
        metavar="LABELS.json",
        help="for a SEG/RTSTRUCT input: label values by structure name (others are left out)",
    )
    p.add_argument(
        "--overlap",
        choices=["error", "last", "split"],
        default="error",
        help="for a SEG/RTSTRUCT input with overlapping structures: refuse (default), let the "
        "higher label value win, or write one channel per structure (4D)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.api import convert, convert_all

    if args.all:
        results = convert_all(
            args.input,
            args.output,
            extension=args.format,
            resample_uneven=args.resample_uneven,
            slice_spacing=args.slice_spacing,
            window=args.window,
            overwrite=args.overwrite,
        )
        failed = [r for r in results if r["status"] != "ok"]
        for r in results:
            status = r["status"] if r["status"] != "ok" else f"-> {r['output']}"
            sys.stdout.write(f"{r['series_id']} {status}\n")
        from medseg.errors import EXIT_CONVERT_PARTIAL

        return 0 if not failed else EXIT_CONVERT_PARTIAL
    out = convert(
        args.input,
        args.output,
        series=args.series,
        resample_uneven=args.resample_uneven,
        slice_spacing=args.slice_spacing,
        window=args.window,
        overwrite=args.overwrite,
        reference=args.reference,
        labels=args.labels,
        overlap=args.overlap,
    )
    log.info("wrote %s", out)
    return 0
