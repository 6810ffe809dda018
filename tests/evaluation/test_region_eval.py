"""``medseg evaluate --regions``: per-region metrics on a hand-made BraTS-like pair.

Labels 1 necrosis, 2 oedema, 3 (absent everywhere), 4 enhancing on a 6x6x6 grid of 1 mm voxels.
Regions: whole {1, 2, 3, 4}, core {1, 3, 4}, enhancing {4}.

Reference: oedema in the cube [1:5]^3 (64 voxels), necrosis at [2:4, 2:4, 2] (4 voxels) and
enhancing tumour at [2:4, 2:4, 3] (4 voxels): whole 64, core 8, enhancing 4 voxels.

``case_a``'s prediction confuses necrosis and oedema inside the whole tumour: the necrosis is
predicted as oedema, and the oedema at [1:3, 1:3, 1] (4 voxels) as necrosis.

* whole: the same 64 voxels: Dice 1;
* core: 8 predicted voxels (enhancing + the wrong necrosis), 8 reference voxels, 4 in common:
  Dice 2 x 4 / 16 = 0.5, IoU 4 / 12 = 1/3, volumes 0.008 ml each;
* enhancing: the same 4 voxels: Dice 1.

``case_b``'s prediction equals its reference (every Dice 1), so over the two cases the core Dice has
mean 0.75 and sample sd sqrt(2 x 0.25²) = 0.3536.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medseg.cli.main import main
from medseg.config.schema import RegionConfig
from medseg.errors import ConfigError, InputNotFoundError
from medseg.evaluation import evaluate
from medseg.evaluation.regions_eval import (
    RegionEvaluationResult,
    RegionLesionEvaluationResult,
    load_regions,
    measure_regions,
)
from medseg.evaluation.results import CSV_COLUMNS, METRIC_COLUMNS, EvaluationResult
from tests.cli_checks import one_error_line
from tests.evaluation.synthetic import write_labels

AFFINE = np.eye(4)
REGIONS = [
    {"name": "whole", "labels": [1, 2, 3, 4], "value": 2},
    {"name": "core", "labels": [1, 3, 4], "value": 1},
    {"name": "enhancing", "labels": [4], "value": 4},
]


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def brats_pair() -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, reference)`` of case_a (see the module docstring)."""
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[1:5, 1:5, 1:5] = 2
    ref[2:4, 2:4, 2] = 1
    ref[2:4, 2:4, 3] = 4
    pred = ref.copy()
    pred[ref == 1] = 2
    pred[1:3, 1:3, 1] = 1
    return pred, ref


def write_cases(root: Path) -> tuple[Path, Path]:
    pred, ref = brats_pair()
    for case, p, r in (("case_a", pred, ref), ("case_b", ref, ref)):
        write_labels(root / "ref" / f"{case}.nii.gz", r, AFFINE)
        write_labels(root / "pred" / f"{case}.nii.gz", p, AFFINE)
    return root / "pred", root / "ref"


def pipeline_dict(regions: list | None = REGIONS, manifest: str = "no_such_dir/dataset.json") -> dict:
    config = {
        "name": "brats",
        "data": {"manifest": manifest},
        "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [4, 8]}},
        "loss": {"name": "region_dice_bce"},
        "training": {"patch_size": [16, 16, 16], "epochs": 1},
    }
    if regions is not None:
        config["regions"] = regions
    return config


