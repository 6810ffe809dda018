"""The dataset fingerprint: geometry after RAS reorientation, class and intensity statistics checked
against numpy on synthetic datasets of known geometry, problems reported, the cache, parallel runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import InputNotFoundError, MedsegError
from medseg.planning import case_stats, compute_fingerprint
from medseg.planning.summary import looks_like

REPO = Path(__file__).resolve().parents[2]

# case "lps": i -> Left (0.5 mm), j -> Posterior (0.8 mm), k -> Superior (2 mm)
LPS = np.array([[-0.5, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]])
# case "sla": i -> Superior (2 mm), j -> Left (0.5 mm), k -> Anterior (0.8 mm): RAS axes are (j, k, i)
SLA = np.array([[0, -0.5, 0, 3.0], [0, 0, 0.8, -7.0], [2.0, 0, 0, 1.0], [0, 0, 0, 1]])


def _save(path: Path, arr: np.ndarray, affine: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return str(path)


def _label(shape, boxes) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.uint8)
    for value, box in boxes:
        lab[box] = value
    return lab


def _msd(root: Path, cases: dict, labels=None, modality="MRI") -> Path:
    """An MSD folder: cases = {id: (image, label, affine)}."""
    training = []
    for cid, (img, lab, aff) in cases.items():
        _save(root / "imagesTr" / f"{cid}.nii.gz", img, aff)
        _save(root / "labelsTr" / f"{cid}.nii.gz", lab, aff)
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    labels = labels or {"0": "background", "1": "a", "2": "b"}
    meta = {"name": "synthetic", "modality": {"0": modality}, "labels": labels, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _ras_reference(affine: np.ndarray, shape, mask: np.ndarray):
    """Centroid as a fraction of the RAS extent and bounding-box size (mm), from world coordinates."""
    idx = np.argwhere(mask).astype(float)
    world = (affine[:3, :3] @ idx.T).T + affine[:3, 3]
    corners = np.array(
        [[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)]
    )
    cw = (affine[:3, :3] @ corners.T).T + affine[:3, 3]
    spacing_ras = np.abs(affine[:3, :3]).sum(axis=1)  # each world axis is one voxel axis here
    lo = cw.min(axis=0) - spacing_ras / 2
    extent = cw.max(axis=0) - cw.min(axis=0) + spacing_ras
    centroid = (world.mean(axis=0) - lo) / extent
    box = world.max(axis=0) - world.min(axis=0) + spacing_ras
    return centroid, box, spacing_ras


@pytest.fixture(scope="module")
def geometry_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo")
    rng = np.random.default_rng(7)
    img1 = rng.normal(100, 20, size=(10, 12, 8)).astype(np.float32)
    lab1 = _label(
        (10, 12, 8), [(1, np.s_[1:3, 2:5, 1:3]), (1, np.s_[6:9, 8:11, 5:7]), (2, np.s_[4:6, 1:4, 3:8])]
    )
    img2 = rng.integers(-1000, 1500, size=(9, 11, 7)).astype(np.int16)
    lab2 = _label((9, 11, 7), [(2, np.s_[0:3, 6:10, 1:2])])
    img3 = rng.normal(0, 1, size=(30, 30, 20)).astype(np.float32)  # more foreground than one sample
    lab3 = _label((30, 30, 20), [(1, np.s_[0:30, 0:30, 0:14])])
    aff3 = np.diag([1.0, 1.0, 1.0, 1.0])
    cases = {"lps": (img1, lab1, LPS), "sla": (img2, lab2, SLA), "big": (img3, lab3, aff3)}
    return _msd(root, cases), cases


def test_geometry_classes_and_intensities_against_numpy(geometry_set, tmp_path):
    root, cases = geometry_set
    fp = compute_fingerprint(root, workers=1, cache_dir=tmp_path)
    assert fp["source"] == str((root / "dataset.json").resolve())
    by_id = {c["id"]: c for c in fp["cases"]}
    assert by_id["lps"]["orientation"] == "LPS" and by_id["sla"]["orientation"] == "SLA"
    assert by_id["lps"]["shape"] == [10, 12, 8] and by_id["lps"]["spacing"] == pytest.approx([0.5, 0.8, 2.0])
    assert by_id["sla"]["shape"] == [11, 7, 9] and by_id["sla"]["spacing"] == pytest.approx([0.5, 0.8, 2.0])
    for cid in ("lps", "sla"):
        img, lab, aff = cases[cid]
        rec = by_id[cid]
        for value in np.unique(lab[lab > 0]):
            mask = lab == value
            centroid, box, spacing = _ras_reference(aff, lab.shape, mask)
            got = rec["classes"][str(value)]
            assert got["voxels"] == int(mask.sum())
            assert got["volume_mm3"] == pytest.approx(mask.sum() * np.prod(spacing))
            assert got["centroid_rel"] == pytest.approx(centroid, abs=1e-9)
            assert got["extent_mm"] == pytest.approx(box)
        fg = img[lab > 0].astype(np.float64)
        ch = rec["channels"][0]
        assert ch["foreground"] and ch["p00_5"] == pytest.approx(np.percentile(fg, 0.5))
        assert ch["p99_5"] == pytest.approx(np.percentile(fg, 99.5))
        assert (ch["mean"], ch["std"], ch["min"], ch["max"]) == pytest.approx(
            (fg.mean(), fg.std(), fg.min(), fg.max())
        )
    assert by_id["lps"]["classes"]["1"]["components"] == 2 and by_id["lps"]["classes"]["2"]["components"] == 1
    assert by_id["sla"]["channels"][0]["integer_valued"] and not by_id["lps"]["channels"][0]["integer_valued"]
    # the LPS case's j axis runs posterior: class 2 at j = 1..3 lies near the anterior end in RAS
    assert by_id["lps"]["classes"]["2"]["centroid_rel"] == pytest.approx([1 - 5 / 10, 1 - 2.5 / 12, 5.5 / 8])
    # summaries
    s = fp["summary"]
    spacings = np.array([[0.5, 0.8, 2.0], [0.5, 0.8, 2.0], [1.0, 1.0, 1.0]])
    assert s["median_spacing"] == pytest.approx(np.median(spacings, axis=0))
    assert s["spacing_p90"] == pytest.approx(np.percentile(spacings, 90, axis=0))
    assert s["anisotropy"] == pytest.approx(2.0 / 0.5)
    assert s["median_shape"] == [11, 12, 9]
    pooled = np.concatenate([cases[c][0][cases[c][1] > 0].astype(np.float64) for c in ("lps", "sla")])
    n_big = int((cases["big"][1] > 0).sum())
    assert s["channels"][0]["n_sampled"] == pooled.size + case_stats.SAMPLE_PER_CASE < pooled.size + n_big
    assert s["channels"][0]["min"] == pytest.approx(
        min(pooled.min(), cases["big"][0][cases["big"][1] > 0].min())
    )
    c1, c2 = s["classes"]["1"], s["classes"]["2"]
    assert (c1["cases_present"], c2["cases_present"]) == (2, 2)
    total1 = int((cases["lps"][1] == 1).sum()) + n_big
    total2 = int((cases["lps"][1] == 2).sum() + (cases["sla"][1] == 2).sum())
    assert (c1["voxels_total"], c1["frequency"]) == (total1, pytest.approx(total1 / (total1 + total2)))
    assert s["problems"] == [] and fp["dataset"]["n_labelled"] == 3 and not fp["dataset"]["is_2d"]


def test_pooled_percentiles_equal_numpy_when_every_voxel_is_sampled(geometry_set, tmp_path):
    _, cases = geometry_set
    small = {k: v for k, v in cases.items() if k != "big"}
    fp = compute_fingerprint(_msd(tmp_path / "small", small), workers=1, cache_dir=tmp_path)
    pooled = np.concatenate([img[lab > 0].astype(np.float64) for img, lab, _ in small.values()])
    ch = fp["summary"]["channels"][0]
    assert ch["n_sampled"] == pooled.size
    assert [ch["p00_5"], ch["p99_5"]] == pytest.approx(np.percentile(pooled, [0.5, 99.5]).tolist())
    assert [ch["mean"], ch["std"]] == pytest.approx([pooled.mean(), pooled.std()])


def test_2d_png_dataset(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    cases = []
    for i in range(2):
        img = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
        lab = np.zeros((20, 30), dtype=np.uint8)
        lab[5:9, 10 + i : 20] = 1
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
        Image.fromarray(lab).save(tmp_path / f"lab{i}.png")
        cases.append({"id": f"s{i}", "images": [f"img{i}.png"], "label": f"lab{i}.png"})
    manifest = {"name": "pics", "labels": {0: "background", 1: "cell"}, "cases": cases}
    (tmp_path / "pics.json").write_text(json.dumps(manifest))
    fp = compute_fingerprint(tmp_path / "pics.json", workers=1, use_cache=False)
    assert fp["dataset"]["is_2d"] and fp["summary"]["is_2d"]
    rec = fp["cases"][0]
    assert rec["is_2d"] and rec["shape"] == [20, 30, 1] and rec["spacing"] == [1.0, 1.0, 1.0]
    assert rec["classes"]["1"]["voxels"] == 40 and rec["classes"]["1"]["components"] == 1
    assert rec["foreground_bbox_vox"] == [[5, 9], [10, 20], [0, 1]]
    assert fp["summary"]["channels"][0]["looks_like"] == "8bit"
    assert fp["summary"]["anisotropy"] == 1.0


def test_problems_are_reported_not_raised(tmp_path):
    rng = np.random.default_rng(5)
    eye = np.eye(4)
    shifted = eye.copy()
    shifted[0, 3] = 3.0
    cases = []
    for cid, lab_aff, t2_shape, extra in [
        ("ok", eye, (8, 8, 8), 0),
        ("moved", shifted, (8, 8, 8), 0),
        ("t2off", eye, (8, 8, 6), 0),
        ("odd", eye, (8, 8, 8), 5),
    ]:
        lab = _label((8, 8, 8), [(1, np.s_[2:5, 2:5, 2:5])])
        lab[0, 0, 0] = extra
        t1 = _save(tmp_path / f"{cid}_t1.nii.gz", rng.normal(size=(8, 8, 8)).astype(np.float32), eye)
        t2 = _save(tmp_path / f"{cid}_t2.nii.gz", rng.normal(size=t2_shape).astype(np.float32), eye)
        lab_path = _save(tmp_path / f"{cid}_seg.nii.gz", lab, lab_aff)
        cases.append({"id": cid, "images": [t1, t2], "label": lab_path})
    manifest = {"labels": {0: "bg", 1: "lesion", 2: "oedema"}, "channels": ["T1", "T2"], "cases": cases}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    fp = compute_fingerprint(tmp_path / "m.json", workers=1, use_cache=False)
    problems = fp["summary"]["problems"]
    assert len(problems) == 4, problems
    assert "label grid" in problems[0] and "moved" in problems[0] and "ok" not in problems[0]
    assert "channels differ in grid" in problems[1] and "t2off" in problems[1]
    assert "class 2 (oedema) has no voxels" in problems[2]
    assert "label values 5" in problems[3] and "odd" in problems[3]
    by_id = {c["id"]: c for c in fp["cases"]}
    assert not by_id["moved"]["label_grid_agrees"] and by_id["moved"]["foreground_bbox_vox"] is None
    assert [c["foreground"] for c in by_id["moved"]["channels"]] == [False, False]
    assert [c["foreground"] for c in by_id["t2off"]["channels"]] == [True, False]
    assert by_id["t2off"]["channel_grids_agree"] is False and by_id["ok"]["channel_grids_agree"] is True
    assert fp["summary"]["channels"][1]["looks_like"] == "mr"


def test_cache_hit_and_invalidation_on_mtime(geometry_set, tmp_path, monkeypatch):
    root, _ = geometry_set
    calls = []
    real = case_stats.fingerprint_case

    def counting(case, manifest):
        calls.append(case.id)
        return real(case, manifest)

    monkeypatch.setattr(case_stats, "fingerprint_case", counting)
    first = compute_fingerprint(root, workers=1, cache_dir=tmp_path)
    assert sorted(calls) == ["big", "lps", "sla"]
    assert len(list((tmp_path / "fingerprints").glob("*.json"))) == 1
    calls.clear()
    second = compute_fingerprint(root, workers=1, cache_dir=tmp_path)
    assert calls == []
    first.pop("seconds"), second.pop("seconds")
    assert second == first
    label = root / "labelsTr" / "sla.nii.gz"
    st = label.stat()
    try:
        os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        compute_fingerprint(root, workers=1, cache_dir=tmp_path)
        assert calls == ["sla"]
    finally:
        os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_two_workers_equal_one(geometry_set):
    root, _ = geometry_set
    one = compute_fingerprint(root, workers=1, use_cache=False)
    two = compute_fingerprint(root, workers=2, use_cache=False)
    one.pop("seconds"), two.pop("seconds")
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_missing_and_unreadable_inputs_raise_one_line(geometry_set, tmp_path):
    with pytest.raises(InputNotFoundError, match=r"holds no dataset\.json"):
        compute_fingerprint(tmp_path, use_cache=False)
    _, cases = geometry_set
    broken = tmp_path / "broken"
    _msd(broken, {"lps": cases["lps"], "sla": cases["sla"]})
    (broken / "imagesTr" / "lps.nii.gz").write_bytes(b"not a nifti at all")
    for workers in (1, 2):  # the error of a worker process reaches the caller unchanged
        with pytest.raises(MedsegError) as err:
            compute_fingerprint(broken, workers=workers, use_cache=False)
        assert "lps.nii.gz" in str(err.value) and "\n" not in str(err.value)


def test_looks_like():
    base = {"p00_5": 0.0, "integer_valued": True, "image_min": 0.0, "image_max": 255.0}
    assert looks_like("CT", {**base, "integer_valued": False}) == "ct"
    assert looks_like(None, {**base, "p00_5": -900.0, "image_min": -1024.0}) == "ct"
    assert looks_like("MRI", base) == "8bit"
    assert looks_like("FLAIR", {**base, "image_max": 4000.0}) == "mr"
    assert looks_like("US", {**base, "integer_valued": False}) == "other"


def test_lidc_manifest_splits_by_patient():
    m = json.loads((REPO / "data_manifests" / "lidc_nodules.json").read_text())
    splits: dict[str, set[str]] = {}
    for c in m["cases"]:
        splits.setdefault(c["id"].rsplit("_", 1)[0], set()).add(c["split"])
    assert all(len(s) == 1 for s in splits.values())
    n_test = sum(s == {"test"} for s in splits.values())
    assert abs(n_test / len(splits) - 0.2) < 0.01 and {x for s in splits.values() for x in s} == {
        "train",
        "test",
    }


def test_channels_filled_with_copies_are_found_with_their_source(tmp_path):
    """TCGA-LGG-like: 3 sequences (typical foreground means 20, 120, 220); one case has FLAIR copied
    into both other channels, one post-contrast replaced by FLAIR, one pre-contrast replaced by
    post-contrast. Each copy group is found voxel for voxel, and its source is the member whose
    usual intensity the copy has (not the lowest index)."""
    rng = np.random.default_rng(3)
    shape = (12, 12, 6)
    lab = _label(shape, [(1, np.s_[3:8, 3:8, 1:4])])
    cases = {}
    for i in range(7):
        chans = [rng.normal(m, 5, size=shape).astype(np.float32) for m in (20.0, 120.0, 220.0)]
        if i == 4:
            chans = [chans[1]] * 3
        elif i == 5:
            chans[2] = chans[1]
        elif i == 6:
            chans[0] = chans[2]
        cases[f"c{i}"] = (np.stack(chans, axis=-1), lab, np.eye(4))
    root = _msd(tmp_path / "msd", cases, labels={"0": "background", "1": "lesion"})
    meta = json.loads((root / "dataset.json").read_text())
    meta["modality"] = {"0": "pre", "1": "FLAIR", "2": "post"}
    (root / "dataset.json").write_text(json.dumps(meta))
    fp = compute_fingerprint(root, workers=1)
    copies = {c["id"]: c["channel_copies"] for c in fp["cases"]}
    assert copies == {
        "c0": [],
        "c1": [],
        "c2": [],
        "c3": [],
        "c4": [[0, 1, 2]],
        "c5": [[1, 2]],
        "c6": [[0, 2]],
    }
    found = [
        {k: p[k] for k in ("source", "replaced", "case_ids")} for p in fp["summary"]["channel_substitutions"]
    ]
    assert found == [
        {"source": 1, "replaced": [0, 2], "case_ids": ["c4"]},
        {"source": 1, "replaced": [2], "case_ids": ["c5"]},
        {"source": 2, "replaced": [0], "case_ids": ["c6"]},
    ]
    assert case_stats.channel_copies([(np.zeros(shape), np.eye(4)), (np.ones(shape), np.eye(4))]) == []
    # sequences filled with zeros (or any constant) are missing, not copies: channel dropout's case
    zeros = [(chans[0], np.eye(4)), (np.zeros(shape), np.eye(4)), (np.zeros(shape), np.eye(4))]
    assert case_stats.channel_copies(zeros) == []
