# ruff: noqa: E501  (prose templates: the sentences carry their numbers inline)
"""``docs/architecture_study.md`` from the values gathered by ``architecture_study_report.py``.

The tables are rebuilt from the run folders on every call; the words of the conclusions are about
the recorded run and quote its numbers from the same values, so a rerun that changes a number
changes it in the text too (a rerun that flips a direction needs the text read again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.architecture_study_report import TITLES, ablation_table, families_table, run_facts

STUDY_CMD = "python benchmarks/architecture_study.py"


def _v(data: dict, dataset: str, table: str, run: str, metric: str, what: int = 0) -> float:
    value = data[dataset]["values"][table][run][metric][what]
    return float("nan") if value is None else float(value)


def _p(data: dict, dataset: str, table: str, run: str, metric: str) -> str:
    p = data[dataset]["values"][table][run][metric][2]
    return "n/a" if p is None else f"{p:.2g}"


def _steps(data: dict, dataset: str, run: str) -> int:
    return int(run_facts(data[dataset]["folder"] / run).get("steps", 0))


def _setup(data: dict) -> str:
    any_run = next(iter(data.values()))
    facts = run_facts(any_run["folder"] / "unet")
    machine = facts.get("machine", {})
    return f"""## Setup

- **Budget:** {facts.get("budget_minutes", 0) * 60:.0f} s of training per model (`training.max_minutes=\
{facts.get("budget_minutes")}`; the learning-rate schedule is stretched to the budget), on one
  {machine.get("gpu", "GPU")} ({facts.get("device")}), bf16 autocast, {machine.get("cpu_cores")} CPU cores.
  The GPU was lent for 15 minutes in all, so the budget is short: these are **early-training**
  comparisons. Four runs trained at a time on the one GPU (two ISBI, two Hippocampus streams, 3
  data-loading workers each), so the number of optimiser steps a model got in its budget also
  depends on its neighbours: the "steps done" column says what each really got.
- **Recipes:** every model is trained with its dataset's pipeline (`pipelines/isbi2012_unet2d.yaml`:
  Dice + focal, AdamW, cosine, strong elastic augmentation, batch 4 of 256x256;
  `pipelines/hippocampus_unet3d.yaml`: Dice + focal, SGD, poly, left-right flips, batch 2 of
  40x56x40), with the registry's default size of each family (the U-Net: the pipeline's widths).
- **Data and scoring:** ISBI 2012, training slices 0-19, scored on slices 20-23; MSD Hippocampus,
  the fixed 166/42 split. No validation during training and the last checkpoint is scored (nothing
  is selected on the test cases); no test-time augmentation. ISBI PNGs carry no pixel size, so
  its distances are in pixels (boundary IoU band 2 px, NSD tolerance 1 px); Hippocampus in mm
  (band 2 mm, NSD at 1 mm). Boundary IoU: Cheng et al., CVPR 2021.
- **Significance:** paired two-sided Wilcoxon signed-rank tests over cases against each table's
  first row (`medseg compare`), * for p < 0.05. With 4 ISBI slices the smallest attainable p is
  0.125 (all four slices moving the same way), so **no ISBI difference can be significant**;
  the 42 Hippocampus cases are where significance is decided.
- **Resources:** parameters; forward GFLOPs of one patch at batch 1 (`torch.utils.flop_counter`);
  training-step time (median of 7 timed steps after 3 warm-up steps, batch as trained, bf16
  autocast) and its peak allocated GPU memory, measured one model at a time on the idle GPU.

Commands (the study folder defaults to `/tmp/medseg_bench/architecture_study`):

```bash
{STUDY_CMD} train --dataset isbi,hippocampus --minutes 0.2 --device cuda --workers 3   # one stream
{STUDY_CMD} train --dataset isbi --shard 0/2 ...                                       # or in parallel shards
{STUDY_CMD} measure --device cuda
{STUDY_CMD} evaluate            # medseg evaluate per run, the CRF runs, one medseg compare per table
python benchmarks/architecture_study_report.py    # figures and this page
# any table again, e.g. the skip ablation on Hippocampus:
medseg compare $STUDY/hippocampus/unet $STUDY/hippocampus/unet-noskip1 $STUDY/hippocampus/unet-noskip2 \\
  $STUDY/hippocampus/unet-noskip3 $STUDY/hippocampus/unet-noskips --output compare-skips
```
"""


def _conclusions(data: dict) -> str:
    h, i = "hippocampus", "isbi"
    skips_h = {r: _v(data, h, "skips", r, "boundary_iou") for r in data[h]["tables"]["skips"]}
    skips_i = {r: _v(data, i, "skips", r, "boundary_iou") for r in data[i]["tables"]["skips"]}
    single_i = [
        abs(_v(data, i, "skips", r, "boundary_iou", 1)) for r in skips_i if "noskip" in r and r[-1].isdigit()
    ]
    fcn = {d: [_v(data, d, "fcn", r, "boundary_iou") for r in ("fcn8s", "fcn16s", "fcn32s")] for d in (h, i)}
    return f"""## Conclusions (the recorded run)

