"""Fully connected (dense) CRF post-processing of class probabilities, in 2D and 3D, in mm.

Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge
Potentials", NIPS 2011, as DeepLab v1/v2 use it (Chen et al., ICLR 2015; TPAMI 2018). The energy
of a labelling ``x`` is

    E(x) = sum_i -log P_i(x_i) + sum_{i<j} [x_i != x_j] (w1 k1(i, j) + w2 k2(i, j))

with the network's softmax ``P`` (clipped at :data:`PROBABILITY_FLOOR`), a Potts compatibility
and two Gaussian kernels over voxel centres ``p`` in mm and intensities ``I``:

* appearance: ``k1 = exp(-|p_i - p_j|^2 / (2 theta_alpha^2) - |I_i - I_j|^2 / (2 theta_beta^2))``;
* smoothness: ``k2 = exp(-|p_i - p_j|^2 / (2 theta_gamma^2))``.

``I`` is the image after a z-score of each channel over the whole image (so ``theta_beta`` is in
standard deviations of the image; a constant channel is all zeros). With ``normalization=
"symmetric"`` (the default) each kernel is divided by ``sqrt(n_i n_j)``, ``n_i = sum_{j != i}
k(i, j)``, as the authors' released code does (densecrf 2.x's ``NORMALIZE_SYMMETRIC``; DeepLab's
weights assume a normalised kernel); ``"none"`` is the plain kernel of the paper's equations.

Mean-field inference (the paper's Algorithm 1): ``Q = P``, then per iteration the message
``sum_{j != i} k(i, j) Q_j`` of each kernel (Gaussian filtering, the point itself excluded), the
Potts compatibility transform, adding the unary and a softmax. The smoothness kernel is an exact
separable Gaussian on the voxel grid (truncated at 4 sigma); the appearance kernel is filtered
with the permutohedral lattice (:mod:`medseg.inference._permutohedral`, Adams et al. 2010), an
approximation: each voxel's message is within about 10-20 % of the exact sum, and the refined
probabilities within a few hundredths of the exact mean field (``tests/inference/test_crf.py``).

Cost: the lattice holds ``N (d + 1)`` point-vertex pairs (``d = spatial dims + channels``); at
its peak about 1 kB of memory per voxel and image channel (about 3.9 kB with 4 channels), and 5
iterations with 2 classes and one channel take about 7 s per million voxels on one CPU core (a
512 x 512 slice ~1 s, a 48 x 64 x 48 volume ~0.7 s; 4 channels: about 4 times longer).
:func:`dense_crf` refuses (one line) a volume whose estimated peak exceeds the memory available.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.errors import ConfigError, GeometryMismatchError, MedsegError

log = logging.getLogger(__name__)

#: Probabilities are clipped to at least this before ``-log`` (as pydensecrf's ``unary_from_softmax``).
PROBABILITY_FLOOR = 1e-5


@dataclass(frozen=True)
class CRFOptions:
    """Parameters of :func:`dense_crf` (mean-field iterations and the two Potts kernels).

    The defaults are DeepLab's PASCAL VOC settings (``run_densecrf.sh`` of DeepLab-LargeFOV and
    v2: ``bi_w=4, bi_xy_std=121, bi_rgb_std=5, pos_w=3, pos_xy_std=3``) with one pixel read as one
    millimetre (in-plane CT/MR spacing is 0.6-1 mm) and 5 levels of 8-bit colour (channel standard
    deviation ~50) read as 0.1 standard deviation of the z-scored image.

    Attributes:
        iterations: Mean-field iterations (>= 1; the paper: 5 to 10 converge).
        appearance_weight: ``w1`` of the appearance (bilateral) kernel (>= 0; 0 = off).
        theta_alpha_mm: Its spatial width ``theta_alpha`` in mm (> 0).
        theta_beta: Its intensity width in standard deviations of each z-scored channel (> 0).
        smoothness_weight: ``w2`` of the smoothness kernel (>= 0; 0 = off).
        theta_gamma_mm: Its spatial width ``theta_gamma`` in mm (> 0).
        normalization: ``symmetric`` (kernels divided by ``sqrt(n_i n_j)``, as the authors'
            code and DeepLab) or ``none`` (the plain kernels of the paper's equations).

    Raises:
        ConfigError: a value out of range.
    """

    iterations: int = 5
    appearance_weight: float = 4.0
    theta_alpha_mm: float = 121.0
    theta_beta: float = 0.1
    smoothness_weight: float = 3.0
    theta_gamma_mm: float = 3.0
    normalization: Literal["symmetric", "none"] = "symmetric"

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"CRF iterations must be an integer >= 1, got {self.iterations}")
        for name in ("appearance_weight", "smoothness_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"CRF {name} must be a finite number >= 0, got {value}")
        for name in ("theta_alpha_mm", "theta_beta", "theta_gamma_mm"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"CRF {name} must be a finite number > 0, got {value}")
        if self.normalization not in ("symmetric", "none"):
            raise ConfigError(f"CRF normalization must be 'symmetric' or 'none', got {self.normalization!r}")

    @classmethod
    def from_config(cls, config: Any) -> CRFOptions:
        """From a :class:`~medseg.config.schema.CRFConfig` (or its dict); ``enabled`` is ignored."""
        values = dict(config if isinstance(config, dict) else config.model_dump())
        values.pop("enabled", None)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_crf_options(config: dict[str, Any], enabled: bool | None) -> CRFOptions | None:
    """A run's dense CRF settings (``postprocessing.crf`` of its recorded pipeline config),
    switched on or off by ``enabled`` (``medseg predict --crf / --no-crf``; ``None``: as the
    pipeline says, off for runs from before the setting); ``None`` when off."""
    from medseg.config.schema import CRFConfig

    section = CRFConfig.model_validate((config.get("postprocessing") or {}).get("crf") or {})
    on = section.enabled if enabled is None else enabled
    return CRFOptions.from_config(section) if on else None


def _zscore(image: np.ndarray) -> np.ndarray:
    """``[K, N]`` -> each channel minus its mean over its standard deviation (0 if constant)."""
    mean = image.mean(axis=1, keepdims=True)
    std = image.std(axis=1, keepdims=True)
    return np.where(std > 0, (image - mean) / np.where(std > 0, std, 1.0), 0.0)


#: measured peak bytes per voxel: a base and one share per image channel (tracemalloc, 2 classes)
BYTES_PER_VOXEL = (100.0, 950.0)


def _available_bytes() -> float | None:
    """MemAvailable of /proc/meminfo (Linux), else None (no check)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024.0
    except OSError:
        return None
    return None


def check_memory(voxels: int, channels: int, classes: int) -> None:
    """Refuse a CRF whose estimated peak memory exceeds the memory available now.

    Raises:
        MedsegError: the estimate (``voxels * (100 + 950 * channels)`` bytes, plus the class maps)
            is above 80 % of MemAvailable.
    """
    need = voxels * (BYTES_PER_VOXEL[0] + BYTES_PER_VOXEL[1] * channels + 24.0 * classes)
    free = _available_bytes()
    if free is not None and need > 0.8 * free:
        raise MedsegError(
            f"the dense CRF needs about {need / 2**30:.1f} GiB for {voxels:,} voxels with {channels} "
            f"image channel(s), but only {free / 2**30:.1f} GiB are free",
            hint="predict without --crf, or crop the scan to the region of interest first",
        )


def _check(
    probabilities: np.ndarray, image: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 copies: probabilities ``[C, *S]``, image ``[K, *S]``, spacing ``[n]``."""
    probs = np.asarray(probabilities, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    if probs.ndim not in (3, 4) or probs.shape[0] < 2:
        raise MedsegError(
            f"dense CRF needs probabilities [C, *spatial] with C >= 2 classes and 2 or 3 spatial axes, "
            f"got shape {probs.shape}",
            hint="give the softmax of a model with a background and at least one class",
        )
    if img.ndim == probs.ndim - 1:
        img = img[None]
    if img.shape[1:] != probs.shape[1:]:
        raise GeometryMismatchError(
            f"the CRF image {img.shape[1:]} and the probabilities {probs.shape[1:]} lie on different grids",
            hint="give the image [K, *spatial] on the grid of the probabilities",
        )
    spacing = np.asarray(spacing_mm, dtype=np.float64).ravel()
    if spacing.size != probs.ndim - 1 or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ConfigError(
            f"the CRF spacing must be {probs.ndim - 1} positive mm values, got {list(spacing_mm)}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or not np.all(np.isfinite(img)):
        raise MedsegError(
            "dense CRF needs finite probabilities >= 0 and a finite image",
            hint="pass the softmax of the network's logits",
        )
    return probs, img, spacing


def _smoothness_filter(shape: tuple[int, ...], sigma_vox: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``[N, V] -> [N, V]``: the exact Gaussian ``exp(-|p_i - p_j|^2 / 2 theta^2)`` on the grid,
    the voxel itself excluded (separable, truncated at 4 sigma, nothing beyond the edges)."""
    from scipy.ndimage import correlate1d

    taps = []
    for s in sigma_vox:
        radius = int(math.ceil(4.0 * s))
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        taps.append(np.exp(-0.5 * (x / s) ** 2))

    def apply(values: np.ndarray) -> np.ndarray:
        out = values.reshape(*shape, values.shape[1])
        for axis, w in enumerate(taps):
            if w.size > 1:
                out = correlate1d(out, w, axis=axis, mode="constant", cval=0.0)
        return out.reshape(values.shape) - values

    return apply


def _appearance_filter(features: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``[N, V] -> [N, V]``: the permutohedral approximation of ``exp(-|f_i - f_j|^2 / 2)``,
    the point's own weight in the approximation subtracted."""
    from medseg.inference._permutohedral import PermutohedralLattice

    lattice = PermutohedralLattice(features)
    own = lattice.self_weight()[:, None]
    return lambda values: lattice.filter(values) - own * values


def _normalised(
    message: Callable[[np.ndarray], np.ndarray], n_points: int, mode: str
) -> Callable[[np.ndarray], np.ndarray]:
    """``message`` with its kernel divided by ``sqrt(n_i n_j)`` (``mode="symmetric"``)."""
    if mode == "none":
        return message
    totals = message(np.ones((n_points, 1)))[:, 0]
    scale = np.where(totals > 1e-12, 1.0 / np.sqrt(np.maximum(totals, 1e-12)), 0.0)[:, None]
    return lambda values: scale * message(scale * values)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def dense_crf(
    probabilities: np.ndarray,
    image: np.ndarray,
    spacing_mm: Sequence[float],
    options: CRFOptions | None = None,
) -> np.ndarray:
    """Refine class probabilities with a fully connected CRF (Krähenbühl & Koltun, NIPS 2011).

    Args:
        probabilities: Softmax ``[C, *spatial]`` (2 or 3 spatial axes, ``C >= 2``); each voxel
            is renormalised to sum 1 after clipping at :data:`PROBABILITY_FLOOR`.
        image: ``[K, *spatial]`` (or ``[*spatial]`` for one channel) on the same grid, any
            units: each channel is z-scored over the image first (``theta_beta`` is in its
            standard deviations).
        spacing_mm: Voxel size per spatial axis (mm); anisotropic spacing is honoured.
        options: Kernel weights and widths, iterations (default :class:`CRFOptions`).

    Returns:
        The mean-field marginals ``[C, *spatial]`` float32 (each voxel sums to 1); their
        arg-max is the refined labelling. Axes of size 1 are ignored (a 2D slice in a 3D array).

    Raises:
        MedsegError: fewer than 2 classes, not 2 or 3 spatial axes, negative or non-finite values.
        GeometryMismatchError: the image and the probabilities have different spatial shapes.
        ConfigError: a spacing that is not positive, one value per spatial axis.
    """
    opts = options or CRFOptions()
    probs, img, spacing = _check(probabilities, image, spacing_mm)
    check_memory(int(np.prod(probs.shape[1:])), img.shape[0], probs.shape[0])
    t0 = time.monotonic()
    shape_in = probs.shape[1:]
    keep = [a for a, s in enumerate(shape_in) if s > 1]
    shape = tuple(shape_in[a] for a in keep)
    n, c = int(np.prod(shape_in)), probs.shape[0]
    p = probs.reshape(c, n).T
    p = np.clip(p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12), PROBABILITY_FLOOR, 1.0)
    unary = np.log(p / p.sum(axis=1, keepdims=True))  # -U
    if n < 2 or not keep:
        return np.exp(unary).T.reshape(probs.shape).astype(np.float32)
    kernels: list[tuple[float, Callable[[np.ndarray], np.ndarray]]] = []
    if opts.appearance_weight > 0:
        grid = np.indices(shape, dtype=np.float64).reshape(len(keep), n).T * spacing[keep]
        intensity = _zscore(img.reshape(img.shape[0], n)).T
        features = np.concatenate([grid / opts.theta_alpha_mm, intensity / opts.theta_beta], axis=1)
        message = _normalised(_appearance_filter(features), n, opts.normalization)
        kernels.append((opts.appearance_weight, message))
    if opts.smoothness_weight > 0:
        smooth = _smoothness_filter(shape, opts.theta_gamma_mm / spacing[keep])
        kernels.append((opts.smoothness_weight, _normalised(smooth, n, opts.normalization)))
    q = np.exp(unary)
    for _ in range(opts.iterations):
        pairwise = sum(w * k(q) for w, k in kernels)
        # Potts: label l pays the messages of every other label, sum(m) - m_l; the sum cancels
        q = _softmax(unary + pairwise) if kernels else q
    log.debug("dense CRF: %d voxels, %d classes in %.2f s", n, c, time.monotonic() - t0)
    return q.T.reshape(probs.shape).astype(np.float32)
