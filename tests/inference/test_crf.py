"""Dense CRF (Krähenbühl & Koltun, NIPS 2011): the fast filters against a brute-force N x N
reference, the analytic edge-snapping case, energy, validation and the predictor/CLI wiring.

Tolerances: the smoothness kernel is an exact separable Gaussian (truncated at 4 sigma), so it
matches the reference to 1e-3; the appearance kernel goes through the permutohedral lattice, an
approximation, so 5 mean-field iterations match to a mean |dQ| < 2e-3 (2D, one channel) to
0.025 (3D, two channels), a largest |dQ| < 0.08 to 0.15 and 99 % to 97.5 % of the labels.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from medseg.config.schema import CRFConfig, PipelineConfig
from medseg.errors import ConfigError, GeometryMismatchError, MedsegError
from medseg.inference import Predictor, _permutohedral
from medseg.inference import crf as crf_module
from medseg.inference._permutohedral import PermutohedralLattice
from medseg.inference.crf import PROBABILITY_FLOOR, CRFOptions, dense_crf, run_crf_options
from medseg.training.checkpoint import load_checkpoint, save_checkpoint
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume
from tests.fixtures.models import Threshold, make_run


def _kernels(shape, spacing, image, o: CRFOptions) -> np.ndarray:
    """w1 k1 + w2 k2 as a dense [N, N] matrix, zero diagonal, normalised as ``o`` says."""
    n = int(np.prod(shape))
    img = np.asarray(image, dtype=np.float64).reshape(-1, n)
    std = img.std(axis=1, keepdims=True)
    z = np.where(std > 0, (img - img.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1), 0).T
    pos = np.indices(shape).reshape(len(shape), n).T * np.asarray(spacing, dtype=np.float64)
    d2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    i2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    total = np.zeros((n, n))
    for w, k in (
        (o.appearance_weight, np.exp(-d2 / (2 * o.theta_alpha_mm**2) - i2 / (2 * o.theta_beta**2))),
        (o.smoothness_weight, np.exp(-d2 / (2 * o.theta_gamma_mm**2))),
    ):
        np.fill_diagonal(k, 0.0)
        if o.normalization == "symmetric":
            s = 1 / np.sqrt(k.sum(axis=1))
            k = k * s[:, None] * s[None, :]
        total += w * k
    return total


def dense_crf_reference(probabilities, image, spacing, o: CRFOptions) -> np.ndarray:
    """Mean field with the exact dense kernel matrix (the paper's Algorithm 1, naive)."""
    c, shape = probabilities.shape[0], probabilities.shape[1:]
    kernel = _kernels(shape, spacing, image, o)
    p = np.clip(probabilities.reshape(c, -1).T, PROBABILITY_FLOOR, 1.0)
    log_p = np.log(p / p.sum(axis=1, keepdims=True))
    q = np.exp(log_p)
    for _ in range(o.iterations):
        logits = log_p + kernel @ q  # Potts: -(sum_l' m_l' - m_l), the sum cancels in the softmax
        q = np.exp(logits - logits.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
    return q.T.reshape(probabilities.shape)


def _energy(labels, probabilities, image, spacing, o: CRFOptions) -> float:
    """E(x) = sum_i -log P_i(x_i) + sum_{i<j} [x_i != x_j] k(i, j), with the exact kernels."""
    c = probabilities.shape[0]
    x = labels.ravel()
    p = np.clip(probabilities.reshape(c, -1), PROBABILITY_FLOOR, 1.0)
    unary = -np.log(p[x, np.arange(x.size)]).sum()
    kernel = _kernels(labels.shape, spacing, image, o)
    return float(unary + 0.5 * (kernel * (x[:, None] != x[None, :])).sum())


def _noisy_case(rng, shape, spacing, channels=1):
    """A step in intensity half-way along axis 0, and a noisy softmax whose boundary is off by 2 voxels."""
    g = np.indices(shape)
    image = (g[0] >= shape[0] // 2) + rng.normal(0, 0.3, (channels, *shape))
    logit = 12 * (g[0] - shape[0] / 2 - 2) / shape[0] + rng.normal(0, 1.0, shape)
    fg = 1 / (1 + np.exp(-logit))
    return np.stack([1 - fg, fg]), image


CASES = {
    "2d": ((30, 26), (0.8, 1.4), 1),
    "3d": ((14, 12, 10), (1.0, 1.5, 2.5), 1),
    "3d-two-channels": ((12, 10, 8), (0.7, 1.2, 3.0), 2),
}
#: mean |dQ|, largest |dQ|, share of equal labels: the lattice's error grows with its dimension
#: d = spatial axes + channels (3, 4, 5 here; seeds 1234-1237 stay within these)
TOLERANCE = {"2d": (2e-3, 0.08, 0.99), "3d": (6e-3, 0.12, 0.99), "3d-two-channels": (0.025, 0.15, 0.975)}


@pytest.mark.parametrize("normalization", ["symmetric", "none"])
@pytest.mark.parametrize("case", list(CASES))
def test_smoothness_kernel_is_exact(case, normalization, rng):
    shape, spacing, k = CASES[case]
    probs, image = _noisy_case(rng, shape, spacing, k)
    o = CRFOptions(
        appearance_weight=0, smoothness_weight=1.0, theta_gamma_mm=2.5, normalization=normalization
    )
    fast, ref = dense_crf(probs, image, spacing, o), dense_crf_reference(probs, image, spacing, o)
    assert np.abs(fast - ref).max() < 1e-3  # the 4-sigma truncation
    assert (ref.argmax(0) != probs.argmax(0)).any()  # the kernel did something


@pytest.mark.parametrize("case", list(CASES))
def test_fast_crf_matches_the_dense_reference(case, rng):
    shape, spacing, k = CASES[case]
    probs, image = _noisy_case(rng, shape, spacing, k)
    o = CRFOptions(theta_alpha_mm=6.0, theta_beta=0.5)
    fast, ref = dense_crf(probs, image, spacing, o), dense_crf_reference(probs, image, spacing, o)
    assert fast.dtype == np.float32 and fast.shape == probs.shape
    np.testing.assert_allclose(fast.sum(0), 1.0, atol=1e-5)
    diff = np.abs(fast - ref)
    mean, largest, agree = TOLERANCE[case]
    assert diff.mean() < mean and diff.max() < largest
    assert (fast.argmax(0) == ref.argmax(0)).mean() >= agree
    assert (ref.argmax(0) != probs.argmax(0)).mean() > 0.05  # a real change to match


def test_unnormalised_kernels_of_the_paper_match_the_reference(rng):
    shape, spacing, _ = CASES["3d"]
    probs, image = _noisy_case(rng, shape, spacing)
    o = CRFOptions(
        theta_alpha_mm=6.0, theta_beta=0.5, appearance_weight=0.5, smoothness_weight=0.3, normalization="none"
    )
    fast, ref = dense_crf(probs, image, spacing, o), dense_crf_reference(probs, image, spacing, o)
    assert np.abs(fast - ref).mean() < 0.01
    assert (fast.argmax(0) == ref.argmax(0)).mean() >= 0.99


def test_lattice_self_weight_is_the_filter_diagonal(rng):
    features = rng.normal(size=(300, 3)) * 1.5
    lattice = PermutohedralLattice(features)
    matrix = lattice.filter(np.eye(300))  # column j: the filter of a unit impulse at j
    np.testing.assert_allclose(lattice.self_weight(), np.diag(matrix), atol=1e-12)
    exact = np.exp(-((features[:, None] - features[None]) ** 2).sum(-1) / 2)
    near = exact > 0.3  # the approximation's weights follow the Gaussian where it matters
    assert np.median(np.abs(matrix[near] / exact[near] - 1)) < 0.3


def test_lattice_matches_itself_when_keys_outgrow_the_mixed_radix(rng, monkeypatch):
    """Row matching (wide feature ranges) gives the same lattice as the mixed-radix codes."""
    features = rng.normal(size=(400, 5)) * 2.0
    expected = PermutohedralLattice(features)
    monkeypatch.setattr(_permutohedral._Codes, "LIMIT", 1.0)  # force the exact row-matching path
    fallback = PermutohedralLattice(features)
    assert fallback._codes.table is not None and expected._codes.table is None
    values = rng.normal(size=(400, 2))
    np.testing.assert_allclose(fallback.filter(values), expected.filter(values), atol=1e-12)
    np.testing.assert_allclose(fallback.self_weight(), expected.self_weight(), atol=1e-12)


def test_four_channel_volume_with_outliers_runs(rng):
    """Four z-scored channels with a few extreme voxels: the lattice outgrows 62-bit codes."""
    image = np.zeros((4, 24, 24, 24))
    image[:, 4:20, 4:20, 4:20] = 1.0
    image[:, 10, 10, 10:13] = [[6.0], [10.0], [20.0], [15.0]]
    probs = np.stack([1 - image[0].clip(0, 1) * 0.7, image[0].clip(0, 1) * 0.7 + 0.0])
    probs = probs / probs.sum(axis=0)
    refined = dense_crf(probs, image, (1.0, 1.0, 1.0))
    assert np.isfinite(refined).all() and np.allclose(refined.sum(axis=0), 1.0, atol=1e-5)
    assert (refined.argmax(axis=0)[6:18, 6:18, 6:18] == 1).mean() > 0.95


def test_crf_refuses_a_volume_larger_than_the_free_memory(rng, monkeypatch):
    monkeypatch.setattr(crf_module, "_available_bytes", lambda: 1e6)  # 1 MB free
    probs = np.full((2, 64, 64, 16), 0.5)
    with pytest.raises(MedsegError, match=r"needs about .* GiB .* 1 image channel"):
        dense_crf(probs, np.zeros((64, 64, 16)), (1.0, 1.0, 1.0))


@pytest.mark.parametrize(("shape", "spacing"), [((48, 40), (0.8, 1.6)), ((24, 16, 12), (1.0, 1.5, 2.5))])
def test_crf_snaps_a_blurred_boundary_to_the_intensity_edge(shape, spacing, rng):
    """Analytic case: the intensity steps at x0, the softmax's blurred boundary lies 4 voxels
    beyond it; the appearance kernel moves the boundary onto the edge, smoothness alone cannot."""
    x = np.indices(shape)[0] * spacing[0]
    edge = shape[0] // 2 * spacing[0]
    truth = x >= edge
    image = truth + rng.normal(0, 0.15, shape)
    fg = 1 / (1 + np.exp(-(x - edge - 4 * spacing[0]) / (3 * spacing[0])))
    probs = np.stack([1 - fg, fg])
    assert (probs.argmax(0) != truth).mean() > 0.08
    refined = dense_crf(probs, image, spacing, CRFOptions(theta_alpha_mm=20.0, theta_beta=0.5))
    assert (refined.argmax(0) != truth).mean() < 0.002
    smooth_only = dense_crf(probs, image, spacing, CRFOptions(appearance_weight=0))
    assert (smooth_only.argmax(0) != truth).mean() > 0.08


def test_crf_lowers_the_energy_and_smooths_noisy_labels(rng):
    shape, spacing = (24, 20), (1.0, 1.0)
    truth = np.indices(shape)[0] >= 12
    image = truth + rng.normal(0, 0.2, shape)
    fg = np.clip(np.where(truth, 0.7, 0.3) + rng.normal(0, 0.25, shape), 0.02, 0.98)
    probs = np.stack([1 - fg, fg])
    o = CRFOptions(theta_alpha_mm=8.0, theta_beta=0.5)
    before, after = probs.argmax(0), dense_crf(probs, image, spacing, o).argmax(0)
    assert _energy(after, probs, image, spacing, o) < 0.8 * _energy(before, probs, image, spacing, o)

    def boundary(labels):
        return sum(np.count_nonzero(np.diff(labels.astype(int), axis=a)) for a in range(labels.ndim))

    assert boundary(after) < boundary(before) / 3
    assert (after != truth).mean() < (before != truth).mean() / 3


def test_singleton_axes_are_ignored(rng):
    probs, image = _noisy_case(rng, (30, 26), (0.8, 1.4))
    o = CRFOptions(theta_alpha_mm=6.0, theta_beta=0.5)
    flat = dense_crf(probs, image, (0.8, 1.4), o)
    as_3d = dense_crf(probs[..., None], image[..., None], (0.8, 1.4, 5.0), o)
    np.testing.assert_allclose(as_3d[..., 0], flat, atol=1e-6)


@pytest.mark.parametrize(
    "values",
    [
        {"iterations": 0},
        {"iterations": 2.5},
        {"appearance_weight": -1.0},
        {"smoothness_weight": float("nan")},
        {"theta_alpha_mm": 0.0},
        {"theta_beta": -0.1},
        {"theta_gamma_mm": float("inf")},
        {"normalization": "row"},
    ],
)
def test_options_are_validated(values):
    with pytest.raises(ConfigError):
        CRFOptions(**values)


def test_inputs_are_validated(rng):
    probs, image = _noisy_case(rng, (10, 8), (1.0, 1.0))
    with pytest.raises(GeometryMismatchError, match="different grids"):
        dense_crf(probs, image[:, :9], (1.0, 1.0))
    with pytest.raises(ConfigError, match="spacing"):
        dense_crf(probs, image, (1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="spacing"):
        dense_crf(probs, image, (1.0, 0.0))
    with pytest.raises(MedsegError, match="C >= 2"):
        dense_crf(probs[:1], image, (1.0, 1.0))
    with pytest.raises(MedsegError, match="finite"):
        dense_crf(np.where(probs > 0.9, np.nan, probs), image, (1.0, 1.0))


def test_config_section_matches_the_options():
    section = CRFConfig()
    assert not section.enabled
    assert CRFOptions.from_config(section) == CRFOptions()  # one set of defaults
    assert CRFOptions.from_config({"enabled": True, "iterations": 3}).iterations == 3
    with pytest.raises(ValidationError):
        CRFConfig(theta_beta=0)
    with pytest.raises(ValidationError, match="theta_alfa"):
        CRFConfig.model_validate({"theta_alfa_mm": 50})
    minimal = {"name": "x", "data": {"manifest": "m.json"}, "model": {"name": "unet"}}
    cfg = PipelineConfig.model_validate({**minimal, "training": {"patch_size": [8, 8, 8]}})
    assert cfg.postprocessing.crf == CRFConfig()
    assert CRFOptions.from_config({"normalization": "none"}).normalization == "none"
    regions = [{"name": "wt", "labels": [1], "value": 1}]
    with pytest.raises(ValidationError, match=r"region .*cannot use the dense CRF"):
        PipelineConfig.model_validate(
            {
                **minimal,
                "training": {"patch_size": [8, 8, 8]},
                "regions": regions,
                "postprocessing": {"crf": {"enabled": True}},
            }
        )


# --------------------------------------------------------------------------------- predictor / CLI
def _step_scan(rng, shape=(24, 20, 10)):
    truth = np.indices(shape)[0] >= shape[0] // 2
    return truth, (truth + rng.normal(0, 0.35, shape)).astype(np.float32)


def test_predictor_applies_the_crf_before_the_argmax(rng):
    """A threshold 'network' labels noise; the CRF recovers the step (analytic truth)."""
    truth, data = _step_scan(rng)
    scan = Volume(data, np.diag([0.9, 1.1, 2.0, 1.0]))
    plan = Plan.from_dataset(
        [(scan, None)], {0: "bg", 1: "fg"}, target_spacing=None, normalization="none", crop_foreground=False
    )
    # torch: the ONNX engines' export cache is keyed by weights, and Threshold has none
    plain = Predictor(Threshold(0.5), plan, (16, 16, 8), backend="torch").predict(scan)
    assert "crf" not in plain.info
    options = CRFOptions(theta_alpha_mm=10.0, theta_beta=0.5)
    crf = Predictor(Threshold(0.5), plan, (16, 16, 8), backend="torch", crf=options).predict(
        scan, probabilities=True
    )
    wrong_before, wrong_after = (plain.labels.array != truth).mean(), (crf.labels.array != truth).mean()
    assert wrong_before > 0.05 and wrong_after < wrong_before / 3
    assert np.array_equal(crf.probabilities.array.argmax(-1), crf.labels.array)
    assert crf.info["crf"]["iterations"] == 5 and crf.info["crf"]["voxels"] == data.size
    assert crf.info["crf"]["seconds"] >= 0


def test_region_models_refuse_the_crf(rng):
    from medseg.config.schema import RegionConfig

    _, data = _step_scan(rng)
    plan = Plan.from_dataset([(Volume(data, np.eye(4)), None)], {0: "bg", 1: "fg"}, target_spacing=None)
    regions = [RegionConfig(name="fg", labels=[1], value=1)]
    with pytest.raises(ConfigError, match="regions"):
        Predictor(Threshold(0.5), plan, (16, 16, 8), regions=regions, crf=CRFOptions())


def test_predict_cli_crf_changes_the_output(tmp_path, rng, capsys):
    from medseg.cli.main import main

    run = make_run(tmp_path / "run")
    # a fake model: the untrained U-Net's foreground logit raised so its arg-max is undecided
    # (p ~ 0.5 around the image's edge) and the CRF has something to decide
    ckpt = run / "checkpoints" / "best.pt"
    state = load_checkpoint(ckpt)
    state["model"]["net.head.bias"][1] += 0.75
    save_checkpoint(ckpt, state)
    scans = tmp_path / "scans"
    scans.mkdir()
    _, data = _step_scan(rng, (20, 18, 12))
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), scans / "a.nii.gz")
    base = ["predict", "-m", str(run), "-i", str(scans), "--device", "cpu"]
    assert main(["-q", *base, "-o", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert main(["-v", *base, "-o", str(tmp_path / "crf"), "--crf"]) == 0
    assert "dense CRF: 5 iterations over 4320 voxels" in capsys.readouterr().err
    plain = nib.load(tmp_path / "plain" / "a.nii.gz").get_fdata()
    refined = nib.load(tmp_path / "crf" / "a.nii.gz").get_fdata()
    assert plain.shape == refined.shape == data.shape
    assert (plain != refined).mean() > 0.01
    sidecar = json.loads((tmp_path / "crf" / "a.json").read_text())
    assert sidecar["crf"]["iterations"] == CRFOptions().iterations and sidecar["crf"]["seconds"] >= 0
    assert "crf" not in json.loads((tmp_path / "plain" / "a.json").read_text())


def test_crf_flag_overrides_the_pipeline_setting():
    on = {"postprocessing": {"crf": {"enabled": True, "theta_beta": 0.2}}}
    assert run_crf_options(on, None) == CRFOptions(theta_beta=0.2)
    assert run_crf_options(on, False) is None  # --no-crf
    assert run_crf_options({}, None) is None  # runs from before the setting: off
    assert run_crf_options({}, True) == CRFOptions()  # --crf
