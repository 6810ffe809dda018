"""``medseg export --mask MASK --reference DICOM_DIR --format FORMAT --output FILE``.

The formats, their names and suffixes come from the export-format registry
(:mod:`medseg.export.registry`), which imports nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import sys

from medseg.export.registry import describe_formats, export_names

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a mask as DICOM SEG or RTSTRUCT on its source DICOM series",
        description="Export a label map (NIfTI/NRRD/MHA on the grid of a DICOM series, or any axis "
        "permutation/flip of it) as a DICOM Segmentation (SEG) or RT Structure Set (RTSTRUCT) "
        "that references the source series, for clinical viewers (3D Slicer, OHIF, ITK-SNAP, "
        "PACS, TPS). See docs/export.md.",
    )
    p.add_argument("--mask", required=True, help="label map file (0 = background)")
    p.add_argument(
        "--reference",
        metavar="DICOM_DIR",
        help="folder of the source DICOM series (required by the formats that reference it)",
    )
    p.add_argument(
        "--format",
        required=True,
        metavar="|".join(export_names()),
        help=f"{describe_formats()}; several, comma-separated, with --output a folder",
    )
    p.add_argument(
        "--labels",
        metavar="LABELS.json",
        help="labels file naming each label value (name, colour, SNOMED CT codes); without it "
        "classes are called 'Segment N' and coded as generic tissue",
    )
    p.add_argument("--output", required=True, help="output file (a folder when several formats)")
    p.add_argument("--series", help="which series of --reference, when it holds several")
    p.add_argument("--model", help="model name recorded with the algorithm (e.g. the run name)")
    p.add_argument("--algorithm-name", default="medseg", help="algorithm name recorded (default medseg)")
    p.add_argument(
        "--algorithm-type",
        default="automatic",
        choices=["automatic", "semiautomatic", "manual"],
        help="how the mask was made (default automatic)",
    )
    p.add_argument(
        "--fractional",
        action="store_true",
        help="fractional segments (from a 4D mask of per-label probabilities), for the formats "
        "that store them",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg.export import ExportOptions, MaskExporter, export_mask, parse_formats
    from medseg.io.formats import case_id

    formats = parse_formats(args.format)
    options = ExportOptions(
        algorithm_name=args.algorithm_name,
        model_name=args.model,
        algorithm_type=args.algorithm_type,
        fractional=args.fractional,
        series=args.series,
    )
    if len(formats) == 1 and not Path(args.output).is_dir():
        out = export_mask(
            args.mask, args.reference, formats[0], args.labels, args.output, options, overwrite=args.overwrite
        )
        sys.stdout.write(f"{out}\n")
        return 0
    stem = case_id(args.mask) or "mask"
    written = MaskExporter(formats, args.labels, options)(
        args.mask, args.reference, args.output, stem=stem, overwrite=args.overwrite
    )
    for path in written.values():
        sys.stdout.write(f"{path}\n")
    return 0
