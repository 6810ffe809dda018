"""``medseg report PATH``: a self-contained HTML report of a run or an evaluation."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run folder or an evaluation folder",
        description="Write one HTML file (images embedded, no network needed) with the run's "
        "configuration and training curves, the per-class summary, the per-case metrics table "
        "(sortable) and overlays of the worst and best cases by mean Dice.",
    )
    p.add_argument("path", help="run folder (config.yaml, metrics.csv, evaluation/) or evaluation folder")
    p.add_argument("--output", metavar="FILE", help="HTML file to write (default: PATH/report.html)")
    p.add_argument("--cases", type=int, default=3, metavar="N", help="worst and best cases shown (default 3)")
    p.add_argument(
        "--window",
        default="auto",
        metavar="NAME|L,W",
        help="CT window of the overlays: preset, level,width, 'auto' (default) or 'none' (percentiles)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.cli.commands.evaluate import parse_window
    from medseg.errors import ConfigError
    from medseg.reporting.report import build_report

    if args.cases < 0:
        raise ConfigError(f"--cases must be >= 0, got {args.cases}")
    out = build_report(args.path, args.output, n_cases=args.cases, window=parse_window(args.window))
    sys.stdout.write(f"{out}\n")
    return 0
