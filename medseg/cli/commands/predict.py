"""``medseg predict``: masks for a scan or a folder of scans, on each scan's own grid."""

from __future__ import annotations

import argparse
import sys

from medseg.cli.commands.pacs import add_connection_options
from medseg.export.registry import describe_formats


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict masks for a scan or a folder of scans (NIfTI/NRRD/MHA/DICOM, PNG/TIFF slices)",
        description="Predict one mask per scan with a trained model. Inputs: a file, a DICOM folder, or a "
        "folder tree of image files and DICOM series. Each mask lies on its scan's grid (same shape and "
        "affine), uint8 labels; a 2D picture (PNG, TIFF, JPEG, BMP) gets a PNG mask of its size. "
        "Finished cases are skipped unless --overwrite; every output is written "
        "atomically; failures are listed and do not stop the batch (exit status 14 if any failed). "
        "Under torchrun the cases are shared out across processes.",
    )
    p.add_argument(
        "--model",
        "-m",
        required=True,
        help="run folder or checkpoint file; a cross-validation run (train --folds) predicts with the mean "
        "of its folds' probabilities",
    )
    p.add_argument(
        "--folds",
        metavar="0,2",
        help="with a cross-validation run: the folds to ensemble (default: the folds it was trained with; "
        "a fold without a checkpoint is refused, name the trained ones)",
    )
    p.add_argument(
        "--input",
        "-i",
        required=True,
        help="scan, DICOM folder, folder of scans, or a PACS query: "
        "dicomweb://HOST:PORT/PATH?StudyInstanceUID=… "
        "or dimse://AET@HOST:PORT?PatientID=…&Modality=CT&StudyDate=20200101-20201231 (docs/pacs.md)",
    )
    p.add_argument("--output", "-o", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1) (default: the model's)")
    p.add_argument("--batch-size", type=int, help="windows per forward pass (default: the model's)")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirror test-time augmentation (default: the model's setting)",
    )
    p.add_argument(
        "--backend",
        default=None,
        help="engine that runs the network: auto, torch, onnxruntime or openvino (default: the model's "
        "inference.backend, normally auto: the fastest that matches fp32 here; docs/inference.md)",
    )
    p.add_argument(
        "--precision",
        default=None,
        help="fp32, bf16 or int8 (int8: post-training quantisation calibrated on the run's training "
        "patches); default: the model's inference.precision, normally auto",
    )
    p.add_argument("--amp", action="store_true", help="mixed precision (same as --precision bf16)")
    p.add_argument("--probabilities", action="store_true", help="also write per-class probability maps")
    p.add_argument(
        "--keep-largest",
        action="store_true",
        help="keep the largest component of each class (with --min-size or --fill-holes: replaces the "
        "post-processing a cross-validation run chose)",
    )
    p.add_argument(
        "--min-size",
        type=float,
        default=None,
        metavar="MM3",
        help="remove components smaller than this volume (mm^3)",
    )
    p.add_argument("--fill-holes", action="store_true", help="fill holes in each class")
    p.add_argument(
        "--chosen-postprocessing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply the per-class post-processing chosen for the run (postprocessing.json: out-of-fold "
        "for a run trained with --folds, on the validation cases with training.choose_postprocessing; "
        "default: on when there is one and none of the three flags above is given)",
    )
    p.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine the softmax with a dense CRF before the arg-max, with the run's "
        "postprocessing.crf parameters (default: its enabled setting, normally off; softmax models "
        "only; docs/inference.md)",
    )
    p.add_argument(
        "--format",
        default=None,
        help=f"comma-separated outputs: {describe_formats()} (default: nifti for volumes; for 2D "
        "pictures the mask is a PNG, or a TIFF past 255 labels, and nifti adds a NIfTI copy)",
    )
    p.add_argument(
        "--resample-uneven",
        action="store_true",
        help="resample DICOM series with uneven spacing or gantry tilt onto a regular grid "
        "(otherwise such series fail with the reason)",
    )
    p.add_argument(
        "--missing-channel",
        default="refuse",
        metavar="POLICY",
        help="for a multi-channel model, a case that lacks a channel (its files are <case>_0000, "
        "<case>_0001... or <case>_<channel name>): refuse (default: the case fails, naming the expected "
        "channels), zeros (0 after normalisation: a z-scored channel's mean) or copy:<channel> "
        "(another channel's image); zeros and copy are warned about and recorded in the case's JSON "
        "(docs/inference.md)",
    )
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="which checkpoint of a run")
    p.add_argument("--overwrite", action="store_true", help="predict cases whose output already exists")
    p.add_argument(
        "--push",
        action="store_true",
        help="with a PACS --input: store the validated SEG/RTSTRUCT results back by the same protocol",
    )
    add_connection_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from medseg.errors import ConfigError
    from medseg.export import parse_formats
    from medseg.inference.batch import predict_folder
    from medseg.inference.channels import ChannelOptions, MissingChannel
    from medseg.inference.ensemble import load_predictor
    from medseg.pacs.address import is_pacs_address

    formats = tuple(f.name for f in parse_formats(args.format)) if args.format else None
    if args.overlap is not None and not 0 <= args.overlap < 1:
        raise ConfigError(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.min_size is not None and args.min_size < 0:
        raise ConfigError("--min-size must be >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    pacs = None
    if is_pacs_address(args.input):
        from medseg.cli.commands.pacs import PUSHABLE_FORMATS, client_and_query

        if args.push and formats is not None and not set(formats) & set(PUSHABLE_FORMATS):
            raise ConfigError(
                f"--push stores DICOM results, but --format {args.format} makes none",
                hint="add dicom-seg or rtstruct to --format",
            )
        # The address and the settings are checked before the model is loaded.
        pacs = client_and_query(args.input, args.pacs_config)
    elif args.push:
        raise ConfigError("--push needs a PACS --input (dicomweb://… or dimse://…)")
    MissingChannel.parse(args.missing_channel, None)  # the value's form, before the model is loaded
    predictor = load_predictor(
        args.model,
        args.folds,
        device=args.device,
        checkpoint=args.checkpoint,
        overlap=args.overlap,
        batch_size=args.batch_size,
        tta=args.tta,
        amp=args.amp,
        backend=args.backend,
        precision=args.precision,
        crf=args.crf,
    )
    names = ChannelOptions.of_predictor(predictor).names
    channels = ChannelOptions(names, MissingChannel.parse(args.missing_channel, names))
    options = _postprocessing(args, predictor)
    if pacs is not None:
        from medseg.cli.commands.pacs import predict_from_pacs

        return predict_from_pacs(
            args,
            predictor,
            formats,
            pacs=pacs,
            probabilities=args.probabilities,
            postprocessing=options,
            resample_uneven=args.resample_uneven,
        )
    result = predict_folder(
        predictor,
        args.input,
        args.output,
        overwrite=args.overwrite,
        probabilities=args.probabilities,
        postprocessing=options,
        formats=formats,
        resample_uneven=args.resample_uneven,
        channels=channels,
    )
    sys.stdout.write(result.table() + "\n")
    return result.exit_code


def _postprocessing(args: argparse.Namespace, predictor: object):
    """The flags' options; else, for a cross-validation run, the chosen ones (unless refused)."""
    from medseg.errors import ConfigError
    from medseg.inference.postprocess import PostprocessOptions

    flags = args.keep_largest or args.min_size is not None or args.fill_holes
    chosen = getattr(predictor, "recorded_postprocessing", None)  # chosen out-of-fold or on validation
    if args.chosen_postprocessing and flags:
        raise ConfigError(
            "--chosen-postprocessing cannot be combined with --keep-largest, --min-size or --fill-holes"
        )
    if args.chosen_postprocessing and chosen is None:
        raise ConfigError(
            f"{args.model} records no chosen post-processing",
            hint="it is chosen for runs trained with --folds (medseg crossval RUN writes it) and for "
            "runs trained with training.choose_postprocessing (medseg plan sets it)",
        )
    if flags or args.chosen_postprocessing is False or chosen is None:
        return PostprocessOptions(args.keep_largest, args.min_size or 0.0, args.fill_holes)
    return chosen
