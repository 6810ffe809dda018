"""``medseg demo``: train, predict, evaluate, report and export on the embedded sample."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole job on the embedded real sample (about 6 minutes on a 2-core CPU)",
        description="Train the 3D U-Net hippocampus pipeline on 36 embedded MSD Hippocampus cases for "
        "a bounded time, predict the 10 held-out cases onto their own grids, evaluate them (Dice, "
        "HD95, NSD...), draw overlays, write the HTML report, export one case to DICOM SEG (on a DICOM "
        "series written from its scan) and the embedded TotalSegmentator CT's organs to DICOM SEG, "
        "then print Dice per class and the paths to open. Nothing is downloaded.",
    )
    p.add_argument(
        "--minutes", type=float, default=5.0, metavar="N", help="training budget in minutes (default 5)"
    )
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train (default auto)"
    )
    p.add_argument(
        "--output", default="medseg_demo", metavar="DIR", help="output folder (default ./medseg_demo)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in the output folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from medseg.demo import run_demo

    if logging.getLogger("medseg").level > logging.INFO:
        for name in ("medseg.demo", "medseg.training"):
            logging.getLogger(name).setLevel(logging.INFO)
    result = run_demo(args.output, minutes=args.minutes, device=args.device, overwrite=args.overwrite)
    sys.stdout.write(result.summary() + "\n")
    return 0
