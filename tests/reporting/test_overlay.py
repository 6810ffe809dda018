"""Overlay pictures: real cases, radiological orientation, aspect, contour colours where the structure is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.errors import GeometryMismatchError
from medseg.io import read_volume
from medseg.reporting.overlay import class_colors, overlay, render_overlay
from medseg.volume import Volume, VolumeMeta
from tests.conftest import shared_path
from tests.reporting.conftest import color_mask, decode_png


def _panel_pixels(panel, rgb: np.ndarray) -> np.ndarray:
    """The part of the picture showing one view's slice."""
    left, top, right, bottom = panel.pixel_box
    return rgb[int(np.ceil(top)) : int(bottom), int(np.ceil(left)) : int(right)]


def _bbox_px(panel, mask2d: np.ndarray, margin_px: float = 6.0) -> tuple[float, float, float, float]:
    """Bounding box (left, top, right, bottom) in panel-crop pixels of a displayed mask."""
    rows, cols = mask2d.shape
    left, top, right, bottom = panel.pixel_box
    sx, sy = (right - left) / cols, (bottom - top) / rows
    r, c = np.nonzero(mask2d)
    return (c.min() * sx - margin_px, r.min() * sy - margin_px, (c.max() + 1) * sx + margin_px,
            (r.max() + 1) * sy + margin_px)  # fmt: skip


def _displayed(volume: Volume, view: str, index: int) -> np.ndarray:
    """Slice of a volume as the overlay shows it (LPS; rows top->bottom: A->P or S->I)."""
    a = volume.reoriented("LPS").array
    if view == "axial":
        return a[:, :, index].T
    if view == "coronal":
        return a[:, index, :].T[::-1]
    return a[index, :, :].T[::-1]


def _share_inside(color: np.ndarray, box: tuple[float, float, float, float]) -> float:
    rows, cols = np.nonzero(color)
    inside = (cols >= box[0]) & (cols <= box[2]) & (rows >= box[1]) & (rows <= box[3])
    return float(inside.mean())


@pytest.mark.shared
def test_hippocampus_overlay_draws_reference_and_prediction_where_the_structure_is(shared_datasets, tmp_path):
    root = shared_path(shared_datasets, "msd_hippocampus")
    image = read_volume(root / "imagesTr" / "hippocampus_001.nii.gz")
    ref = read_volume(root / "labelsTr" / "hippocampus_001.nii.gz")
    pred = ref.with_array(np.roll(ref.array, 2, axis=1))
    labels = {1: "Anterior", 2: "Posterior"}
    out = tmp_path / "overlay.png"
    picture = overlay(image, ref, pred, out, labels, title="hippocampus_001")
    rgb = decode_png(out.read_bytes())
    assert rgb.shape == (520, 1200, 3) == (picture.height, picture.width, 3)
    assert [p.view for p in picture.panels] == ["axial", "coronal", "sagittal"]
    colors = class_colors(labels)
    checked = 0
    for panel in picture.panels:
        crop = _panel_pixels(panel, rgb)
        for label in panel.labels_shown:
            for volume, which in ((ref, 0), (pred, 1)):
                mask = _displayed(volume, panel.view, panel.slice_index) == label
                if not mask.any():
                    continue
                color = color_mask(crop, colors[label][which])
                assert color.sum() > 15, (panel.view, label, which)
                assert _share_inside(color, _bbox_px(panel, mask)) > 0.9, (panel.view, label, which)
                checked += 1
    assert checked >= 8  # both classes, reference and prediction, in most views
    # the centre of mass of the reference lies in the drawn slices
    com = np.round(np.argwhere(ref.reoriented("LPS").array > 0).mean(axis=0)).astype(int)
    assert [p.slice_index for p in picture.panels] == [com[2], com[1], com[0]]


