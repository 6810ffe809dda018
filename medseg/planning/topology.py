"""Patch size and U-Net topology for ``medseg plan``: pooling per axis, levels, width, memory.

The pooling rule and the memory-driven patch reduction follow nnU-Net (Isensee et al., "nnU-Net:
a self-configuring method for deep learning-based biomedical image segmentation", Nature Methods
2021; ``get_pool_and_conv_props`` and ``ExperimentPlanner`` of nnU-Net v2):

* an axis is pooled (stride 2) while its feature map stays >= :data:`MIN_FEATURE_MAP` voxels
  (i.e. it has >= 8 before the pooling) and its current spacing is < 2x the finest current
  spacing among the poolable axes, so anisotropic data is first pooled in-plane only;
* the patch starts as nnU-Net's spacing-aware cube (256^3 voxels in 3D, 2048^2 in 2D, equal mm
  per axis) capped by the median shape, is padded up to the pooling divisor, and while the
  estimated training memory exceeds the limit, the axis largest relative to the median shape
  loses one divisor.

Memory is estimated analytically (:func:`training_memory_bytes`, formula in its docstring). No
torch import at module level; :func:`probe_step_seconds` imports it when called.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Smallest feature map along a pooled axis (nnU-Net: 4 voxels).
MIN_FEATURE_MAP = 4
#: Pool an axis only while its spacing is below this multiple of the finest (nnU-Net: 2).
SPACING_RATIO = 2.0
#: Initial patch before capping by the median shape (nnU-Net v2: 256^3 voxels 3D, 2048^2 2D).
INITIAL_PATCH_VOXELS = {3: 256**3, 2: 2048**2}
#: Saved activations per (channel x voxel) of a ``unet`` level, bytes: 44 in float32, 26 under
#: bf16/fp16 autocast. Measured with ``torch.autograd.graph.saved_tensors_hooks`` on five ``unet``
#: configurations (2D and 3D, widths 16 and 32, isotropic and anisotropic strides): 42.3-45.2 B
#: float32, 23.1-26.5 B bf16 (2 convs per level, instance norm, in-place leaky ReLU, decoder concat).
ACTIVATION_BYTES = {"fp32": 44.0, "amp": 26.0}
#: Headroom on the saved activations for the backward pass's transient gradients and allocator
#: fragmentation.
MEMORY_SAFETY = 1.25
#: Fallback step-time model (no probe): fixed seconds per step and training FLOPs per second.
#: CPU: the shipped recipes on the benchmark's 2 CPU cores, whole training loop included
#: (docs/benchmarks.md): hippocampus 57.7 GFLOP per step at 0.34 s (bf16), ISBI 72 GFLOP at
#: 0.56 s, LGG 111 GFLOP at 0.87 s on one core, i.e. 1.3-1.7e11 FLOP/s. CUDA: an H200-class GPU
#: at a conservative 20 TFLOP/s plus 15 ms of launch overhead. Rough by design: ``medseg plan``
#: probes the real device (:func:`probe_step_seconds`).
FALLBACK_RATE = {"cpu": (0.02, 1.5e11), "cuda": (0.015, 2.0e13)}


@dataclass(frozen=True)
class Topology:
    """A ``unet`` layout: the patch, the pooling strides and the channels per level.

    Attributes:
        patch: Patch size in voxels per spatial axis (a multiple of :attr:`divisor`).
        strides: Per pooling step, the stride per axis (1 or 2); ``len(features) - 1`` entries.
        features: Channels per level, top (full resolution) first.
    """

    patch: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    features: tuple[int, ...]

    @property
    def levels(self) -> int:
        return len(self.features)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Product of the strides per axis: the patch must be a multiple of it."""
        return tuple(math.prod(s[a] for s in self.strides) for a in range(len(self.patch)))

    @property
    def pools_per_axis(self) -> tuple[int, ...]:
        return tuple(sum(s[a] == 2 for s in self.strides) for a in range(len(self.patch)))

    def level_shapes(self) -> list[tuple[int, ...]]:
        """Feature-map size per level, top first."""
        shapes, cur = [tuple(self.patch)], list(self.patch)
        for s in self.strides:
            cur = [math.ceil(c / k) for c, k in zip(cur, s)]
            shapes.append(tuple(cur))
        return shapes

    def unet_params(self) -> dict[str, Any]:
        """``model.params`` of ``unet``: features, plus per-axis strides unless all are 2."""
        params: dict[str, Any] = {"features": list(self.features)}
        if any(k != 2 for s in self.strides for k in s):
            params["strides"] = [list(s) for s in self.strides]
        return params


