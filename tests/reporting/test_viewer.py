"""The report's viewer data: downsampling to the voxel budget, NIfTI data URLs, which cases, the asset."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import nibabel
import numpy as np
import pytest

from medseg.evaluation.results import load_evaluation
from medseg.reporting import viewer
from medseg.reporting.report import build_report
from medseg.reporting.viewer import downsample, downsample_factors, viewer_case, viewer_section
from tests.reporting.conftest import build_evaluation

REPO = Path(__file__).resolve().parents[2]


def _nifti(url: str) -> nibabel.Nifti1Image:
    assert url.startswith("data:application/gzip;base64,")
    raw = gzip.decompress(base64.b64decode(url.split(",", 1)[1]))
    return nibabel.Nifti1Image.from_bytes(raw)


def _viewer_data(text: str) -> dict:
    match = re.search(r'<script type="application/json" id="medseg-viewer-data">(.*?)</script>', text, re.S)
    assert match is not None
    return json.loads(match.group(1))


@pytest.mark.parametrize(
    ("shape", "budget", "factors"),
    [
        ((30, 26, 14), 2_000_000, (1, 1, 1)),
        ((512, 512, 20), 2_000_000, (2, 2, 1)),  # in-plane first: the 20 slices stay
        ((512, 512, 512), 2_000_000, (5, 4, 4)),
        ((7, 5, 3), 10, (4, 3, 2)),
    ],
)
def test_downsample_factors_fit_the_budget_reducing_the_largest_axis(shape, budget, factors):
    assert downsample_factors(shape, budget) == factors
    assert np.prod([-(-n // f) for n, f in zip(shape, factors)]) <= budget


def test_downsample_keeps_labels_and_averages_intensities():
    labels = np.zeros((6, 4, 3), np.int64)
    labels[3:, :, :] = 2
    labels[0, 0, 0] = 7  # off the block centres: gone, no blend with its neighbours
    small = downsample(labels, (2, 2, 1), labels=True)
    assert small.shape == (3, 2, 3) and set(np.unique(small)) == {0, 2}
    np.testing.assert_array_equal(small[:, 0, 0], [0, 2, 2])  # centres 1, 3, 5 of the 6 voxels
    ramp = np.arange(5, dtype=np.float32).reshape(5, 1, 1) * np.ones((5, 2, 2))
    mean = downsample(ramp, (2, 1, 1), labels=False)
    np.testing.assert_allclose(mean[:, 0, 0], [0.5, 2.5, 4.0])  # last block padded with the edge value


def test_downsampled_grid_sits_on_the_block_centres():
    affine = np.array([[-0.7, 0, 0, 40.0], [0, -0.9, 0, 25.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    small = viewer._downsampled_affine(affine, (2, 3, 1))
    for index in ([0, 0, 0], [4, 2, 7]):
        centre = np.array(index) * [2, 3, 1] + [0.5, 1.0, 0.0]  # (f - 1) / 2 into the block
        np.testing.assert_allclose(small @ [*index, 1], affine @ [*centre, 1])


def test_viewer_case_downsamples_large_volumes_and_states_the_factor(evaluation_dir):
    result = load_evaluation(evaluation_dir)
    full = viewer_case(result, "case_000")
    ref = nibabel.load(result.rows[0].ref_path)
    assert full.factors == (1, 1, 1) and "Full resolution (30 x 26 x 14 voxels)" in full.note
    reference = _nifti(full.layers["reference"])
    np.testing.assert_array_equal(np.asarray(reference.dataobj), np.asarray(ref.dataobj))
    np.testing.assert_allclose(reference.affine, ref.affine, atol=1e-5)
    scan = _nifti(full.layers["scan"])
    assert scan.get_data_dtype() == np.uint8 and float(scan.header["cal_max"]) == 255.0
    small = viewer_case(result, "case_000", budget=2000)
    assert small.factors == (3, 2, 1) and "Downsampled by 3 x 2 x 1" in small.note
    for key in ("scan", "reference", "prediction"):
        assert _nifti(small.layers[key]).shape == (10, 13, 14)
    assert set(np.unique(np.asarray(_nifti(small.layers["reference"]).dataobj))) <= {0, 1, 2}


def test_report_viewer_holds_every_case_of_a_small_evaluation_worst_first(evaluation_dir, tmp_path):
    text = build_report(evaluation_dir, tmp_path / "r.html").read_text()
    data = _viewer_data(text)
    cases = [c["case"] for c in data["cases"]]
    means = load_evaluation(evaluation_dir).case_mean("dice")
    assert cases == sorted(means, key=means.get) and cases[0] == "case_001"
    assert data["luts"]["prediction"]["I"] == [0, 1, 2] and data["luts"]["prediction"]["A"][0] == 0
    assert text.count('<select id="medseg-nv-case">') == 1
    assert "niivue" not in build_report(evaluation_dir, tmp_path / "n.html", viewer=False).read_text().lower()


def test_large_evaluations_put_only_the_worst_and_best_cases_into_the_viewer(tmp_path, monkeypatch):
    evaluation = build_evaluation(tmp_path, n_cases=7, with_images=False)
    monkeypatch.setattr(viewer, "MAX_VIEWER_CASES", 4)
    text = build_report(evaluation, tmp_path / "r.html", n_cases=2).read_text()
    data = _viewer_data(text)
    assert len(data["cases"]) == 4 and "the worst and best cases" in text
    assert all(c["layers"]["scan"] is None and "No scan" in c["note"] for c in data["cases"])


def test_viewer_section_leaves_out_unreadable_cases(evaluation_dir, tmp_path, caplog):
    result = load_evaluation(evaluation_dir)
    row = next(r for r in result.rows if r.case == "case_002")
    moved = tmp_path / "gone.nii.gz"
    Path(row.pred_path).rename(moved)
    try:
        html = viewer_section(result, ["case_002", "case_003"])
    finally:
        moved.rename(row.pred_path)
    assert [c["case"] for c in _viewer_data(html)["cases"]] == ["case_003"]
    assert "case_002 is left out of the viewer" in caplog.text


def test_the_vendored_niivue_ships_with_its_licence():
    assets = Path(viewer.__file__).parent / "assets"
    script = viewer.niivue_script()
    assert len(script) > 1_000_000 and "</script" not in script
    assert "Niivue" in script and "loadFromBase64" in script
    licence = (assets / "NIIVUE_LICENSE.txt").read_text()
    assert "BSD 2-Clause License" in licence and "Copyright (c) 2021, Niivue" in licence
    assert viewer.NIIVUE_VERSION in (assets / "README.md").read_text()
    package_data = re.search(r"(?m)^medseg = \[(.*)\]$", (REPO / "pyproject.toml").read_text())
    assert package_data is not None and '"reporting/assets/*"' in package_data.group(1)
