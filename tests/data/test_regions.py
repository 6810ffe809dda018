"""Regions: label maps to region targets and back (BraTS-style overlapping regions), and regions
declared by an MSD dataset.json the nnU-Net v2 way."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.config.schema import RegionConfig
from medseg.data.manifest import load_manifest
from medseg.data.regions import check_regions, paint, regions_to_targets
from medseg.errors import ConfigError

#: BraTS (1 necrosis, 2 oedema, 4 enhancing), painted whole -> core -> enhancing as nnU-Net does.
BRATS = [
    RegionConfig(name="whole tumour", labels=[1, 2, 4], value=2),
    RegionConfig(name="tumour core", labels=[1, 4], value=1),
    RegionConfig(name="enhancing tumour", labels=[4], value=4),
]


def _brats_labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(9, 8, 7))


def test_targets_are_overlapping_unions():
    labels = np.array([[0, 1], [2, 4]], dtype=np.uint8)
    targets = regions_to_targets(labels, BRATS)
    assert targets.dtype == np.float32 and targets.shape == (3, 2, 2)
    np.testing.assert_array_equal(targets[0], [[0, 1], [1, 1]])  # whole: 1, 2, 4
    np.testing.assert_array_equal(targets[1], [[0, 1], [0, 1]])  # core: 1, 4
    np.testing.assert_array_equal(targets[2], [[0, 0], [0, 1]])  # enhancing: 4


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_round_trip_through_perfect_logits(kind):
    """labels -> region targets -> perfect logits -> sigmoid > 0.5 painted in order == labels."""
    labels = _brats_labels()
    if kind == "torch":
        targets = regions_to_targets(torch.from_numpy(labels), BRATS)
        logits = 20.0 * (2 * targets - 1)
        painted = paint(torch.sigmoid(logits) > 0.5, BRATS).numpy()
    else:
        targets = regions_to_targets(labels, BRATS)
        logits = 20.0 * (2 * targets - 1)
        painted = paint(1 / (1 + np.exp(-logits)) > 0.5, BRATS)
    np.testing.assert_array_equal(painted, labels)


def test_paint_order_decides_overlaps():
    masks = np.ones((3, 2, 2), dtype=bool)  # every region everywhere: the last one wins
    assert (paint(masks, BRATS) == 4).all()
    assert (paint(masks, BRATS[::-1]) == 2).all()  # reversed order: whole tumour painted last
    # in the wrong order the round trip breaks, which is what check_regions warns about
    assert not np.array_equal(
        paint(regions_to_targets(_brats_labels(), BRATS[::-1]) > 0, BRATS[::-1]), _brats_labels()
    )
    with pytest.raises(ValueError, match="2 region masks for 3 regions"):
        paint(masks[:2], BRATS)


def test_batched_targets_for_the_loss():
    labels = torch.from_numpy(np.stack([_brats_labels(0), _brats_labels(1)])).long()
    targets = regions_to_targets(labels, BRATS, channel_axis=1)
    assert targets.shape == (2, 3, 9, 8, 7) and targets.dtype == torch.float32
    assert torch.equal(targets[1, 2], (labels[1] == 4).float())


def test_check_regions_refuses_unknown_labels_and_warns_about_lost_labels(caplog):
    labels = {0: "background", 1: "necrosis", 2: "oedema", 4: "enhancing"}
    check_regions(BRATS, labels, "pipeline.yaml")  # exact round trip: no warning
    assert not caplog.records
    with pytest.raises(ConfigError, match=r"region 'core' lists label value\(s\) \[3\]") as err:
        check_regions([RegionConfig(name="core", labels=[1, 3], value=1)], labels, "pipeline.yaml")
    assert "\n" not in str(err.value) and err.value.hint
    with caplog.at_level(logging.WARNING):
        check_regions(BRATS[::-1], labels, "pipeline.yaml")
    assert "label 4 (enhancing) is painted back as 2" in caplog.text


def _write_msd(root, labels: dict, order: list | None) -> str:
    affine = np.eye(4)
    lab = np.zeros((6, 6, 4), dtype=np.uint8)
    lab[1:5, 1:5, 1:3], lab[2:4, 2:4, 1:3], lab[3, 3, 2] = 1, 2, 3
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 4, 2), np.float32), affine), root / "b_001.nii.gz")
    nib.save(nib.Nifti1Image(lab, affine), root / "b_001_seg.nii.gz")
    data = {
        "name": "BraTS-like",
        "channel_names": {"0": "T1", "1": "FLAIR"},
        "labels": labels,
        "training": [{"image": "./b_001.nii.gz", "label": "./b_001_seg.nii.gz"}],
    }
    if order is not None:
        data["regions_class_order"] = order
    (root / "dataset.json").write_text(json.dumps(data))
    return str(root / "dataset.json")


NNUNET_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def test_msd_dataset_json_with_regions_class_order(tmp_path):
    manifest = load_manifest(_write_msd(tmp_path, NNUNET_LABELS, [1, 2, 3]))
    assert [(r.name, r.labels, r.value) for r in manifest.regions] == [
        ("whole tumor", [1, 2, 3], 1),
        ("tumor core", [2, 3], 2),
        ("enhancing tumor", [3], 3),
    ]
    assert sorted(manifest.labels) == [0, 1, 2, 3] and manifest.labels[3] == "enhancing tumor"
    assert manifest.channels == ["T1", "FLAIR"] and manifest.channels_in_one_file
    label = np.asarray(nib.load(manifest.cases[0].label).dataobj)
    assert np.array_equal(paint(regions_to_targets(label, manifest.regions) > 0, manifest.regions), label)


def test_msd_dataset_json_plain_labels_have_no_regions(tmp_path):
    plain = load_manifest(_write_msd(tmp_path, {"0": "background", "1": "a", "2": "b", "3": "c"}, None))
    assert plain.regions is None and plain.labels[2] == "b"
    v2 = load_manifest(_write_msd(tmp_path, {"background": 0, "a": 1, "b": 2, "c": 3}, None))
    assert v2.regions is None and v2.labels == {0: "background", 1: "a", 2: "b", 3: "c"}


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (None, "labels declare regions (lists of values) but no regions_class_order list"),
        ([1, 2], "regions_class_order has 2 values for 3 regions"),
        ([1, 1, 3], "two regions share the value 1"),
    ],
)
def test_msd_regions_refused_in_one_line(tmp_path, order, message):
    with pytest.raises(ConfigError) as err:
        load_manifest(_write_msd(tmp_path, NNUNET_LABELS, order))
    assert message in str(err.value) and "\n" not in str(err.value)