def pooling_strides(patch: Sequence[int], spacing: Sequence[float]) -> list[tuple[int, ...]]:
    """nnU-Net's pooling rule: the stride per axis of each pooling step.

    Args:
        patch: Patch size (voxels) per axis.
        spacing: Target spacing (mm) per axis.

    Returns:
        One tuple of per-axis strides (1 or 2) per pooling step; possibly empty.
    """
    size = [float(p) for p in patch]
    sp = [float(s) for s in spacing]
    steps: list[tuple[int, ...]] = []
    while True:
        valid = [a for a in range(len(size)) if size[a] >= 2 * MIN_FEATURE_MAP]
        if not valid:
            break
        finest = min(sp[a] for a in valid)
        valid = [a for a in valid if sp[a] / finest < SPACING_RATIO]
        if len(valid) == 1 and size[valid[0]] < 3 * MIN_FEATURE_MAP:
            break  # nnU-Net: one axis alone is pooled only with room to spare
        steps.append(tuple(2 if a in valid else 1 for a in range(len(size))))
        for a in valid:
            sp[a] *= 2
            size[a] = math.ceil(size[a] / 2)
    return steps


def level_features(levels: int, base: int, cap: int) -> tuple[int, ...]:
    """Channels per level: ``base`` doubling per level, capped at ``cap`` (nnU-Net: 32 -> 320/512)."""
    return tuple(min(base * 2**i, cap) for i in range(levels))


def make_topology(patch: Sequence[int], spacing: Sequence[float], base: int, cap: int) -> Topology:
    """Pooling for ``patch`` at ``spacing``, then the patch padded up to the pooling divisor.

    At least one pooling step is kept (``unet`` needs two levels): a patch too small for the rule
    pools its largest axis once (the planner warns about such data).
    """
    strides = pooling_strides(patch, spacing)
    if not strides:
        big = max(range(len(patch)), key=lambda a: patch[a])
        strides = [tuple(2 if a == big else 1 for a in range(len(patch)))]
    div = [math.prod(s[a] for s in strides) for a in range(len(patch))]
    padded = tuple(int(math.ceil(p / d) * d) for p, d in zip(patch, div))
    return Topology(padded, tuple(strides), level_features(len(strides) + 1, base, cap))


def initial_patch(median_shape: Sequence[float], spacing: Sequence[float], max_voxels: int) -> list[int]:
    """nnU-Net's starting patch: equal extent in mm per axis, ``max_voxels`` in all, capped by the
    median shape (voxels) per axis."""
    inv = [1.0 / s for s in spacing]
    scale = (max_voxels / math.prod(inv)) ** (1.0 / len(inv))
    return [max(1, min(round(i * scale), round(m))) for i, m in zip(inv, median_shape)]


def param_count(topo: Topology, in_channels: int, n_classes: int, kernel: int = 3) -> int:
    """Weights of the ``unet`` (2 convs per level, transposed-conv upsampling, 1x1 head)."""
    k = kernel ** len(topo.patch)
    f = topo.features
    total, prev = 0, in_channels
    for c in f:  # encoder
        total += k * prev * c + k * c * c
        prev = c
    for i in range(len(f) - 1):  # decoder: up-conv, conv on the concatenation, conv
        total += math.prod(topo.strides[i]) * f[i + 1] * f[i] + k * 2 * f[i] * f[i] + k * f[i] * f[i]
    return total + f[0] * n_classes


