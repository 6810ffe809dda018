"""The torch resampling (prediction's GPU path) reproduces the scipy reference, run here on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.transforms.preprocess import Plan
from medseg.transforms.preprocess import resample as rs
from medseg.transforms.preprocess.resample import axis_taps, resample_array, resample_tensor
from medseg.volume import Volume

CPU = torch.device("cpu")

# (source shape, target shape): up, exact 2:1 down (ties), odd ratios, unchanged axes, 1-voxel axes
CASES = [
    ((8,), (4,)),
    ((16, 10), (8, 5)),
    ((6, 9, 4), (3, 9, 2)),
    ((5, 7, 3), (11, 16, 9)),
    ((13, 17, 7), (5, 6, 3)),
    ((10, 12, 7), (10, 12, 21)),
    ((6, 10, 14), (9, 15, 21)),  # 2:3, where float64 rounding decides the ties
    ((1, 7, 4), (3, 7, 2)),
    ((7, 1, 5), (7, 4, 5)),
    ((9, 8, 6), (1, 1, 1)),
    ((20, 30), (7, 45)),
    ((2, 3), (23, 1)),
]


def _random_cases(n: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    rng = np.random.default_rng(7)
    out = []
    for k in range(n):
        nd = 2 + k % 2
        src = tuple(int(v) for v in rng.integers(1, 24, nd))
        dst = tuple(int(v) for v in rng.integers(1, 40, nd))
        if k % 3 == 0:  # one axis unchanged
            dst = (src[0], *dst[1:])
        out.append((src, dst))
    return out


ALL_CASES = CASES + _random_cases(40)


def _labels(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if dtype is np.uint8:
        return rng.integers(0, 6, shape).astype(np.uint8)
    return rng.integers(-300, 300, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
@pytest.mark.parametrize(("src", "dst"), ALL_CASES)
def test_order0_is_bit_identical_to_scipy(src, dst, dtype, rng):
    lab = _labels(rng, src, dtype)
    ref = resample_array(lab, dst, order=0)
    out = resample_array(lab, dst, order=0, device=CPU)
    assert out.dtype == ref.dtype == np.dtype(dtype)
    assert out.shape == ref.shape == tuple(dst)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize(("src", "dst"), ALL_CASES)
def test_order1_matches_scipy(src, dst, rng):
    img = rng.normal(100.0, 40.0, src).astype(np.float32)
    ref = resample_array(img, dst, order=1)
    out = resample_array(img, dst, order=1, device=CPU)
    assert out.dtype == ref.dtype == np.float32
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(img).max()))


def test_ties_round_up_as_scipy():
    """2:1 downsampling puts every new voxel exactly between two old ones: scipy takes the upper."""
    lo, _, _ = axis_taps(8, 4, 0)
    np.testing.assert_array_equal(lo, [1, 3, 5, 7])
    np.testing.assert_array_equal(resample_array(np.arange(8, dtype=np.uint8), (4,), 0), [1, 3, 5, 7])
    coord = np.arange(4) * 2.0 + 0.5
    assert not np.array_equal(torch.round(torch.from_numpy(coord)).numpy(), lo)  # half-to-even differs


def test_nearest_taps_equal_scipy_for_every_small_ratio():
    """scipy computes ``(i + offset / scale) * scale``, not ``scale * i + offset``: at ties the
    last bit picks the voxel, so every (n, m) pair up to 48 is checked against scipy in 1D."""
    for n in range(1, 49):
        src = np.arange(n, dtype=np.int16)
        for m in range(1, 49):
            if m == n:
                continue
            lo, hi, w = axis_taps(n, m, 0)
            np.testing.assert_array_equal(src[lo], resample_array(src, (m,), 0), err_msg=f"{n} -> {m}")
            assert (hi == lo).all() and (w == 0).all()


@pytest.mark.parametrize("order", [0, 1])
def test_channels_go_along(order, rng):
    src, dst = (9, 6, 5), (4, 11, 5)
    if order == 0:
        arr = rng.integers(0, 4, (*src, 3)).astype(np.uint8)
    else:
        arr = rng.random((*src, 3)).astype(np.float32)
    ref = resample_array(arr, dst, order=order)
    out = resample_array(arr, dst, order=order, device=CPU)
    assert out.shape == ref.shape == (*dst, 3) and out.dtype == ref.dtype
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    if order == 0:
        np.testing.assert_array_equal(out, ref)


def test_input_layouts_and_dtypes(rng):
    """Flipped (negative strides), read-only, big-endian and unsigned 16-bit labels all work."""
    lab = rng.integers(0, 60000, (12, 9, 7)).astype(np.uint16)
    flipped = lab[::-1, :, ::-1]
    readonly = lab.copy()
    readonly.flags.writeable = False
    for arr in (flipped, readonly, lab.astype(">u2"), lab.astype(np.int32), lab > 30000):
        ref = resample_array(arr, (5, 9, 15), order=0)
        out = resample_array(arr, (5, 9, 15), order=0, device=CPU)
        assert out.dtype == ref.dtype
        np.testing.assert_array_equal(out, ref)
    img = rng.normal(size=(12, 9, 7))  # float64 in: float32 out, as scipy
    out = resample_array(img[:, ::-1], (5, 9, 15), order=1, device=CPU)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, resample_array(img[:, ::-1], (5, 9, 15), order=1), rtol=1e-5, atol=1e-5)


def test_unchanged_shape_returns_the_input_and_cubic_falls_back(rng, caplog):
    img = rng.random((5, 6, 7)).astype(np.float32)
    assert resample_array(img, (5, 6, 7), order=1, device=CPU) is img
    with caplog.at_level("DEBUG", logger=rs.__name__):
        out = resample_array(img, (9, 6, 3), order=3, device=CPU)
    np.testing.assert_array_equal(out, resample_array(img, (9, 6, 3), order=3))
    assert any("order 3" in r.getMessage() for r in caplog.records)


def test_resample_tensor_rejects_bad_input():
    with pytest.raises(ValueError, match="floating"):
        resample_tensor(torch.zeros(4, 4, dtype=torch.uint8), (2, 2), order=1)
    with pytest.raises(ValueError, match="orders 0 and 1"):
        axis_taps(4, 2, 3)


def test_device_none_never_uses_torch(monkeypatch, rng):
    def boom(*args, **kwargs):
        raise AssertionError("the torch path ran without a device")

    monkeypatch.setattr(rs, "resample_tensor", boom)
    monkeypatch.setattr(rs, "_resample_torch_numpy", boom)
    lab = rng.integers(0, 3, (8, 6, 4)).astype(np.uint8)
    assert resample_array(lab, (4, 6, 9), order=0).shape == (4, 6, 9)
    assert resample_array(lab.astype(np.float32), (4, 6, 9), order=1).dtype == np.float32
    with pytest.raises(AssertionError, match="without a device"):
        resample_array(lab, (4, 6, 9), order=0, device=CPU)


def _affine(spacing, origin):
    a = np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS: the plan reorients to RAS (a flip)
    a[:3, :3] *= spacing
    a[:3, 3] = origin
    return a


@pytest.mark.parametrize("target", [[1.0, 1.0, 1.0], [1.5, 0.7, 2.0]])
def test_plan_apply_and_invert_match_the_scipy_path(target, rng):
    a = _affine([0.8, 1.3, 3.0], [10, -20, 30])
    img = np.zeros((30, 22, 9), np.float32)
    img[3:27, 2:20, 1:8] = rng.normal(50, 20, (24, 18, 7))
    lab = (img > 60).astype(np.uint8) + (img > 80).astype(np.uint8)
    plan = Plan.from_dataset(
        [(Volume(img, a), Volume(lab, a))], {0: "bg", 1: "a", 2: "b"}, target_spacing=target
    )
    ref = plan.apply(Volume(img, a), Volume(lab, a))
    out = plan.apply(Volume(img, a), Volume(lab, a), device=CPU)
    assert out.image.shape == ref.image.shape and out.image.shape[1:] != img.shape  # it resampled
    assert out.record.norm[0] == pytest.approx(ref.record.norm[0], rel=1e-6)  # float32 rounding
    out.record.norm = ref.record.norm
    assert out.record == ref.record
    np.testing.assert_allclose(out.image, ref.image, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.label, ref.label)

    back_ref = plan.invert(ref.label, ref.record, order=0)
    back = plan.invert(ref.label, ref.record, order=0, device=CPU)
    assert back.array.dtype == back_ref.array.dtype
    np.testing.assert_array_equal(back.array, back_ref.array)
    np.testing.assert_allclose(back.affine, back_ref.affine)

    onehot = np.stack([(ref.label == k) for k in range(3)]).astype(np.float32)
    soft = onehot * 0.8 + 0.2 / 3
    prob_ref = plan.invert(soft, ref.record, order=1, fill=0.0)
    prob = plan.invert(soft, ref.record, order=1, fill=0.0, device=CPU)
    assert prob.array.shape == prob_ref.array.shape == (3, *img.shape)
    np.testing.assert_allclose(prob.array, prob_ref.array, rtol=1e-5, atol=1e-6)


def test_predictor_resamples_on_the_device_only_on_cuda(monkeypatch, rng):
    """A CPU predictor keeps scipy; a CUDA one hands its device to every resampling (the spy runs
    the torch path on the CPU in its place) and gets the same prediction."""
    from medseg.inference import Predictor
    from medseg.transforms.preprocess import plan as plan_module
    from tests.fixtures.models import Threshold

    seen = []

    def spy(array, shape, order, device=None):
        seen.append(device)
        return resample_array(array, shape, order, device=None if device is None else CPU)

    monkeypatch.setattr(plan_module, "resample_array", spy)
    data = rng.normal(0.5, 0.3, (24, 20, 9)).astype(np.float32)
    scan = Volume(data, _affine([1.0, 1.0, 3.0], [0, 0, 0]))
    plan = Plan.from_dataset([(scan, None)], {0: "bg", 1: "fg"}, target_spacing=[1.0, 1.0, 1.0])
    pred = Predictor(Threshold(0.5), plan, (16, 16, 16))
    prepared = pred.prepare(scan)
    labels, probs = pred.infer(prepared, probabilities=True)
    ref = pred.finish(prepared, labels, probs)
    assert seen and all(d is None for d in seen)

    seen.clear()
    pred.device = torch.device("cuda")  # after the network ran: only the resampling sees it
    on_gpu = pred.finish(pred.prepare(scan), labels, probs)
    assert len(seen) == 3 and all(d == torch.device("cuda") for d in seen)  # apply, labels, probabilities
    np.testing.assert_array_equal(on_gpu.labels.array, ref.labels.array)
    np.testing.assert_allclose(on_gpu.probabilities.array, ref.probabilities.array, rtol=1e-5, atol=1e-6)
