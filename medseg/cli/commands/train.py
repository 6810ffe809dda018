"""``medseg train PIPELINE --output RUN``: train a pipeline into a run folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a pipeline (YAML) into a run folder",
        description="Train the model of a pipeline config. The run folder receives the resolved config, "
        "the preprocessing plan, the split, checkpoints (last and best), metrics.csv, TensorBoard logs "
        "and curves.png. Works under torchrun for distributed training (gloo on CPU, nccl on GPU).",
    )
    p.add_argument(
        "pipeline", nargs="?", help="pipeline YAML (optional with --resume: the run's config is used)"
    )
    p.add_argument("--output", "-o", required=True, help="run folder")
    p.add_argument(
        "--data-root",
        help="folder that relative manifest paths start from "
        "(default: $MEDSEG_DATA_ROOT, else the manifest's folder)",
    )
    p.add_argument("--fold", type=int, help="cross-validation fold (0-based) of data.folds")
    p.add_argument(
        "--folds",
        metavar="all|0,2",
        help="train these folds of data.folds into OUTPUT/fold_<k> (one run each), predict each fold's "
        "validation cases out-of-fold and choose the post-processing from them once all are done; "
        "--resume skips finished folds; training.max_minutes applies per fold (docs/training.md)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output where it stopped")
    p.add_argument(
        "--extend-epochs",
        type=int,
        default=0,
        metavar="N",
        help="train N epochs past the planned end (continues the run)",
    )
    p.add_argument(
        "--init-from",
        metavar="RUN_OR_CHECKPOINT",
        help="start from another run's weights (its best, else last checkpoint, or a checkpoint file): "
        "tensors matching by name and shape are loaded; the input conv of another channel count gets the "
        "overlapping channels, any other reshaped tensor (e.g. the head) keeps its initialisation; "
        "see init_from.json in the run folder (not re-applied on --resume)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=5 (repeatable)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from medseg.config import load_pipeline
    from medseg.errors import ConfigError
    from medseg.training import Trainer
    from medseg.training.config_check import check_registries
    from medseg.training.folds import is_fold_run, read_folds, train_folds

    resume = args.resume or args.extend_epochs > 0
    if args.extend_epochs < 0:
        raise ConfigError("--extend-epochs must be positive")
    if args.pipeline:
        config = load_pipeline(args.pipeline, args.set)
    elif resume:
        config = load_pipeline(Path(args.output) / "config.yaml", args.set)
    else:
        raise ConfigError("no pipeline given", hint="pass a pipeline YAML, or --resume an existing run")
    check_registries(config, str(args.pipeline or Path(args.output) / "config.yaml"))
    if logging.getLogger("medseg").level > logging.INFO:
        logging.getLogger("medseg.training").setLevel(logging.INFO)
    if args.folds is not None or (resume and args.fold is None and is_fold_run(args.output)):
        if args.fold is not None or args.extend_epochs or args.init_from:
            raise ConfigError("--folds cannot be combined with --fold, --extend-epochs or --init-from")
        folds = args.folds or (read_folds(args.output) or {}).get("folds", "all")  # resume: those asked for
        train_folds(config, args.output, folds, args.data_root, args.device, resume)
        return 0
    Trainer(
        config,
        args.output,
        data_root=args.data_root,
        fold=args.fold,
        device=args.device,
        resume=resume,
        extend_epochs=args.extend_epochs,
        init_from=args.init_from,
    ).fit()
    return 0