def write_dataset_json(path: Path, with_training: bool = True) -> Path:
    data = {
        "name": "BraTS-like",
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "whole": [1, 2, 3, 4], "core": [1, 3, 4], "enhancing": [4]},
        "regions_class_order": [2, 1, 4],
    }
    if with_training:
        data["training"] = [{"image": "./b_001.nii.gz", "label": "./b_001_seg.nii.gz"}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _named(regions: list[RegionConfig] | None) -> list[tuple[str, list[int], int]]:
    return [(r.name, r.labels, r.value) for r in regions or []]


EXPECTED = [("whole", [1, 2, 3, 4], 2), ("core", [1, 3, 4], 1), ("enhancing", [4], 4)]


# -- metrics -----------------------------------------------------------------------------------
def test_confusing_necrosis_and_oedema_costs_the_core_only():
    pred, ref = brats_pair()
    m = measure_regions(pred, ref, (1.0, 1.0, 1.0), load_regions(REGIONS))
    assert list(m) == ["whole", "core", "enhancing"]
    assert m["whole"].dice == 1.0 and m["enhancing"].dice == 1.0
    assert m["core"].dice == pytest.approx(0.5)
    assert m["core"].iou == pytest.approx(1 / 3)
    assert m["core"].size_pred == m["core"].size_ref == pytest.approx(8.0)  # mm³
    assert m["whole"].size_ref == pytest.approx(64.0)


def test_a_region_of_labels_absent_from_both_maps_is_empty_in_both():
    pred, ref = brats_pair()
    m = measure_regions(pred, ref, (1.0, 1.0, 1.0), [RegionConfig(name="cyst", labels=[3, 7], value=3)])
    assert (m["cyst"].dice, m["cyst"].hd95, m["cyst"].nsd) == (1.0, 0.0, 1.0)
    assert m["cyst"].pred_empty and m["cyst"].ref_empty


def test_a_region_missed_by_the_prediction_follows_the_empty_prediction_rule():
    pred, ref = brats_pair()
    m = measure_regions(np.zeros_like(pred), ref, (1.0, 1.0, 1.0), load_regions(REGIONS[2:]))
    assert m["enhancing"].dice == 0.0 and m["enhancing"].hd95 == float("inf")


# -- the evaluation folder ---------------------------------------------------------------------
def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_columns_summary_and_table_have_the_worked_values(tmp_path, capsys):
    pred, ref = write_cases(tmp_path)
    source = tmp_path / "pipeline.yaml"
    source.write_text(yaml.safe_dump(pipeline_dict()))
    out = tmp_path / "eval"
    argv = ["evaluate", "--pred", str(pred), "--ref", str(ref), "--output", str(out)]
    assert main([*argv, "--regions", str(source)]) == 0
    rows = _rows(out)
    header = list(rows[0])
    extra = [f"region:{r['name']}:{m}" for r in REGIONS for m in METRIC_COLUMNS]
    assert header == [*CSV_COLUMNS, *extra]
    assert len(rows) == 2 * 3  # per case and class (labels 1, 2, 4), as without regions
    for row in rows:
        core = 0.5 if row["case"] == "case_a" else 1.0
        assert float(row["region:core:dice"]) == pytest.approx(core)
        assert float(row["region:whole:dice"]) == 1.0 and float(row["region:enhancing:dice"]) == 1.0
    a = next(r for r in rows if r["case"] == "case_a")
    assert float(a["region:core:iou"]) == pytest.approx(1 / 3)
    assert float(a["region:core:volume_ref_ml"]) == pytest.approx(0.008)
    summary = json.loads((out / "summary.json").read_text())
    core = summary["regions"]["core"]
    assert (core["labels"], core["value"], core["n_cases"]) == ([1, 3, 4], 1, 2)
    assert core["metrics"]["dice"]["mean"] == pytest.approx(0.75)
    assert core["metrics"]["dice"]["std"] == pytest.approx(np.sqrt(2 * 0.25**2))
    assert summary["regions"]["whole"]["metrics"]["dice"]["mean"] == 1.0
    settings = json.loads((out / "evaluation.json").read_text())
    assert _named([RegionConfig(**r) for r in settings["regions"]]) == EXPECTED
    printed = capsys.readouterr().out
    assert "| core {1, 3, 4} | 2 | 0.750 ± 0.354 |" in printed
    assert "| whole {1, 2, 3, 4} | 2 | 1.000 ± 0.000 |" in printed


def test_without_regions_nothing_changes(tmp_path):
    pred, ref = write_cases(tmp_path)
    plain = evaluate(pred, ref, output=tmp_path / "plain")
    regions = evaluate(pred, ref, output=tmp_path / "regions", regions=REGIONS)
    assert type(plain) is EvaluationResult and isinstance(regions, RegionEvaluationResult)
    assert "regions" not in plain.summary and "regions" not in plain.settings
    plain_rows, region_rows = _rows(tmp_path / "plain"), _rows(tmp_path / "regions")
    assert list(plain_rows[0]) == list(CSV_COLUMNS)
    assert [{c: r[c] for c in CSV_COLUMNS} for r in region_rows] == plain_rows
    assert regions.summary["classes"] == plain.summary["classes"]


def test_regions_with_lesions_keep_the_lesion_columns(tmp_path):
    pred, ref = write_cases(tmp_path)
    result = evaluate(pred, ref, output=tmp_path / "eval", regions=REGIONS, lesions=True)
    assert isinstance(result, RegionLesionEvaluationResult)
    header = list(_rows(tmp_path / "eval")[0])
    assert "lesion_dice" in header and "region:enhancing:rel_volume_diff" in header
    assert header[-1] == "region:enhancing:lesion_f1@0.5"  # lesions per region too (test_region_lesions)
    assert header.index("region:enhancing:rel_volume_diff") < header.index("region:whole:lesion_dice")
    assert (tmp_path / "eval" / "lesions.json").is_file()
    assert result.summary["regions"]["core"]["metrics"]["dice"]["mean"] == pytest.approx(0.75)


# -- where the regions come from ---------------------------------------------------------------
def test_a_run_folder_gives_the_regions_its_config_records(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(pipeline_dict()))
    assert _named(load_regions(run)) == EXPECTED


def test_a_pipeline_yaml_gives_its_regions_else_its_manifests(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(pipeline_dict()))
    assert _named(load_regions(own)) == EXPECTED
    write_dataset_json(tmp_path / "data" / "dataset.json")
    inherited = tmp_path / "inherited.yaml"
    inherited.write_text(yaml.safe_dump(pipeline_dict(regions=None, manifest="data/dataset.json")))
    assert _named(load_regions(inherited)) == EXPECTED


@pytest.mark.parametrize("with_training", [True, False])
def test_a_dataset_json_gives_its_regions(tmp_path, with_training):
    path = write_dataset_json(tmp_path / "dataset.json", with_training)
    assert _named(load_regions(path)) == EXPECTED


@pytest.mark.parametrize(
    ("make", "error", "needle"),
    [
        (lambda d: d / "missing", InputNotFoundError, "no such region source"),
        (lambda d: _write(d / "run" / "log.txt", "").parent, ConfigError, "is not a run folder"),
        (lambda d: _write(d / "notes.txt", "just words"), ConfigError, "holds no regions"),
        (lambda d: _write(d / "bad.json", "{not json"), ConfigError, "cannot read regions from"),
        (lambda d: _write(d / "x.yaml", "labels: {1: a}"), ConfigError, "is neither a pipeline YAML"),
        (
            lambda d: _write(d / "p.yaml", yaml.safe_dump(pipeline_dict(regions=None, manifest="m.json"))),
            InputNotFoundError,
            "no such manifest",
        ),
    ],
)
def test_an_unreadable_or_unknown_source_is_refused_in_one_line(tmp_path, capsys, make, error, needle):
    pred, ref = write_cases(tmp_path / "cases")
    source = make(tmp_path / "src" if needle != "no such region source" else tmp_path)
    code = main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--regions", str(source)])
    assert code == error.exit_code
    one_error_line(capsys, "medseg evaluate: error:", needle)


def test_a_source_without_regions_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(pipeline_dict(regions=None)))
    with pytest.raises(ConfigError, match="declares no regions"):  # a run records its regions
        load_regions(run)
    with pytest.raises(InputNotFoundError):  # a pipeline without regions: its (missing) manifest's
        load_regions(run / "config.yaml")
    dataset = tmp_path / "plain.json"
    training = [{"image": "./a.nii.gz", "label": "./a_seg.nii.gz"}]
    dataset.write_text(json.dumps({"labels": {"0": "background", "1": "a"}, "training": training}))
    with pytest.raises(ConfigError, match="declares no regions"):
        load_regions(dataset)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