These hold for **early training** (12 s per model) and for these two datasets. Four runs shared
the GPU, so models of equal cost got different numbers of steps (the "steps done" columns); where a
comparison's steps differ by more than a third it is said below, and such a difference bounds an
effect rather than measuring it. With 4 ISBI slices no ISBI difference can be significant.

**Skip connections.** Removing *all* skips hurt boundaries most: on Hippocampus boundary IoU fell
from {skips_h["unet"]:.3f} to {skips_h["unet-noskips"]:.3f} (p={_p(data, h, "skips", "unet-noskips", "boundary_iou")}),
HD95 rose from {_v(data, h, "skips", "unet", "hd95"):.2f} to {_v(data, h, "skips", "unet-noskips", "hd95"):.2f} mm and Dice from
{_v(data, h, "skips", "unet", "dice"):.3f} to {_v(data, h, "skips", "unet-noskips", "dice"):.3f}, with as many steps as the U-Net
({_steps(data, h, "unet-noskips")} against {_steps(data, h, "unet")}). On ISBI the skip-less U-Net lost
{-_v(data, i, "skips", "unet-noskips", "boundary_iou", 1):.3f} boundary IoU and {-_v(data, i, "skips", "unet-noskips", "nsd", 1):.3f} NSD
(all four slices the same way). One skip at a time mattered in 3D and hardly in 2D: on Hippocampus
every single removal cost boundary IoU significantly, least for the deepest skip
({_v(data, h, "skips", "unet-noskip3", "boundary_iou", 1):+.3f}, p={_p(data, h, "skips", "unet-noskip3", "boundary_iou")}, as many steps
as the U-Net); the larger losses without the top skips ({_v(data, h, "skips", "unet-noskip1", "boundary_iou", 1):+.3f} without the
full-resolution skip, {_v(data, h, "skips", "unet-noskip2", "boundary_iou", 1):+.3f} without the second) came with fewer steps
({_steps(data, h, "unet-noskip1")} and {_steps(data, h, "unet-noskip2")}), so they bound the effect from above. On ISBI no single removal
moved boundary IoU by more than {max(single_i):.3f}. The FCN variants tell the same story from the other
side: each finer skip added boundary quality, 32s → 16s → 8s boundary IoU
{fcn[i][2]:.3f} → {fcn[i][1]:.3f} → {fcn[i][0]:.3f} on ISBI, and 16s → 8s {fcn[h][1]:.3f} → {fcn[h][0]:.3f} on Hippocampus
(p={_p(data, h, "fcn", "fcn16s", "boundary_iou")}, with {_steps(data, h, "fcn16s")} against {_steps(data, h, "fcn8s")} steps; FCN-32s is starved there, see the
caveat below).

**Dilation.** Where atrous convolution *replaces downsampling* (DeepLab v1/v2: atrous keeps output
stride 8; without it the same network runs at output stride 32), it was worth a large share of
boundary quality: Hippocampus boundary IoU {_v(data, h, "dilation-v1", "deeplabv1", "boundary_iou"):.3f} against
{_v(data, h, "dilation-v1", "deeplabv1-noatrous", "boundary_iou"):.3f} (v1, p={_p(data, h, "dilation-v1", "deeplabv1-noatrous", "boundary_iou")}) and
{_v(data, h, "dilation-v2", "deeplabv2", "boundary_iou"):.3f} against {_v(data, h, "dilation-v2", "deeplabv2-noatrous", "boundary_iou"):.3f} (v2), ISBI
{_v(data, i, "dilation-v1", "deeplabv1", "boundary_iou"):.3f} against {_v(data, i, "dilation-v1", "deeplabv1-noatrous", "boundary_iou"):.3f} (v1).
Where it only *enlarges the receptive field* at a fixed output stride (DeepLabV3 with and without
its rates, both at stride 8), the effect was small and mixed: on Hippocampus the rates gave
{_v(data, h, "dilation-v3", "deeplabv3", "boundary_iou"):.3f} against {_v(data, h, "dilation-v3", "deeplabv3-noatrous", "boundary_iou"):.3f} boundary IoU (p={_p(data, h, "dilation-v3", "deeplabv3-noatrous", "boundary_iou")}) and
{_v(data, h, "dilation-v3", "deeplabv3", "nsd"):.3f} against {_v(data, h, "dilation-v3", "deeplabv3-noatrous", "nsd"):.3f} NSD (p={_p(data, h, "dilation-v3", "deeplabv3-noatrous", "nsd")}), but a worse HD95 ({_v(data, h, "dilation-v3", "deeplabv3", "hd95"):.2f} against
{_v(data, h, "dilation-v3", "deeplabv3-noatrous", "hd95"):.2f} mm, p={_p(data, h, "dilation-v3", "deeplabv3-noatrous", "hd95")}) and the same Dice; on ISBI the dilation-free model scored
higher ({_v(data, i, "dilation-v3", "deeplabv3-noatrous", "boundary_iou"):.3f} against {_v(data, i, "dilation-v3", "deeplabv3", "boundary_iou"):.3f}) but also
trained {_steps(data, i, "deeplabv3-noatrous")} steps to {_steps(data, i, "deeplabv3")}. In short: on these data resolution kept
by skips or by atrous convolution is what carries boundary quality; a larger receptive field at the
same resolution changes it little.

