"""``medseg crossval RUN``: Dice per fold and pooled out-of-fold, post-processing choice, report;
``medseg crossval RUN_3D RUN_2D -o CHOICE``: the configuration (or ensemble) cross-validation picks."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crossval",
        help="cross-validation results of a run trained with --folds: Dice per fold and pooled, "
        "post-processing choice, HTML report",
        description="Evaluate the out-of-fold predictions of a run made by 'medseg train --folds' (each case "
        "predicted by the fold model that did not train on it; finished folds without them are predicted "
        "first). Prints the Dice per class for each fold and pooled over every out-of-fold case, chooses "
        "per class whether keeping the largest component or removing small ones raises the out-of-fold "
        "Dice (RUN/postprocessing.json, applied by 'medseg predict -m RUN'), and writes crossval.json, "
        "evaluation/ (as 'medseg evaluate'), oof/ and report.html into --output. Given several runs of one "
        "dataset on the same folds (the 3D and 2D configurations of a plan), it evaluates each into "
        "RUN/crossval, scores their ensembles (mean of the out-of-fold probabilities) and records the best "
        "in --output/configuration.json: 'medseg predict -m OUTPUT' then predicts with it.",
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN", help="cross-validation run folder(s) (each holds folds.json)"
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        help="where to write the results (default: RUN/crossval); with several runs, the folder of the "
        "configuration choice (needed)",
    )
    p.add_argument(
        "--no-ensembles", action="store_true", help="with several runs: do not score their ensembles"
    )
    p.add_argument(
        "--device", default="auto", help="for out-of-fold predictions still to make (default auto)"
    )
    p.add_argument(
        "--min-gain",
        type=float,
        default=None,
        metavar="DICE",
        help="post-processing is chosen for a class when it raises its mean out-of-fold Dice by more than "
        "this (default 0.001)",
    )
    p.add_argument("--cases", type=int, default=3, metavar="N", help="worst and best cases shown (default 3)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.evaluation.crossval import cross_validate

    if args.cases < 0:
        raise ConfigError(f"--cases must be >= 0, got {args.cases}")
    if args.min_gain is not None and args.min_gain < 0:
        raise ConfigError(f"--min-gain must be >= 0, got {args.min_gain}")
    if len(args.run_dirs) > 1:
        return _choose(args)
    cv = cross_validate(
        args.run_dirs[0],
        args.output,
        device=args.device,
        report=not args.no_report,
        n_cases=args.cases,
        min_gain=args.min_gain,
    )
    sys.stdout.write(cv.table() + "\n")
    if cv.report is not None:
        sys.stdout.write(f"{cv.report}\n")
    return 0


def _choose(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.evaluation.configuration_choice import choose_configuration

    if not args.output:
        raise ConfigError(
            "several runs need --output: the folder where the chosen configuration is recorded",
            hint="e.g. medseg crossval RUN_3D RUN_2D -o chosen, then medseg predict -m chosen",
        )
    choice = choose_configuration(
        args.run_dirs,
        args.output,
        device=args.device,
        ensembles=not args.no_ensembles,
        min_gain=args.min_gain,
    )
    sys.stdout.write(choice.table() + "\n")
    sys.stdout.write(
        f"recorded in {choice.output}/configuration.json; predict with: medseg predict -m {choice.output}\n"
    )
    return 0