def training_memory_bytes(topo: Topology, batch: int, in_channels: int, n_classes: int, amp: bool) -> float:
    """Estimated peak memory of one training step of the ``unet``, bytes.

    ``M = 1.25 * (B * a * sum_l F_l * V_l + B * 4 * V_0 * (C_in + 4 * K)) + 16 * P``, where
    ``F_l``, ``V_l`` are the channels and voxels of level ``l``, ``a`` the saved-activation bytes
    per channel-voxel (:data:`ACTIVATION_BYTES`: 44 float32, 26 under autocast), ``K`` the
    classes (logits, softmax and loss terms in float32), ``P`` the weights (weights, gradients,
    momentum, and a copy under autocast: 16 B each) and 1.25 the headroom of
    :data:`MEMORY_SAFETY`. A CUDA context (about 0.5 GB) is outside it.
    """
    a = ACTIVATION_BYTES["amp" if amp else "fp32"]
    fv = sum(c * math.prod(s) for c, s in zip(topo.features, topo.level_shapes()))
    v0 = math.prod(topo.patch)
    act = batch * a * fv + batch * 4.0 * v0 * (in_channels + 4 * n_classes)
    return MEMORY_SAFETY * act + 16.0 * param_count(topo, in_channels, n_classes)


def train_flops(topo: Topology, in_channels: int, n_classes: int, batch: int, kernel: int = 3) -> float:
    """Multiply-adds x 2 of one training step (forward + backward ~ 3x the forward convolutions)."""
    k = kernel ** len(topo.patch)
    vox = [math.prod(s) for s in topo.level_shapes()]
    f = topo.features
    fwd, prev = 0.0, in_channels
    for c, v in zip(f, vox):
        fwd += 2 * v * k * (prev * c + c * c)
        prev = c
    for i in range(len(f) - 1):
        fwd += 2 * vox[i] * (f[i + 1] * f[i] + k * 3 * f[i] * f[i])
    fwd += 2 * vox[0] * f[0] * n_classes
    return 3.0 * batch * fwd


def fallback_step_seconds(topo: Topology, in_channels: int, n_classes: int, batch: int, device: str) -> float:
    """Rough step time from :func:`train_flops` and :data:`FALLBACK_RATE` (no probe)."""
    fixed, rate = FALLBACK_RATE["cuda" if device.startswith("cuda") else "cpu"]
    return fixed + train_flops(topo, in_channels, n_classes, batch) / rate


def shrink_patch(
    topo: Topology, median_shape: Sequence[float], spacing: Sequence[float], floor: Sequence[int], cap: int
) -> Topology | None:
    """nnU-Net's reduction step: the axis largest relative to the median shape loses one divisor
    (an axis that would go below its ``floor`` voxels is skipped); the topology is recomputed with
    the same base width and ``cap``. None: no axis can shrink."""
    div = topo.divisor
    ratio = [p / max(m, 1.0) for p, m in zip(topo.patch, median_shape)]
    for a in sorted(range(len(ratio)), key=lambda i: -ratio[i]):
        if topo.patch[a] - div[a] >= max(floor[a], 1):
            patch = list(topo.patch)
            patch[a] -= div[a]
            return make_topology(patch, spacing, topo.features[0], cap)
    return None


def shrink_to(
    topo: Topology,
    voxels: float,
    median_shape: Sequence[float],
    spacing: Sequence[float],
    floor: Sequence[int],
    cap: int,
) -> Topology:
    """:func:`shrink_patch` repeated until the patch has at most ``voxels`` voxels (or cannot shrink)."""
    while math.prod(topo.patch) > voxels:
        smaller = shrink_patch(topo, median_shape, spacing, floor, cap)
        if smaller is None:
            break
        topo = smaller
    return topo


