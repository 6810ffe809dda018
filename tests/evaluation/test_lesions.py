"""Lesion-wise evaluation (BraTS 2023 lesion-wise Dice/HD95, detection, size strata, FROC) on
hand-made cases whose values are worked out in the comments, and HD95 parity with MONAI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from medseg.errors import ConfigError, GeometryMismatchError, MedsegError
from medseg.evaluation import froc as ef
from medseg.evaluation import lesions as el

MAX = el.BRATS_MAX_HD95_MM  # 374 mm


def _grid(shape=(20, 20, 24)) -> np.ndarray:
    return np.zeros(shape, bool)


def _cube(mask: np.ndarray, start: tuple[int, ...], size: int) -> np.ndarray:
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def _det(result, threshold):
    return next(d for d in result.detection() if d.threshold == threshold)


def test_perfect_match():
    """Two 4x4x4 cubes predicted exactly: every lesion Dice 1, HD95 0, all detected, no FP."""
    ref = _cube(_cube(_grid(), (2, 2, 2), 4), (12, 12, 14), 4)
    res = el.evaluate_lesions(ref.copy(), ref, (1.0, 1.0, 1.0))
    assert res.n_ref == 2 and res.n_pred == 2 and res.n_fp == 0
    assert res.lesion_dice == 1.0 and res.lesion_hd95 == 0.0
    assert [r.volume for r in res.ref_lesions] == [64.0, 64.0]
    for d in res.detection():
        assert (d.sensitivity, d.precision, d.f1, d.n_fp) == (1.0, 1.0, 1.0, 0)


def test_missed_small_lesion():
    """A 4x4x4 cube found, a 2x2x2 one (8 mm³) missed.

    Lesion Dice (1 + 0) / 2 = 0.5; HD95 (0 + 374) / 2 = 187 mm. Detection: 1 of 2 lesions,
    1 of 1 predicted component true: sensitivity 0.5, precision 1, F1 2·0.5·1/1.5 = 2/3.
    Strata: the 8 mm³ lesion is in <10 (0 of 1), the 64 mm³ one in 10-100 (1 of 1)."""
    pred = _cube(_grid(), (2, 2, 2), 4)
    ref = _cube(pred.copy(), (14, 14, 16), 2)
    res = el.evaluate_lesions(pred, ref)
    assert res.lesion_dice == pytest.approx(0.5) and res.lesion_hd95 == pytest.approx(187.0)
    missed = res.ref_lesions[1]
    assert missed.matched == () and missed.dice == 0.0 and missed.hd95 == MAX and missed.volume == 8.0
    d = _det(res, 0.5)
    assert (d.n_ref, d.n_detected, d.n_pred, d.n_pred_true) == (2, 1, 1, 1)
    assert d.sensitivity == 0.5 and d.precision == 1.0 and d.f1 == pytest.approx(2 / 3)
    strata = {s.band: (s.n_ref, s.n_detected) for s in res.strata() if s.threshold == 0.0}
    assert strata == {"<10": (1, 0), "10-100": (1, 1), "100-1000": (0, 0), ">=1000": (0, 0)}
    # BraTS-GLI leaves lesions of at most 50 mm³ out: the miss no longer counts
    gli = el.evaluate_lesions(pred, ref, settings=el.LesionSettings.brats2023("GLI"))
    assert gli.n_ref == 1 and gli.lesion_dice == 1.0 and gli.lesion_hd95 == 0.0
    assert _det(gli, 0.0).sensitivity == 1.0


def test_false_positive():
    """A cube found, plus a 2x2x2 component 8 voxels away (beyond the 3-voxel dilation).

    Lesion Dice (1 + 0) / (1 + 1) = 0.5; HD95 (0 + 374) / 2 = 187 mm; detection sensitivity 1,
    precision 1/2, F1 2/3, one FP per case."""
    ref = _cube(_grid(), (2, 2, 2), 4)
    pred = _cube(ref.copy(), (2, 2, 14), 2)
    res = el.evaluate_lesions(pred, ref)
    assert res.n_fp == 1 and res.pred_lesions[1].false_positive
    assert res.lesion_dice == pytest.approx(0.5) and res.lesion_hd95 == pytest.approx(187.0)
    d = _det(res, 0.1)
    assert d.sensitivity == 1.0 and d.precision == 0.5 and d.f1 == pytest.approx(2 / 3) and d.n_fp == 1


def test_nearby_component_is_matched_not_false_positive():
    """One voxel 2 voxels off the cube's face lies in the dilated region: matched, not FP.

    Dice 2·64 / (65 + 64) = 128/129, IoU 64/65. HD95: the prediction surface is the cube's 56
    surface voxels (distance 0) plus the voxel (2 mm); the 95th percentile of 57 values sits at
    rank 53.2, among the zeros: 0."""
    ref = _cube(_grid(), (2, 2, 2), 4)
    pred = ref.copy()
    pred[7, 3, 3] = True
    res = el.evaluate_lesions(pred, ref)
    (lesion,) = res.ref_lesions
    assert res.n_fp == 0 and lesion.matched == (1, 2)
    assert lesion.dice == pytest.approx(128 / 129) and lesion.iou == pytest.approx(64 / 65)
    assert lesion.hd95 == pytest.approx(0.0)
    # without dilation the voxel matches nothing and is a false positive
    plain = el.evaluate_lesions(pred, ref, settings=el.LesionSettings(dilation=0))
    assert plain.n_fp == 1 and plain.lesion_dice == pytest.approx(0.5)


def test_dilation_uses_the_18_neighbourhood():
    """BraTS dilates with the rank-2 element: one iteration reaches the edge neighbour (1, 1, 0)
    but not the corner (1, 1, 1). So a predicted voxel at the edge offset is matched (lesion Dice
    0, HD95 √2 mm, no FP), one at the corner is a false positive (Dice 0/2, HD95 (374 + 374)/2)."""
    ref = _grid((10, 10, 10))
    ref[5, 5, 5] = True
    settings = el.LesionSettings(dilation=1)
    edge, corner = _grid((10, 10, 10)), _grid((10, 10, 10))
    edge[6, 6, 5] = corner[6, 6, 6] = True
    near = el.evaluate_lesions(edge, ref, 1.0, settings)
    assert near.n_fp == 0 and near.lesion_dice == 0.0 and near.lesion_hd95 == pytest.approx(math.sqrt(2))
    far = el.evaluate_lesions(corner, ref, 1.0, settings)
    assert far.n_fp == 1 and far.lesion_dice == 0.0 and far.lesion_hd95 == pytest.approx(MAX)


def test_two_lesions_merged_by_one_prediction():
    """Cubes A (z 2..5) and B (z 14..17), 8 voxels apart: their 3-voxel dilations (up to z 8 and
    from z 11) do not touch, so they are two lesions. The prediction is one 4x4x16 bar over both.

    BraTS matches the bar with both lesions and scores each against the whole bar:
    Dice 2·64 / (256 + 64) = 0.4, IoU 64/256 = 0.25. HD95 (mm, spacing 1): the bar's 200
    surface voxels lie 0 (52 of them), 1…11 (12 each, rings z 6…16) and 12 (16, far end face)
    from A's surface; ranks 189 and 190 are 12, so 12 mm (A's side: at most 1 mm). Lesion-wise
    Dice (0.4 + 0.4) / 2 = 0.4, HD95 12 mm, no false positive. Detection: IoU 0.25 passes 0 and
    0.1 but not 0.5, where the bar becomes a false positive."""
    ref = _cube(_cube(_grid(), (2, 2, 2), 4), (2, 2, 14), 4)
    pred = _grid()
    pred[2:6, 2:6, 2:18] = True
    res = el.evaluate_lesions(pred, ref)
    assert res.n_ref == 2 and res.n_pred == 1 and res.n_fp == 0
    assert res.pred_lesions[0].matched == (1, 2)
    for lesion in res.ref_lesions:
        assert lesion.matched == (1,)
        assert lesion.dice == pytest.approx(0.4) and lesion.iou == pytest.approx(0.25)
        assert lesion.hd95 == pytest.approx(12.0)
    assert res.lesion_dice == pytest.approx(0.4) and res.lesion_hd95 == pytest.approx(12.0)
    assert _det(res, 0.1).sensitivity == 1.0 and _det(res, 0.1).precision == 1.0
    d = _det(res, 0.5)
    assert (d.sensitivity, d.precision, d.f1, d.n_fp) == (0.0, 0.0, 0.0, 1)


def test_close_lesions_are_one_lesion():
    """Cubes 4 voxels apart (z 2..5 and 10..13): the dilations (up to z 8, from z 7) touch, so
    BraTS counts one lesion of 128 voxels. The bar z 2..13 (192 voxels) covers both:
    Dice 2·128 / (192 + 128) = 0.8, one lesion."""
    ref = _cube(_cube(_grid(), (2, 2, 2), 4), (2, 2, 10), 4)
    pred = _grid()
    pred[2:6, 2:6, 2:14] = True
    res = el.evaluate_lesions(pred, ref)
    assert res.n_ref == 1 and res.ref_lesions[0].n_voxels == 128
    assert res.lesion_dice == pytest.approx(0.8)
    assert el.evaluate_lesions(pred, ref, settings=el.LesionSettings(dilation=0)).n_ref == 2


def test_partially_overlapping_lesion_on_anisotropic_grid():
    """A 4x4x4 cube (k 1..4) predicted two voxels further along the 2.5 mm axis (k 3..6).

    Overlap 32 voxels: Dice 64/128 = 0.5, IoU 32/96 = 1/3. Reference surface (56 voxels) to the
    prediction surface: k=1 face 16 × 5 mm, k=2 ring 12 × 2.5 mm, k=3 ring 12 × 0, k=4 face:
    ring 12 × 0 and 4 inner voxels × 0.8 mm (a step along the 0.8 mm axis). Ranks 52-53 of 56
    are 5 mm, and the other side mirrors it: HD95 5 mm. Detected at IoU 0 and 0.1, not 0.5."""
    spacing = (0.8, 1.2, 2.5)
    ref = _cube(_grid((8, 8, 10)), (2, 2, 1), 4)
    pred = _cube(_grid((8, 8, 10)), (2, 2, 3), 4)
    res = el.evaluate_lesions(pred, ref, spacing)
    (lesion,) = res.ref_lesions
    assert lesion.dice == pytest.approx(0.5) and lesion.iou == pytest.approx(1 / 3)
    assert lesion.hd95 == pytest.approx(5.0)
    assert lesion.volume == pytest.approx(64 * 0.8 * 1.2 * 2.5)
    assert [d.n_detected for d in res.detection()] == [1, 1, 0]


def test_anisotropic_spacing_changes_the_size_band():
    """A 2x2x2 lesion is 8 mm³ at 1 mm (band <10) and 16 mm³ at 1 x 1 x 2 mm (band 10-100)."""
    ref = _cube(_grid((10, 10, 10)), (3, 3, 3), 2)
    pred = np.zeros_like(ref)
    for spacing, volume, band in (((1, 1, 1), 8.0, "<10"), ((1, 1, 2), 16.0, "10-100")):
        res = el.evaluate_lesions(pred, ref, spacing)
        assert res.ref_lesions[0].volume == pytest.approx(volume)
        counted = {s.band: s.n_ref for s in res.strata() if s.threshold == 0.0 and s.n_ref}
        assert counted == {band: 1}
        assert res.settings.band_of(volume) == band


def test_connectivity_in_2d():
    """Two diagonal pixels: one lesion with 8-connectivity (the 2D default), two with 4."""
    ref = np.zeros((8, 8), bool)
    ref[2, 2] = ref[3, 3] = True
    res8 = el.evaluate_lesions(ref, ref, (0.5, 0.5), el.LesionSettings(dilation=0))
    assert res8.n_ref == 1 and res8.ref_lesions[0].volume == pytest.approx(0.5)  # 2 px of 0.25 mm²
    res4 = el.evaluate_lesions(ref, ref, (0.5, 0.5), el.LesionSettings(dilation=0, connectivity=4))
    assert res4.n_ref == 2 and res4.lesion_dice == 1.0
    assert res4.to_dict()["volume_unit"] == "mm2"


def test_empty_cases():
    """Neither: Dice 1, HD95 0, F1 1. Only the reference: Dice 0, HD95 374. Only a prediction:
    Dice 0, HD95 374, one FP, sensitivity undefined (None in JSON)."""
    empty, cube = _grid(), _cube(_grid(), (2, 2, 2), 3)
    none = el.evaluate_lesions(empty, empty)
    assert (none.lesion_dice, none.lesion_hd95, _det(none, 0.0).f1) == (1.0, 0.0, 1.0)
    assert math.isnan(_det(none, 0.0).sensitivity) and math.isnan(_det(none, 0.0).precision)
    missed = el.evaluate_lesions(empty, cube)
    assert (missed.lesion_dice, missed.lesion_hd95, _det(missed, 0.0).f1) == (0.0, MAX, 0.0)
    fp = el.evaluate_lesions(cube, empty)
    assert (fp.lesion_dice, fp.lesion_hd95, fp.n_fp) == (0.0, MAX, 1)
    assert fp.to_dict()["detection"][0]["sensitivity"] is None


def test_summary_pools_cases_and_is_json():
    """The missed-lesion case (2 lesions, 1 found, 1 component) and the FP case (1 lesion found,
    2 components): pooled sensitivity 2/3, precision 2/3, F1 2/3; BraTS FPs 1 over 2 cases: 0.5 per
    case; per-case lesion Dice 0.5 and 0.5."""
    a_pred = _cube(_grid(), (2, 2, 2), 4)
    a = el.evaluate_lesions(a_pred, _cube(a_pred.copy(), (14, 14, 16), 2))
    b_ref = _cube(_grid(), (2, 2, 2), 4)
    b = el.evaluate_lesions(_cube(b_ref.copy(), (2, 2, 14), 2), b_ref)
    summary = el.LesionSummary.from_cases([a, b])
    d = summary.detection[0]
    assert (d.n_ref, d.n_detected, d.n_pred, d.n_pred_true, d.n_cases) == (3, 2, 3, 2, 2)
    assert d.sensitivity == pytest.approx(2 / 3) and d.f1 == pytest.approx(2 / 3)
    assert d.fp_per_case == 0.5 and summary.fp_per_case == 0.5
    assert summary.lesion_dice["mean"] == pytest.approx(0.5)
    assert summary.lesion_hd95["mean"] == pytest.approx(187.0)
    text = json.dumps(summary.to_dict(), allow_nan=False)
    assert json.loads(text)["detection"][0]["n_detected"] == 2
    json.dumps(a.to_dict(), allow_nan=False)
    with pytest.raises(ConfigError):
        el.LesionSummary.from_cases(
            [a, el.evaluate_lesions(a_pred, a_pred, settings=el.LesionSettings(dilation=1))]
        )


def _froc_cases() -> list[ef.FrocCase]:
    """Case 1: lesions L1 (found at 0.9) and L2 (found at 0.3), an FP at 0.8. Case 2: lesion L3,
    a 2x8x2 bar, hit by two separate candidates (0.6 and 0.35), FPs at 0.4 and 0.2."""
    p1, r1 = np.zeros((16, 16, 16)), _grid((16, 16, 16))
    for start, value, lesion in (((2, 2, 2), 0.9, True), ((10, 10, 10), 0.3, True), ((2, 10, 2), 0.8, False)):
        p1[tuple(slice(s, s + 2) for s in start)] = value
        r1[tuple(slice(s, s + 2) for s in start)] = lesion
    p2, r2 = np.zeros((16, 16, 16)), _grid((16, 16, 16))
    r2[2:4, 2:10, 2:4] = True
    p2[2:4, 2:4, 2:4], p2[2:4, 7:9, 2:4] = 0.6, 0.35
    p2[10:12, 2:4, 10:12], p2[10:12, 10:12, 2:4] = 0.4, 0.2
    return [ef.lesion_candidates(p, r, threshold=0.1) for p, r in ((p1, r1), (p2, r2))]


def test_froc_exact_curve_on_two_cases():
    """Scores, best first: 0.9 L1, 0.8 FP, 0.6 L3, 0.4 FP, 0.35 L3 again (ignored), 0.3 L2, 0.2 FP.
    Operating points (FPs per case = FPs / 2, sensitivity of 3 lesions):
    0.9 → (0, 1/3), 0.8 → (0.5, 1/3), 0.6 → (0.5, 2/3), 0.4 and 0.35 → (1, 2/3), 0.3 → (1, 1),
    0.2 → (1.5, 1). At 1/8 and 1/4: between (0, 1/3) and (0.5, 1/3): 1/3; at 1/2: 2/3; at 1 and
    beyond: 1. FROC = (1/3 + 1/3 + 2/3 + 1 + 1 + 1 + 1) / 7 = 16/21."""
    cases = _froc_cases()
    assert cases[1].hits == ((1,), (1,), (), ()) and cases[1].n_lesions == 1
    result = ef.froc(cases)
    got = [(p.threshold, p.fp_per_case, p.sensitivity) for p in result.points]
    third = 1 / 3
    want = [(0.9, 0, third), (0.8, 0.5, third), (0.6, 0.5, 2 * third), (0.4, 1, 2 * third)]
    want += [(0.35, 1, 2 * third), (0.3, 1, 1), (0.2, 1.5, 1)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(result.sensitivities, [third, third, 2 * third, 1, 1, 1, 1], atol=1e-12)
    assert result.score == pytest.approx(16 / 21) and result.n_lesions == 3 and result.n_cases == 2
    json.dumps(result.to_dict(), allow_nan=False)


def test_froc_interpolates_between_listed_thresholds():
    """Thresholds 0.85, 0.5, 0.25 give (0, 1/3), (0.5, 2/3), (1, 1). At 1/8 FPs: 1/3 + (1/3)(1/4)
    = 5/12; at 1/4: 1/2; at 1/2: 2/3; from 1 on: 1. FROC = (5/12 + 6/12 + 8/12 + 4) / 7 = 67/84."""
    result = ef.froc(_froc_cases(), thresholds=[0.25, 0.5, 0.85])
    assert [(p.fp_per_case, p.n_detected, p.n_fp) for p in result.points] == [
        (0, 1, 0),
        (0.5, 2, 1),
        (1, 3, 2),
    ]
    np.testing.assert_allclose(result.sensitivities, [5 / 12, 0.5, 2 / 3, 1, 1, 1, 1], atol=1e-12)
    assert result.score == pytest.approx(67 / 84)


def test_invalid_inputs_are_refused_with_a_hint():
    cube = _cube(_grid(), (2, 2, 2), 3)
    with pytest.raises(GeometryMismatchError):
        el.evaluate_lesions(cube, cube[:-1])
    with pytest.raises(ConfigError) as info:
        el.evaluate_lesions(cube.astype(np.uint8) * 2, cube)
    assert isinstance(info.value, MedsegError) and info.value.hint
    with pytest.raises(ConfigError):
        ef.lesion_candidates(cube * 3.0, cube)
    with pytest.raises(ConfigError):
        el.evaluate_lesions(cube, cube, settings=el.LesionSettings(connectivity=8))
    for bad in ({"dilation": -1}, {"iou_thresholds": (0.5, 0.1)}, {"size_bands": (100, 10)}):
        with pytest.raises(ConfigError):
            el.LesionSettings(**bad)
    with pytest.raises(ConfigError):
        el.LesionSettings.brats2023("XYZ")
    with pytest.raises(ConfigError):
        ef.froc([])


# -- MONAI parity ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_lesion_hd95_matches_monai(seed):
    """Random blobs on an anisotropic grid: each matched lesion's HD95 equals MONAI's
    compute_hausdorff_distance(percentile=95) between the lesion and its matched components."""
    import torch
    from monai.metrics import compute_hausdorff_distance
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape, spacing = (48, 44, 24), (0.7, 0.9, 2.0)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    ref, pred = field > 0.12, field + 0.3 * noise > 0.12  # about 25 lesions, some with several matches
    res = el.evaluate_lesions(pred, ref, spacing, el.LesionSettings(dilation=1))
    lesions, _, _ = el.label_lesions(ref, 1)
    comps, _ = el.label_components(pred)
    checked = 0
    for lesion in res.ref_lesions:
        if not lesion.matched:
            continue
        g, u = lesions == lesion.id, np.isin(comps, lesion.matched)

        def one_hot(m):
            t = torch.from_numpy(m.astype(np.float32))[None, None]
            return torch.cat([1 - t, t], dim=1)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monai = compute_hausdorff_distance(one_hot(u), one_hot(g), percentile=95, spacing=spacing)
        assert lesion.hd95 == pytest.approx(float(monai[0, 0]), rel=1e-6, abs=1e-5)
        checked += 1
    assert checked >= 20
    assert any(len(lesion.matched) > 1 for lesion in res.ref_lesions)
