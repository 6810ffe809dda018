"""Pipeline config schema: unknown keys rejected by name, overrides, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medseg.config import load_pipeline
from medseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {
    "name": "x",
    "data": {"manifest": "m.json"},
    "model": {"name": "unet", "spatial_dims": 3},
    "training": {"patch_size": [16, 16, 16]},
}


def test_every_shipped_pipeline_validates():
    for p in sorted((REPO / "pipelines").glob("*.yaml")):
        cfg = load_pipeline(p)
        assert Path(cfg.data.manifest).is_file(), p  # relative to the pipeline's folder


def test_unknown_keys_are_named(tmp_path):
    bad = {**BASE, "trainig": {}, "model": {"name": "unet", "spatial_dims": 3, "parms": {}}}
    with pytest.raises(ConfigError) as err:
        load_pipeline(_write(tmp_path, bad))
    assert "trainig: unknown key" in str(err.value)
    assert "model.parms: unknown key" in str(err.value)


def test_values_are_validated(tmp_path):
    bad = {**BASE, "training": {"patch_size": [16, 16], "lr": -1}}
    with pytest.raises(ConfigError) as err:
        load_pipeline(_write(tmp_path, bad))
    assert "training.lr" in str(err.value)
    with pytest.raises(ConfigError, match="patch_size has 2 sizes but the model is 3D"):
        load_pipeline(_write(tmp_path, {**BASE, "training": {"patch_size": [16, 16]}}))


def test_overrides_and_relative_manifest(tmp_path):
    cfg = load_pipeline(_write(tmp_path, BASE), ["training.epochs=7", "model.params.features=[4, 8]"])
    assert cfg.training.epochs == 7
    assert cfg.model.params == {"features": [4, 8]}
    assert cfg.data.manifest == str((tmp_path / "m.json").resolve())
    with pytest.raises(ConfigError, match="bad override"):
        load_pipeline(_write(tmp_path, BASE), ["training.epochs"])


def test_yaml_is_never_executed(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(p)