@dataclass
class Fit:
    """Result of fitting a topology to the memory limit and the step budget.

    Attributes:
        topo: The fitted topology.
        batch: Patches per step.
        step_seconds: Seconds per training step (probed, or :func:`fallback_step_seconds`).
        steps: Training steps the budget allows at that step time.
        notes: What was shrunk and why, one short clause each (for the plan's comments).
        warnings: Limits that could not be met.
    """

    topo: Topology
    batch: int
    step_seconds: float = 0.0
    steps: float = 0.0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fit_memory(
    fit: Fit,
    limit_bytes: float,
    median_shape: Sequence[float],
    spacing: Sequence[float],
    cap: int,
    in_channels: int,
    n_classes: int,
    amp: bool,
) -> Fit:
    """Shrink the patch (nnU-Net's rule) until :func:`training_memory_bytes` fits ``limit_bytes``."""
    start = fit.topo.patch
    floor = [MIN_FEATURE_MAP] * len(start)
    while training_memory_bytes(fit.topo, fit.batch, in_channels, n_classes, amp) > limit_bytes:
        smaller = shrink_patch(fit.topo, median_shape, spacing, floor, cap)
        if smaller is None:
            need = training_memory_bytes(fit.topo, fit.batch, in_channels, n_classes, amp) / 2**30
            fit.warnings.append(
                f"the memory limit ({limit_bytes / 2**30:.2g} GB) is below the estimate of the smallest "
                f"patch {list(fit.topo.patch)} ({need:.2g} GB): training may run out of memory"
            )
            break
        fit.topo = smaller
    if fit.topo.patch != start:
        fit.notes.append(f"patch {list(start)} -> {list(fit.topo.patch)} to fit {limit_bytes / 2**30:.3g} GB")
    return fit


#: Batches on a CPU: at most this many voxels per step. 2D: the ISBI recipe, 4 x 256^2; 3D: the
#: hippocampus recipe, 2 x 40 x 56 x 40 (in a fixed budget on a CPU, more and smaller steps win:
#: batch 2 beat batch 4 in the lever study, docs/benchmarks.md).
CPU_BATCH_VOXELS = {2: 4 * 256**2, 3: 2 * 40 * 56 * 40}
#: nnU-Net's cap: one batch covers at most this share of the dataset's voxels.
BATCH_DATASET_SHARE = 0.05