**Dense CRF (ISBI).** The CRF of `medseg predict --crf` (the same `dense_crf`, default settings,
applied to the saved probabilities on each slice's own grid) raised boundary IoU for both
DeepLab networks it was designed for, DeepLab v1 by
{_v(data, i, "crf-deeplabv1", "deeplabv1-crf", "boundary_iou", 1):+.3f} ({_v(data, i, "crf-deeplabv1", "deeplabv1", "boundary_iou"):.3f} → {_v(data, i, "crf-deeplabv1", "deeplabv1-crf", "boundary_iou"):.3f}) and
v2 by {_v(data, i, "crf-deeplabv2", "deeplabv2-crf", "boundary_iou", 1):+.3f}, and their Dice by
{_v(data, i, "crf-deeplabv1", "deeplabv1-crf", "dice", 1):+.3f} and {_v(data, i, "crf-deeplabv2", "deeplabv2-crf", "dice", 1):+.3f} (every slice the
same way; p = 0.125 is the floor with 4 slices). On the U-Net, whose boundaries are already sharp,
it bought {_v(data, i, "crf-unet", "unet-crf", "boundary_iou", 1):+.3f} boundary IoU for {_v(data, i, "crf-unet", "unet-crf", "dice", 1):+.3f} Dice.

**Families.** At this budget the U-Net led on Hippocampus (Dice {_v(data, h, "families", "unet", "dice"):.3f}, boundary IoU
{_v(data, h, "families", "unet", "boundary_iou"):.3f}; every other family significantly lower) and shared the lead with
DynUNet on ISBI. The families that upsample coarse logits instead of decoding features (FCN, DeepLab v1/v2, PSPNet, PSANet)
reach reasonable Dice but markedly lower boundary IoU and NSD than the U-Net-style decoders, the
same pattern as the ablations. Transformers (SegFormer, SETR) and UCTransNet got far fewer steps in
the same time and are furthest from convergence; SETR (88-99 M parameters at the default size)
is the slowest to learn from scratch. **Caveat:** on Hippocampus, ParseNet and FCN-32s got
{_steps(data, h, "parsenet")} and {_steps(data, h, "fcn32s")} steps: their 32x transposed-convolution upsampling (a 64³ kernel in 3D)
made the first steps take most of the budget on the GPU (once warm a step takes about 31 ms), so
those two rows say nothing about the architectures.
"""


def write_page(data: dict[str, Any], path: Path) -> None:
    parts = [
        "# Architecture study: what skips and dilation do to boundary quality\n\n"
        "Generated by `benchmarks/architecture_study_report.py` from the run folders of "
        "`benchmarks/architecture_study.py` (issue: classic segmentation families). Every registered "
        "family trained from scratch at the same wall-clock budget, on ISBI 2012 (2D) and MSD "
        "Hippocampus (3D, where the family has a 3D form), then the ablations: the U-Net without one "
        "skip level at a time and without all of them, FCN-32s/16s/8s, DeepLab v1/v2/v3 with and "
        "without atrous rates, and the dense CRF on and off.\n",
        _setup(data),
        _conclusions(data),
        "## Figures\n\n![Dice and boundary IoU per family](figures/architecture_study/families.png)\n",
    ]
    for name in data:
        parts.append(
            f"![error against distance, {name}](figures/architecture_study/error_distance_{name}.png)\n\n"
            f"![the same case for every family, {name}](figures/architecture_study/overlays_{name}.png)\n"
        )
    for name, d in data.items():
        parts.append(f"## {TITLES[name]}\n")
        for table, runs in d["tables"].items():
            values = d["values"][table]
            if table == "families":
                parts.append("### Families\n\n" + families_table(d["folder"], runs, values))
            else:
                parts.append(f"### {table}\n\n" + ablation_table(values, runs, d["folder"]))
    record = {n: {"folder": str(d["folder"])} for n, d in data.items()}
    parts.append(f"<!-- study folders: {json.dumps(record)} -->\n")
    path.write_text("\n".join(parts))