@pytest.mark.shared
def test_totalsegmentator_ct_with_its_multi_organ_mask(shared_datasets, tmp_path):
    root = shared_path(shared_datasets, "totalsegmentator_examples")
    ct = read_volume(root / "example_ct.nii.gz")
    seg = read_volume(root / "example_seg_fast_force_split.nii.gz")  # the mask on example_ct's grid
    names = {int(k): v for k, v in json.loads((root / "class_map_total_v2.json").read_text()).items()}
    out = tmp_path / "ct.png"
    picture = overlay(ct, seg, None, out, names, window="abdomen", title="example_ct")
    rgb = decode_png(out.read_bytes())
    assert rgb.shape == (520, 1200, 3)
    shown = {label for p in picture.panels for label in p.labels_shown}
    assert len(shown) >= 20  # a multi-organ picture, not one structure
    # many distinct contour colours inside the image area
    crop = _panel_pixels(picture.panels[1], rgb).reshape(-1, 3).astype(int)
    saturated = crop[(crop.max(axis=1) - crop.min(axis=1)) > 120]
    assert len({tuple(v // 32) for v in saturated}) >= 10


@pytest.mark.shared
def test_totalsegmentator_reference_and_prediction_of_the_small_ct(shared_datasets):
    """example_ct_sm with two real multi-organ segmentations of it: the full model as reference and
    the --fast model as prediction. Four organs are drawn so that every colour is unique."""
    root = shared_path(shared_datasets, "totalsegmentator_examples")
    ct = read_volume(root / "example_ct_sm.nii.gz")
    ref = read_volume(root / "example_seg.nii.gz")
    pred = read_volume(root / "example_seg_fast.nii.gz")
    four = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}
    picture = render_overlay(ct, ref, pred, four, window="abdomen")
    rgb = decode_png(picture.png)
    coronal = picture.panels[1]
    assert coronal.view == "coronal" and 5 in coronal.labels_shown
    crop = _panel_pixels(coronal, rgb)
    for volume, which in ((ref, 0), (pred, 1)):
        liver = _displayed(volume, "coronal", coronal.slice_index) == 5
        color = color_mask(crop, class_colors(four)[5][which])
        assert color.sum() > 40, which
        assert _share_inside(color, _bbox_px(coronal, liver)) > 0.95, which
        # radiological convention: the liver (patient's right) is on the viewer's left
        assert np.nonzero(color)[1].mean() < crop.shape[1] / 2


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PIR"])
def test_views_are_radiological_whatever_the_voxel_order(orientation):
    """A marker at the patient's right, anterior, superior appears left/top on axial and coronal,
    and anterior (left)/superior (top) on sagittal, however the file stores its axes."""
    spacing = (1.0, 1.0, 3.0)
    shape = (40, 36, 20)
    ras = Volume(np.zeros(shape, np.float32), np.diag([*spacing, 1.0]))
    marker = np.zeros(shape, np.uint8)
    marker[30:36, 26:32, 14:18] = 1  # +x = right, +y = anterior, +z = superior (RAS)
    image = ras.with_array(np.random.default_rng(0).random(shape).astype(np.float32)).reoriented(orientation)
    ref = ras.with_array(marker).reoriented(orientation)
    picture = render_overlay(image, ref, None, {1: "marker"})
    rgb = decode_png(picture.png)
    color = class_colors({1: "marker"})[1][0]
    for panel in picture.panels:
        crop = _panel_pixels(panel, rgb)
        rows, cols = np.nonzero(color_mask(crop, color))
        assert rows.size > 10, panel.view
        assert cols.mean() < crop.shape[1] / 2, panel.view  # right (axial, coronal) / anterior (sagittal)
        if panel.view != "axial":
            assert rows.mean() < crop.shape[0] / 2, panel.view  # superior at the top
        else:
            assert rows.mean() < crop.shape[0] / 2, panel.view  # anterior at the top
    # millimetre aspect: the coronal slice is 40 mm wide and 20 x 3 = 60 mm high
    left, top, right, bottom = picture.panels[1].pixel_box
    assert (bottom - top) / (right - left) == pytest.approx(60 / 40, rel=0.02)


def test_2d_image_overlay(tmp_path):
    rng = np.random.default_rng(1)
    image = Volume(rng.random((60, 80)).astype(np.float32), np.eye(4), VolumeMeta(source_format="png"))
    ref_arr = np.zeros((60, 80), np.uint8)
    ref_arr[10:30, 20:50] = 1
    ref = image.with_array(ref_arr[:, :, None])
    pred = image.with_array(np.roll(ref_arr, 4, axis=1)[:, :, None])
    picture = overlay(image, ref, pred, tmp_path / "2d.png", {1: "cell"})
    rgb = decode_png((tmp_path / "2d.png").read_bytes())
    assert rgb.shape == (640, 640, 3)
    assert [p.view for p in picture.panels] == ["image"]
    crop = _panel_pixels(picture.panels[0], rgb)
    ref_px, pred_px = color_mask(crop, "#00ff00"), color_mask(crop, "#ff2d2d")
    assert ref_px.sum() > 30 and pred_px.sum() > 30
    # rows 10-30 of 60, stored orientation kept: the contour is in the upper half
    assert np.nonzero(ref_px)[0].mean() < crop.shape[0] / 2


def test_overlay_refuses_volumes_on_different_grids():
    image = Volume(np.zeros((10, 10, 10), np.float32), np.eye(4))
    ref = Volume(np.zeros((10, 10, 10), np.uint8), np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(GeometryMismatchError, match="not on the grid"):
        render_overlay(image, ref, None, {1: "x"})
    with pytest.raises(ValueError, match="reference or a prediction"):
        render_overlay(image, None, None, {1: "x"})
