"""Where a run's held-out errors lie against the slices the reference labels.

    python benchmarks/label_coverage.py --run /tmp/medseg_bench/plan_lgg [--axis 2] \
        [--figure /tmp/coverage.png] [--json benchmarks/results/lgg_label_coverage.json]

For each held-out case that ``train_tumour.py`` wrote into ``RUN/test/pred`` and ``RUN/test/ref``
(label maps on the scan's grid, foreground = any non-zero label), it records:

- the Dice of the whole prediction (as the benchmark scores it);
- the predicted voxels on slices (along ``--axis``) where the reference labels nothing, and the Dice
  with them left out: a reference that stops short of a visible abnormality shows up as a large gap
  between the two;
- the recall and precision, so under- and over-segmentation are told apart.

It also reads the run's validation curve (``RUN/metrics.csv``): the best validation Dice, the first
step within 0.01 of it and the range of the validations after that step, which tells whether the
budget or the data limited the run.

The measurements read no image. ``--figure`` draws, for the case with most predicted voxels on
unlabelled slices, its slices with the reference (green) and the prediction (red) over the image
channel ``--channel``; the figure shows patient images, so it is written only where asked, never
into the repository.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import dump, machine
from medseg.evaluation.metrics import dice

log = logging.getLogger("label_coverage")


def coverage(pred: np.ndarray, ref: np.ndarray, axis: int) -> dict[str, Any]:
    """How a binary prediction ``[*spatial]`` sits against the slices its reference labels.

    Returns:
        ``dice``, ``dice_labelled_slices`` (predicted voxels on slices without reference label left
        out), ``pred_voxels_unlabelled_slices``, ``pred_voxels``, ``ref_voxels``, ``recall``,
        ``precision`` and the first and last labelled slice. With an empty reference every slice is
        unlabelled: ``dice_labelled_slices``, ``recall`` and ``labelled_slices`` are None.
    """
    other = tuple(a for a in range(ref.ndim) if a != axis)
    labelled = ref.any(axis=other)
    shape = [1] * ref.ndim
    shape[axis] = -1
    inside = pred & labelled.reshape(shape)
    hit = int((pred & ref).sum())
    index = np.flatnonzero(labelled)
    return {
        "dice": dice(pred, ref),
        "dice_labelled_slices": dice(inside, ref) if index.size else None,
        "pred_voxels": int(pred.sum()),
        "pred_voxels_unlabelled_slices": int(pred.sum() - inside.sum()),
        "ref_voxels": int(ref.sum()),
        "recall": hit / int(ref.sum()) if index.size else None,
        "precision": hit / max(int(pred.sum()), 1),
        "labelled_slices": [int(index[0]), int(index[-1])] if index.size else None,
    }


def _draw(
    case: str, image: Path, pred: np.ndarray, ref: np.ndarray, axis: int, channel: int, out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    data = np.asarray(nib.load(image).dataobj)
    data = data[..., channel] if data.ndim == ref.ndim + 1 else data
    other = tuple(a for a in range(ref.ndim) if a != axis)
    unlabelled = (pred & ~ref.any(axis=other, keepdims=True)).sum(axis=other)
    slices = sorted(set(np.argsort(unlabelled)[::-1][:2].tolist()) | {int(np.argmax(ref.sum(axis=other)))})
    fig, axes = plt.subplots(1, len(slices), figsize=(4 * len(slices), 4))
    for ax, k in zip(np.atleast_1d(axes), slices):
        ax.imshow(np.take(data, k, axis=axis).T, cmap="gray")
        for mask, colour in ((ref, "g"), (pred, "r")):
            plane = np.take(mask, k, axis=axis)
            if plane.any():
                ax.contour(plane.T, [0.5], colors=colour)
        ax.set_title(f"{case}, slice {k}: reference green, prediction red", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def validation_curve(run: Path, within: float = 0.01) -> dict[str, Any] | None:
    """The run's validation Dice over its steps (``RUN/metrics.csv``): the best and its step, the
    last, ``near_step`` (the first validation within ``within`` of the best) and ``after_range``,
    the lowest and highest validation after it (None: no finite validation)."""
    import csv
    import math

    path = run / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        rows = [(int(r["step"]), float(r["val_dice_mean"])) for r in csv.DictReader(f) if r["val_dice_mean"]]
    rows = [(step, d) for step, d in rows if math.isfinite(d)]
    if not rows:
        return None
    best_step, best = max(rows, key=lambda r: r[1])
    near = next(i for i, (_, d) in enumerate(rows) if d >= best - within)
    after = [d for _, d in rows[near + 1 :]] or [rows[near][1]]
    return {
        "steps": rows[-1][0],
        "best": best,
        "best_step": best_step,
        "last": rows[-1][1],
        "near_step": rows[near][0],
        "after_range": [min(after), max(after)],
        "within": within,
    }


def measure(run: Path, axis: int) -> dict[str, dict[str, Any]]:
    """:func:`coverage` of every case in ``run/test/pred`` against ``run/test/ref``.

    Raises:
        FileNotFoundError: no predictions in ``run/test/pred``.
    """
    import nibabel as nib

    preds = sorted((run / "test" / "pred").glob("*.nii.gz"))
    if not preds:
        raise FileNotFoundError(f"no predictions in {run / 'test' / 'pred'}: run train_tumour.py first")
    cases = {}
    for path in preds:
        pred = np.asarray(nib.load(path).dataobj) > 0
        ref = np.asarray(nib.load(run / "test" / "ref" / path.name).dataobj) > 0
        cases[path.name.removesuffix(".nii.gz")] = coverage(pred, ref, axis)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a train_tumour.py run folder (with test/pred, test/ref)")
    ap.add_argument("--axis", type=int, default=2, help="the slice axis (default 2)")
    ap.add_argument("--figure", help="draw the case with most predictions on unlabelled slices here")
    ap.add_argument("--images", help="the folder of the cases' images (for --figure)")
    ap.add_argument("--channel", type=int, default=1, help="image channel drawn (default 1: LGG's FLAIR)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run = Path(args.run)
    cases = measure(run, args.axis)
    if args.figure:
        import nibabel as nib

        if not args.images:
            ap.error("--figure needs --images")
        case = max(cases, key=lambda c: cases[c]["pred_voxels_unlabelled_slices"])
        pred = np.asarray(nib.load(run / "test" / "pred" / f"{case}.nii.gz").dataobj) > 0
        ref = np.asarray(nib.load(run / "test" / "ref" / f"{case}.nii.gz").dataobj) > 0
        image = Path(args.images) / f"{case}.nii.gz"
        _draw(case, image, pred, ref, args.axis, args.channel, Path(args.figure))
        log.info("drew %s into %s", case, args.figure)
    result = {"run": run.name, "axis": args.axis, "cases": cases, "validation": validation_curve(run)}
    dump({**result, "machine": machine(), "command": shlex.join(["python", *sys.argv])}, args.json)


if __name__ == "__main__":
    main()
