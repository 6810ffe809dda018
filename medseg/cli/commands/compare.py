"""``medseg compare RUN_A RUN_B ...``: evaluations side by side with paired differences."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare the evaluations of several runs (per class, paired differences, Wilcoxon p)",
        description="Put the evaluations of several runs side by side per class: mean ± sd of Dice, "
        "IoU, boundary IoU, HD95, ASSD and NSD, and for each run the mean paired per-case difference to "
        "the first run with a Wilcoxon signed-rank p-value; boundary metrics are highlighted; the "
        "dataset-level IoU per class and mIoU of each run. Prints a Markdown table and writes compare.md, "
        "compare.csv, compare.png and compare.html, and compare_error_curve.png (error rate against the "
        "distance to the reference boundary, one line per run) when every run has boundary_error.json.",
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="evaluation folders, or run folders with evaluation/"
    )
    p.add_argument(
        "--output", metavar="DIR", default="comparison", help="output folder (default ./comparison)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.reporting.compare import compare_runs

    comparison = compare_runs(args.runs, output=args.output)
    sys.stdout.write(comparison.to_markdown())
    sys.stdout.write(f"- written to {args.output}\n")
    return 0
