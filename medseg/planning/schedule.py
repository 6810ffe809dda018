"""The training schedule of a plan: budget, epochs, validation cadence, optimiser and loaders.

nnU-Net's SGD (0.01, momentum 0.99, poly decay; Isensee et al., Nature Methods 2021), stretched over
the time budget instead of a fixed epoch count: the trainer ends the run when the budget is spent
and follows the elapsed time in its poly schedule.
"""

from __future__ import annotations

import math
import os

from medseg.planning import topology as tp
from medseg.planning.rules import Decision

#: Share of the budget validation may take, and the most validations per run.
VAL_SHARE, MAX_VALIDATIONS = 0.1, 20
#: Epoch counts are planned at this multiple of the steps the budget allows: the budget, not the
#: epoch count, ends the run, and the poly schedule follows the elapsed time (trainer ``_loop``).
EPOCH_HEADROOM = 4


def schedule(budget: float, fit: tp.Fit, val_pass_s: float, device: str) -> list[Decision]:
    """Budget, epochs, iterations and validation cadence; nnU-Net's SGD + poly, stretched over time."""
    step, steps = fit.step_seconds, fit.steps
    ipe = int(min(250, max(25, 5 * round(30 / max(step, 1e-6) / 5))))
    est_epochs = max(1.0, steps / ipe)
    epochs = max(1, math.ceil(EPOCH_HEADROOM * est_epochs))
    passes = int(min(MAX_VALIDATIONS, max(1, VAL_SHARE * budget * 60 // max(val_pass_s, 1e-6))))
    val_every = max(1, math.ceil(est_epochs / passes))
    ev = f"{step:.3g} s/step -> about {steps:.0f} steps, {est_epochs:.0f} epochs"
    ev += f"; one validation about {val_pass_s:.3g} s"
    cpu = not device.startswith("cuda")
    out = [
        Decision(
            "training.max_minutes", float(budget), "the time budget: training stops when it is spent", ""
        ),
        Decision(
            "training.epochs",
            epochs,
            f"{EPOCH_HEADROOM}x the epochs the budget allows: the budget ends the "
            "run and the poly schedule is stretched over the elapsed time (trainer)",
            ev,
        ),
        Decision("training.iterations_per_epoch", ipe, "epochs of about 30 s (a checkpoint each epoch)", ev),
        Decision(
            "training.val_every",
            val_every,
            f"at most {MAX_VALIDATIONS} validations, together under "
            f"{100 * VAL_SHARE:g} % of the budget (and one after the last epoch)",
            ev,
        ),
        Decision("training.optimizer", "sgd", "nnU-Net's optimiser: SGD with nesterov momentum", ""),
        Decision("training.lr", 0.01, "nnU-Net's learning rate", ""),
        Decision("training.momentum", 0.99, "nnU-Net's momentum", ""),
        Decision(
            "training.schedule",
            "poly",
            "poly decay over the budget (lever study: cosine with warm-up cost 0.007 / 0.004 Dice)",
            "",
        ),
        Decision(
            "training.num_workers",
            _workers(device),
            "loader processes: one per 4 CPU cores on a CPU (the steps need the cores), more on CUDA",
            f"{os.cpu_count()} CPU cores",
        ),
    ]
    if cpu:
        out.append(
            Decision(
                "training.cpu_bf16",
                True,
                "bf16 autocast on CPUs with native bf16 (about 2x "
                "faster steps, the hippocampus recipe); ignored elsewhere",
                "",
            )
        )
    return out


def _workers(device: str) -> int:
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(1, min(8, cores - 2))
    return max(1, min(4, cores // 4))


def val_pass_seconds(fp: dict, fit: tp.Fit, median_full: list[float], patch_axes: list[int]) -> float:
    """One validation: sliding windows (overlap 0.5) over 20 % of the labelled cases, a forward
    pass taken as a third of a training step per patch."""
    n_val = max(1, round(0.2 * int(fp["dataset"].get("n_labelled", fp["summary"]["n_cases"]))))
    windows = 1.0
    for a, p in zip(patch_axes, fit.topo.patch):
        s = median_full[a]
        windows *= 1 if s <= p else math.ceil((s - p) / (p / 2)) + 1
    for a in range(len(median_full)):
        if a not in patch_axes:
            windows *= max(1.0, median_full[a])  # 2D: every slice
    return n_val * windows * fit.step_seconds / (3 * fit.batch)
