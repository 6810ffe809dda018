"""``medseg evaluate --pred FOLDER --ref FOLDER``: Dice, IoU, HD95, ASSD, NSD, volume per case and class."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare predicted label maps with references (Dice, IoU, HD95, ASSD, NSD, volume)",
        description="Match predictions to references by case id (file name without extension and "
        "without a trailing _0000), then compute per case and class: Dice, IoU, 95th-percentile "
        "Hausdorff distance, average symmetric surface distance, normalised surface Dice and volume "
        "differences, in mm from the image geometry (in pixels for 2D pictures: PNG, TIFF, JPEG, "
        "BMP label images, read as stored). Prints a Markdown table; with --output writes "
        "metrics.csv, summary.json and evaluation.json (the input of medseg report / compare).",
    )
    p.add_argument("--pred", required=True, metavar="FOLDER", help="folder of predicted label maps")
    p.add_argument("--ref", required=True, metavar="FOLDER", help="folder of reference label maps")
    p.add_argument(
        "--labels",
        metavar="SPEC",
        help='labels to evaluate: "1:liver,2:spleen", "1,2", or a JSON file mapping ids to names '
        "(dataset.json works); default: every label present in the references",
    )
    p.add_argument(
        "--nsd-tolerance",
        type=float,
        default=1.0,
        metavar="MM",
        help="tolerance of the normalised surface Dice in mm (default 1.0)",
    )
    p.add_argument(
        "--resample-pred",
        action="store_true",
        help="resample predictions that are not on the reference grid (nearest neighbour in world "
        "space) instead of refusing them",
    )
    p.add_argument("--output", metavar="FOLDER", help="write metrics.csv, summary.json, evaluation.json here")
    p.add_argument(
        "--images", metavar="FOLDER", help="folder of the scans (matched by case id), used for overlays"
    )
    p.add_argument(
        "--overlays",
        action="store_true",
        help="also draw one overlay PNG per case into OUTPUT/overlays (needs --output)",
    )
    p.add_argument(
        "--window",
        default="auto",
        metavar="NAME|L,W",
        help="CT window of the overlays: preset (abdomen, lung...), level,width, 'auto' (default: "
        "soft tissue for CT, percentiles otherwise) or 'none' (percentiles)",
    )
    p.set_defaults(run=run)


def parse_window(text: str | None) -> str | None:
    """``--window`` value: None for 'none'; validated otherwise (raises ConfigError)."""
    if text is None or text.strip().lower() == "none":
        return None
    if text.strip().lower() == "auto":
        return "auto"
    from medseg.transforms.intensity import parse_window as check

    check(text)
    return text


def run(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.evaluation import evaluate

    if args.overlays and not args.output:
        raise ConfigError("--overlays needs --output", hint="add --output FOLDER")
    window = parse_window(args.window)
    if args.nsd_tolerance < 0:
        raise ConfigError(f"--nsd-tolerance must be >= 0 mm, got {args.nsd_tolerance}")
    result = evaluate(
        args.pred,
        args.ref,
        labels=args.labels,
        nsd_tolerance=args.nsd_tolerance,
        resample_pred=args.resample_pred,
        output=args.output,
        image_dir=args.images,
    )
    sys.stdout.write(result.to_markdown())
    if args.overlays:
        from pathlib import Path

        from medseg.reporting.cases import write_case_overlays

        written = write_case_overlays(result, Path(args.output) / "overlays", window=window)
        sys.stdout.write(f"- {len(written)} overlays in {Path(args.output) / 'overlays'}\n")
    if args.output:
        sys.stdout.write(f"- results written to {args.output}\n")
    return 0
