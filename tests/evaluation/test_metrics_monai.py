"""medseg's metrics against MONAI's implementations on random shapes with anisotropic spacing.

MONAI returns float32 (its surface distances are cast to float32 and its percentile is
``torch.quantile`` in float32), medseg computes in float64. So the comparison is made at
two levels: the surface-voxel sets and every directed distance must agree (edges exactly,
distances within 1e-6 mm), and the final metrics within 1e-6 relative to their value
(the float32 resolution of MONAI's result; absolute differences stay below 1e-5 mm).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.metrics import (
    DiceMetric,
    MeanIoU,
    compute_average_surface_distance,
    compute_hausdorff_distance,
    compute_surface_dice,
)
from monai.metrics.utils import get_edge_surface_distance, get_mask_edges
from scipy import ndimage

from medseg.evaluation import metrics as em

TOL = 1e-6


def _blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random smooth shape with a few lobes (thresholded smoothed noise)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    return field > 0.1


def _pair(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A random reference and a prediction that overlaps it imperfectly (a perturbed copy)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.5)
    return field + 0.8 * noise > 0.1, field > 0.1


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.cat([1.0 - t, t], dim=1)


CASES = [
    (seed, shape, spacing)
    for seed in range(4)
    for shape, spacing in (((26, 22, 17), (0.7, 1.3, 2.1)), ((48, 41), (0.45, 1.6)))
]


@pytest.fixture(autouse=True)
def _quiet_monai():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.set_num_threads(1)
        yield


@pytest.mark.parametrize(("seed", "shape", "spacing"), CASES)
def test_surfaces_and_distances_match_monai(seed, shape, spacing):
    rng = np.random.default_rng(seed)
    pred, ref = _pair(rng, shape)
    # the surface definition: MONAI crops to the union's bounding box (with a margin of 1)
    monai_pred_edges, monai_ref_edges = get_mask_edges(pred, ref, crop=False, always_return_as_numpy=True)
    assert np.array_equal(em.surface_voxels(pred), monai_pred_edges)
    assert np.array_equal(em.surface_voxels(ref), monai_ref_edges)
    _, (d_pred, d_ref), _ = get_edge_surface_distance(
        torch.from_numpy(pred), torch.from_numpy(ref), spacing=spacing, symmetric=True
    )
    ours = em.SurfaceDistances.compute(pred, ref, spacing)
    assert ours.pred_to_ref.size == d_pred.numel() and ours.ref_to_pred.size == d_ref.numel()
    # same voxel order (argwhere, C order), so the arrays compare element by element
    np.testing.assert_allclose(ours.pred_to_ref, d_pred.double().numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.ref_to_pred, d_ref.double().numpy(), rtol=0, atol=TOL)
    # MONAI's percentile convention applied to MONAI's distances, in float64
    monai_hd95_f64 = max(
        torch.quantile(d_pred.double(), 0.95).item(), torch.quantile(d_ref.double(), 0.95).item()
    )
    assert ours.hausdorff(95.0) == pytest.approx(monai_hd95_f64, abs=TOL)


@pytest.mark.parametrize(("seed", "shape", "spacing"), CASES)
def test_metrics_match_monai(seed, shape, spacing):
    rng = np.random.default_rng(seed)
    pred, ref = _pair(rng, shape)
    assert 0.05 < em.dice(pred, ref) < 0.95  # a real partial overlap, not a trivial case
    P, R = _one_hot(pred), _one_hot(ref)
    tol_mm = 1.5  # no lattice distance of these spacings lies within 1e-4 mm of 1.5
    monai = {
        "dice": DiceMetric(include_background=False, ignore_empty=False)(P, R).item(),
        "iou": MeanIoU(include_background=False, ignore_empty=False)(P, R).item(),
        "hd95": compute_hausdorff_distance(P, R, percentile=95, spacing=spacing).item(),
        "hd": compute_hausdorff_distance(P, R, spacing=spacing).item(),
        "assd": compute_average_surface_distance(P, R, symmetric=True, spacing=spacing).item(),
        "nsd": compute_surface_dice(P, R, [tol_mm], spacing=spacing).item(),
    }
    ours = {
        "dice": em.dice(pred, ref),
        "iou": em.iou(pred, ref),
        "hd95": em.hausdorff95(pred, ref, spacing),
        "hd": em.hausdorff_distance(pred, ref, spacing, percentile=None),
        "assd": em.assd(pred, ref, spacing),
        "nsd": em.normalized_surface_dice(pred, ref, spacing, tolerance_mm=tol_mm),
    }
    for name, value in monai.items():
        assert ours[name] == pytest.approx(value, rel=TOL, abs=TOL), name
    # the all-in-one form gives the same numbers
    combined = em.compute_metrics(pred, ref, spacing, nsd_tolerance=tol_mm)
    assert (combined.dice, combined.hd95, combined.assd, combined.nsd) == (
        ours["dice"],
        ours["hd95"],
        ours["assd"],
        ours["nsd"],
    )


def test_spacing_matters_and_is_per_axis():
    """Swapping the spacing of two axes changes the distances (anisotropy is respected)."""
    rng = np.random.default_rng(7)
    pred, ref = _blob(rng, (26, 22, 17)), _blob(rng, (26, 22, 17))
    a = em.hausdorff95(pred, ref, (0.5, 0.5, 3.0))
    b = em.hausdorff95(pred, ref, (3.0, 0.5, 0.5))
    assert a != pytest.approx(b, rel=1e-3)
    P, R = _one_hot(pred), _one_hot(ref)
    assert b == pytest.approx(
        compute_hausdorff_distance(P, R, percentile=95, spacing=(3.0, 0.5, 0.5)).item(), rel=TOL
    )


@pytest.mark.parametrize("empty", ["pred", "ref"])
def test_one_empty_matches_monai_infinity_and_zero_nsd(empty):
    full = np.zeros((12, 12, 12), bool)
    full[3:8, 3:8, 3:8] = True
    pred, ref = (np.zeros_like(full), full) if empty == "pred" else (full, np.zeros_like(full))
    P, R = _one_hot(pred), _one_hot(ref)
    assert compute_hausdorff_distance(P, R).item() == np.inf == em.hausdorff_distance(pred, ref)
    # MONAI's HD95 is NaN here (torch.quantile interpolates inf - inf); medseg reports inf
    assert em.hausdorff95(pred, ref) == np.inf
    assert compute_surface_dice(P, R, [1.0]).item() == 0.0 == em.normalized_surface_dice(pred, ref)
    assert DiceMetric(include_background=False, ignore_empty=False)(P, R).item() == 0.0 == em.dice(pred, ref)
