"""``medseg evaluate --pred FOLDER --ref FOLDER``: Dice, IoU, boundary IoU, HD95, ASSD, NSD, volume per case
and class, the error rate against the distance to the reference boundary (boundary_error.json),
with ``--lesions`` the lesion-wise metrics (:mod:`medseg.evaluation.lesion_results`), with ``--regions``
the same metrics per region (:mod:`medseg.evaluation.regions_eval`)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from medseg.evaluation.lesions import LesionSettings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare predicted label maps with references (Dice, IoU, HD95, ASSD, NSD, boundary IoU, ...)",
        description="Match predictions to references by case id (file name without extension and without a "
        "trailing _0000), then compute per case and class: Dice, IoU, 95th-percentile Hausdorff distance, "
        "average symmetric surface distance, normalised surface Dice, boundary IoU and volume differences, "
        "in mm from the image geometry (in pixels for 2D pictures: PNG, TIFF, JPEG, BMP label images, read "
        "as stored). Prints a Markdown table; with --output writes metrics.csv, summary.json, evaluation.json"
        " and boundary_error.json (error rate against the distance to the reference boundary), the input of "
        "medseg report / compare. With --lesions also the BraTS 2023 lesion-wise Dice and HD95, lesion "
        "detection (sensitivity, F1, false positives per case) and, with --probabilities, the FROC of each "
        "class. With --regions also every metric per region (a union of labels, e.g. the BraTS whole "
        "tumour {1, 2, 4}).",
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
    p.add_argument(
        "--regions",
        metavar="SOURCE",
        help="also score regions (unions of labels, e.g. BraTS whole tumour, core, enhancing): those a run "
        "folder was trained on, a pipeline YAML's regions:, or a dataset.json's (regions_class_order); "
        "adds region:<name>:<metric> columns to metrics.csv and 'regions' to summary.json",
    )
    _add_boundary_options(p)
    _add_lesion_options(p)
    p.set_defaults(run=run)


def _add_boundary_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("boundary quality")
    g.add_argument(
        "--boundary-band",
        type=float,
        default=2.0,
        metavar="MM",
        help="band width of the boundary IoU (Cheng et al. 2021) in mm, px for pictures (default 2.0); "
        "the paper's setting is 2%% of the image diagonal",
    )
    g.add_argument(
        "--distance-bins",
        default="0,0.5,1,1.5,2,3,4,6,8,10",
        metavar="MM,MM,...",
        help="bin edges (mm) of the error rate against the distance to the reference boundary, written to "
        "boundary_error.json (default 0,0.5,1,1.5,2,3,4,6,8,10; the last may be inf; 'none': not made)",
    )


def _add_lesion_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("lesion-wise evaluation")
    g.add_argument(
        "--lesions",
        action="store_true",
        help="also score each class (and, with --regions, each region) lesion by lesion: BraTS 2023 "
        "lesion-wise Dice and HD95, detection sensitivity/precision/F1 per IoU threshold, false "
        "positives per case, sensitivity per size band; adds columns to metrics.csv, 'lesions' to "
        "summary.json and writes lesions.json",
    )
    g.add_argument(
        "--lesion-preset",
        metavar="NAME",
        help="BraTS 2023 challenge settings: GLI, SSA, PED (dilation 3, lesions <= 50 mm3 left out), "
        "MEN (dilation 1, 50 mm3) or MET (dilation 1, 2 mm3); the options below override them",
    )
    g.add_argument(
        "--lesion-dilation",
        metavar="N",
        help="dilations (voxels) of the reference before matching; nearby components form one lesion "
        "(default 3)",
    )
    g.add_argument(
        "--lesion-min-volume",
        metavar="MM3",
        help="leave out reference lesions of at most this volume in mm3 (default 0: keep all)",
    )
    g.add_argument(
        "--iou-thresholds",
        metavar="T,T,...",
        help="IoU thresholds in [0, 1) of lesion detection: detected when IoU > t (default 0,0.1,0.5)",
    )
    g.add_argument(
        "--size-bands",
        metavar="MM3,MM3,...",
        help="volume edges (mm3) of the size strata of the sensitivity (default 10,100,1000)",
    )
    g.add_argument(
        "--probabilities",
        metavar="FOLDER",
        help="probability maps (<case>_probabilities.nii.gz of medseg predict --probabilities, channel k "
        "for label k): adds the FROC of each class (needs --lesions)",
    )
    g.add_argument(
        "--froc-threshold",
        metavar="P",
        default="0.1",
        help="probability at which FROC candidates are extracted, in (0, 1] (default 0.1)",
    )


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
    if not math.isfinite(args.boundary_band) or args.boundary_band <= 0:
        raise ConfigError(f"--boundary-band must be > 0 mm, got {args.boundary_band}", hint="e.g. 2")
    bins = _distance_bins(args.distance_bins)
    lesions = lesion_settings(args)
    result = evaluate(
        args.pred,
        args.ref,
        labels=args.labels,
        nsd_tolerance=args.nsd_tolerance,
        resample_pred=args.resample_pred,
        output=args.output,
        image_dir=args.images,
        lesions=lesions,
        probabilities=args.probabilities,
        froc_threshold=_number(args.froc_threshold, "--froc-threshold", "a probability in (0, 1]"),
        regions=args.regions,
        boundary_band_mm=args.boundary_band,
        distance_bins_mm=bins,
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


_LESION_OPTIONS = {
    "lesion_preset": "--lesion-preset",
    "lesion_dilation": "--lesion-dilation",
    "lesion_min_volume": "--lesion-min-volume",
    "iou_thresholds": "--iou-thresholds",
    "size_bands": "--size-bands",
    "probabilities": "--probabilities",
}


def _number(text: str, option: str, expected: str, allow_inf: bool = False, example: str = "0.5") -> float:
    from medseg.errors import ConfigError

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ConfigError(f"{option} must be {expected}, got {text!r}", hint=f"e.g. {option} {example}")
    return value


def _distance_bins(text: str) -> tuple[float, ...] | None:
    """``--distance-bins``: None for 'none', else the edges (checked by
    :func:`~medseg.evaluation.boundary.check_bins`; raises ConfigError)."""
    if text.strip().lower() == "none":
        return None
    from medseg.evaluation.boundary import check_bins

    edges = _numbers(
        text, "--distance-bins", "comma-separated edges in mm", allow_inf=True, example="0,1,2,4,inf"
    )
    return tuple(check_bins(edges).tolist())


def _numbers(
    text: str, option: str, expected: str, allow_inf: bool = False, example: str = "0.5"
) -> tuple[float, ...]:
    return tuple(_number(p, option, expected, allow_inf, example) for p in text.split(",") if p.strip())


def lesion_settings(args: argparse.Namespace) -> LesionSettings | None:
    """The :class:`~medseg.evaluation.lesions.LesionSettings` of the ``--lesion*`` options, or None
    without ``--lesions``.

    Raises:
        ConfigError: a lesion option without ``--lesions``, or a value out of range.
    """
    from medseg.errors import ConfigError

    if not args.lesions:
        given = [flag for dest, flag in _LESION_OPTIONS.items() if getattr(args, dest) is not None]
        if given:
            raise ConfigError(f"{given[0]} needs --lesions", hint="add --lesions")
        return None
    from medseg.evaluation.lesions import LesionSettings

    overrides: dict[str, object] = {}
    if args.lesion_dilation is not None:
        dilation = _number(args.lesion_dilation, "--lesion-dilation", "a whole number of voxels >= 0")
        if dilation < 0 or dilation != int(dilation):
            raise ConfigError(
                f"--lesion-dilation must be a whole number of voxels >= 0, got {args.lesion_dilation!r}",
                hint="e.g. --lesion-dilation 3 (BraTS-GLI) or 1 (BraTS-MEN, MET)",
            )
        overrides["dilation"] = int(dilation)
    if args.lesion_min_volume is not None:
        volume = _number(args.lesion_min_volume, "--lesion-min-volume", "a volume in mm3 >= 0")
        if volume < 0:
            raise ConfigError(f"--lesion-min-volume must be >= 0 mm3, got {volume:g}", hint="e.g. 50")
        overrides["min_volume"] = volume
    if args.iou_thresholds is not None:
        ts = _numbers(args.iou_thresholds, "--iou-thresholds", "comma-separated values in [0, 1)")
        if not ts or any(not 0 <= t < 1 for t in ts) or list(ts) != sorted(set(ts)):
            raise ConfigError(
                f"--iou-thresholds must be increasing values in [0, 1), got {args.iou_thresholds!r}",
                hint="e.g. --iou-thresholds 0,0.1,0.5",
            )
        overrides["iou_thresholds"] = ts
    if args.size_bands is not None:
        bands = _numbers(args.size_bands, "--size-bands", "comma-separated volumes in mm3")
        if not bands or any(b <= 0 for b in bands) or list(bands) != sorted(set(bands)):
            raise ConfigError(
                f"--size-bands must be increasing volumes > 0 mm3, got {args.size_bands!r}",
                hint="e.g. --size-bands 10,100,1000",
            )
        overrides["size_bands"] = bands
    if args.lesion_preset is not None:
        return LesionSettings.brats2023(args.lesion_preset, **overrides)
    return LesionSettings(**overrides)