def batch_size(
    topo: Topology,
    limit_bytes: float,
    dataset_voxels: float,
    device: str,
    in_channels: int,
    n_classes: int,
    amp: bool,
) -> tuple[int, str]:
    """Batch of a configuration: as many patches as the memory limit holds, capped by nnU-Net's
    5 % of the dataset's voxels, on a CPU by :data:`CPU_BATCH_VOXELS` (so a 3D patch of the
    hippocampus recipe's size keeps its batch of 2 and a small patch gets a larger batch), and at
    64; at least 2.

    Returns:
        The batch and the binding limit, in words.
    """
    px = math.prod(topo.patch)
    b_mem = 1
    while b_mem < 64 and training_memory_bytes(topo, b_mem + 1, in_channels, n_classes, amp) <= limit_bytes:
        b_mem += 1
    limits = {f"memory ({limit_bytes / 2**30:.3g} GB)": b_mem, "64 patches": 64}
    limits["5 % of the dataset's voxels (nnU-Net)"] = int(BATCH_DATASET_SHARE * dataset_voxels // px)
    if not device.startswith("cuda"):
        cap = CPU_BATCH_VOXELS[len(topo.patch)]
        limits[f"{cap} voxels per step on a CPU (the shipped recipes)"] = cap // px
    why, b = min(limits.items(), key=lambda kv: kv[1])
    if b < 2:
        return 2, f"at least 2 (the binding limit, {why}, allows {b})"
    return b, f"limited by {why}"


def _shrink_once(
    fit: Fit,
    start_vox: float,
    spacing: Sequence[float],
    median_shape: Sequence[float],
    floor: Sequence[int],
    cap: int,
    width_floor: int,
) -> bool:
    """One step down the ladder: batch (to 2), patch (to half its voxels), width, patch (to floor)."""
    before = (fit.topo, fit.batch)
    if fit.batch > 2:
        fit.batch -= 1
    elif math.prod(fit.topo.patch) > 0.5 * start_vox:
        fit.topo = shrink_patch(fit.topo, median_shape, spacing, floor, cap) or fit.topo
    if (fit.topo, fit.batch) == before and fit.topo.features[0] > width_floor:
        fit.topo = make_topology(fit.topo.patch, spacing, max(width_floor, fit.topo.features[0] // 2), cap)
    if (fit.topo, fit.batch) == before:
        fit.topo = shrink_patch(fit.topo, median_shape, spacing, floor, cap) or fit.topo
    return (fit.topo, fit.batch) != before


def fit_steps(
    fit: Fit,
    time_of: Callable[[Topology, int], float],
    estimate: Callable[[Topology, int], float],
    usable_s: float,
    min_steps: int,
    median_shape: Sequence[float],
    spacing: Sequence[float],
    cap: int,
    width_floor: int,
    max_probes: int = 3,
) -> Fit:
    """Shrink batch, patch and width until ``usable_s`` allows ``min_steps`` steps.

    Order: the batch down to 2; the patch down to half its voxels (nnU-Net's axis rule); the
    width halved down to ``width_floor``; the patch down to 16 voxels per axis. ``time_of`` (a
    probe on the device) is called at most ``max_probes`` times: each probe calibrates the
    analytic ``estimate`` (``scale = probed / estimated``), which ranks the candidates in between,
    so a noisy probe cannot send the search far astray and planning stays fast.
    """
    start_vox = math.prod(fit.topo.patch)
    floor = [min(16, p) for p in fit.topo.patch]
    start = (fit.topo.patch, fit.topo.features[0], fit.batch)
    for _ in range(max_probes):
        fit.step_seconds = float(time_of(fit.topo, fit.batch))
        fit.steps = usable_s / max(fit.step_seconds, 1e-9)
        if fit.steps >= min_steps:
            break
        scale = fit.step_seconds / max(estimate(fit.topo, fit.batch), 1e-12)
        while usable_s / (scale * estimate(fit.topo, fit.batch)) < min_steps:
            if not _shrink_once(fit, start_vox, spacing, median_shape, floor, cap, width_floor):
                break
        if (fit.topo.patch, fit.topo.features[0], fit.batch) == start:
            break  # nothing left to shrink
        start = (fit.topo.patch, fit.topo.features[0], fit.batch)
        fit.notes.append(
            f"shrunk to batch {fit.batch}, patch {list(fit.topo.patch)}, width {fit.topo.features[0]}"
            f" ({usable_s / max(fit.step_seconds, 1e-9):.0f} steps before)"
        )
    else:
        fit.step_seconds = float(time_of(fit.topo, fit.batch))
        fit.steps = usable_s / max(fit.step_seconds, 1e-9)
    if fit.steps < min_steps:
        fit.warnings.append(
            f"the budget allows only about {fit.steps:.0f} training steps ({fit.step_seconds:.3g} s each) "
            f"even with the smallest network tried ({min_steps} planned): give a larger --budget"
        )
    return fit


def probe_step_seconds(
    config: dict[str, Any], device: str, steps: int = 3, max_seconds: float = 30.0
) -> float:
    """Time of one training step of ``config`` on ``device``, seconds (median of ``steps``).

    Builds the model with :func:`medseg.models.build_model`, then times forward + loss + backward
    + SGD (nesterov momentum, as the trainer) on random input ``[B, C, *patch]`` at the planned
    batch and patch, under the autocast the trainer would use (bf16 on CUDA or on CPUs with native
    bf16 when ``training.cpu_bf16``). Two untimed warm-up steps first; when the first alone took
    over ``max_seconds / steps``, its time is returned (an over-estimate: the safe side).

    Raises:
        ConfigError: the config's model cannot be built.
    """
    import torch

    from medseg.losses import build_loss
    from medseg.models import build_model

    m, t = config["model"], config["training"]
    n_classes = max(int(k) for k in config["labels"]) + 1
    in_ch = len(config["data"].get("channels") or [None])
    dev = torch.device(device)
    net = build_model(m["name"], m["spatial_dims"], in_ch, n_classes, **m.get("params", {})).to(dev).train()
    loss_fn = build_loss(config["loss"]["name"], n_classes)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.99, nesterov=True)
    amp = _autocast_dtype(torch, dev, t.get("cpu_bf16", False))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(t["batch_size"], in_ch, *t["patch_size"], generator=gen).to(dev)
    y = torch.randint(0, n_classes, (t["batch_size"], *t["patch_size"]), generator=gen).to(dev)

    def one() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = net(x)
            loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    warm = one()  # two untimed steps: the first of a process also pays one-off kernel set-up
    if warm > max_seconds / max(steps, 1):
        return warm
    one()
    times = sorted(one() for _ in range(max(steps, 1)))
    return times[len(times) // 2]


def _autocast_dtype(torch: Any, dev: Any, cpu_bf16: bool) -> Any:
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None
