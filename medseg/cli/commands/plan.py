"""``medseg plan DATASET -o PIPELINE.yaml``: a pipeline planned from the dataset's fingerprint."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="plan a pipeline for a new dataset from its fingerprint (docs/planning.md)",
        description="Fingerprint a dataset (shape, spacing, orientation, per-channel foreground "
        "intensities, class sizes and components; in parallel, cached), refuse it with every problem "
        "named if it cannot be trained on, then write a pipeline YAML whose every planned setting has "
        "a comment with its reason and the fingerprint figure behind it, and fingerprint.json beside "
        "it. The step time is probed on the device so that the plan fits the budget. Then: medseg "
        "train PIPELINE.yaml -o RUN, and medseg predict -m RUN.",
    )
    p.add_argument("dataset", help="MSD folder (with dataset.json), a dataset.json or a medseg manifest")
    p.add_argument("--output", "-o", required=True, metavar="PIPELINE.yaml", help="pipeline YAML to write")
    p.add_argument(
        "--budget", type=float, default=30.0, metavar="MINUTES", help="training budget (default 30)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda: what the plan is for (default cpu)")
    p.add_argument(
        "--memory-gb",
        type=float,
        metavar="G",
        help="memory one training step may use (default: 8 on cuda, a quarter of the RAM on cpu)",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (data.folds, default 5)")
    p.add_argument("--data-root", help="folder that relative manifest paths start from")
    p.add_argument(
        "--no-probe", action="store_true", help="estimate the step time from FLOPs instead of timing it"
    )
    p.add_argument("--workers", type=int, help="fingerprint processes (default: the CPUs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.planning.api import plan_dataset

    result = plan_dataset(
        args.dataset,
        args.output,
        budget_minutes=args.budget,
        device=args.device,
        memory_gb=args.memory_gb,
        data_root=args.data_root,
        folds=args.folds,
        probe=not args.no_probe,
        workers=args.workers,
    )
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    others = "".join(f", also {a.kind.upper()}" for a in result.alternatives)
    sys.stdout.write(f"planned {result.kind.upper()}{others}: {args.output} (fingerprint.json beside it)\n")
    return 0
