"""A bad model or loss in a pipeline is refused as soon as the config loads, naming the key and
suggesting the closest valid choice, before any case is read."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

# imported up front: the timing below measures the check, not the first import of torch
import medseg.losses
import medseg.models
from medseg.cli.main import main
from medseg.config import PipelineConfig, config_from_dict, load_pipeline
from medseg.errors import ConfigError
from medseg.training.config_check import check_registries

BASE = {
    "name": "bad",
    "data": {"manifest": "no_such_dir/dataset.json"},  # nothing exists: reading it would fail
    "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [4, 8]}},
    "loss": {"name": "dice_focal", "params": {"gamma": 2}},
    "training": {"patch_size": [16, 16, 16], "epochs": 1},
}

BAD = [
    pytest.param(
        {"model": {"name": "unt"}}, "unknown model.name 'unt' (did you mean 'unet'?)", id="model-name"
    ),
    pytest.param(
        {"model": {"params": {"featurs": [4, 8]}}},
        "unknown key model.params.featurs (did you mean 'features'?)",
        id="model-param",
    ),
    pytest.param(
        {"loss": {"name": "dice_focall"}},
        "unknown loss.name 'dice_focall' (did you mean 'dice_focal'?)",
        id="loss-name",
    ),
    pytest.param(
        {"loss": {"params": {"gama": 2}}},
        "unknown key loss.params.gama (did you mean 'gamma'?)",
        id="loss-param",
    ),
]


def _config(change: dict) -> dict:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for section, values in change.items():
        data[section].update(values)
    return data


@pytest.fixture
def no_data_work(monkeypatch):
    """Fail the test loudly if anything reads the manifest or a case."""

    def data_work(*args, **kwargs):
        raise AssertionError("data work happened before the config was checked")

    import medseg.data.cases
    import medseg.data.manifest
    import medseg.training.setup

    for module, name in [
        (medseg.training.setup, "prepare_data"),
        (medseg.training.setup, "load_manifest"),
        (medseg.training.setup, "load_case"),
        (medseg.data.manifest, "load_manifest"),
        (medseg.data.cases, "load_case"),
    ]:
        monkeypatch.setattr(module, name, data_work)


@pytest.mark.parametrize(("change", "needle"), BAD)
def test_medseg_train_refuses_before_any_case_is_read(tmp_path, capsys, no_data_work, change, needle):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump(_config(change)))
    start = time.perf_counter()
    code = main(["train", str(pipeline), "-o", str(tmp_path / "run")])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == ConfigError.exit_code, err
    assert len(lines) == 1, err
    assert needle in lines[0] and "valid" in lines[0]
    assert str(pipeline) in lines[0]  # which file
    assert seconds < 2.0  # a guard only: the point is that no data work was reached
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("change", "needle"), BAD)
def test_trainer_refuses_a_config_built_in_python(tmp_path, no_data_work, change, needle):
    from medseg.training import Trainer

    config = PipelineConfig.model_validate(_config(change))  # schema only, registries unchecked
    with pytest.raises(ConfigError) as err:
        Trainer(config, tmp_path / "run", device="cpu")
    assert needle in str(err.value)


def test_valid_config_and_shipped_pipelines_pass():
    check_registries(config_from_dict(BASE))
    for p in sorted((Path(__file__).resolve().parents[2] / "pipelines").glob("*.yaml")):
        check_registries(load_pipeline(p))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"model": {"name": "UNet"}}, None),  # the model registry ignores case, as build_model
        ({"model": {"name": "vgg16"}}, "unknown model.name 'vgg16'; valid: unet, dynunet"),
        ({"model": {"params": {"features": [4]}}}, "features needs at least 2"),
        ({"model": {"spatial_dims": 2}, "training": {"patch_size": [16, 16]}}, None),
        ({"loss": {"params": {"gamma": -1}}}, "loss.params for loss 'dice_focal': gamma"),
        ({"training": {"deep_supervision": True}}, "training.deep_supervision: model 'unet' has no"),
        ({"loss": {"name": "tversky", "params": {"gamma": 2}}}, "unknown key loss.params.gamma; valid keys"),
    ],
)
def test_other_registry_errors(change, needle):
    data = _config(change)
    if needle is None:
        check_registries(config_from_dict(data))
        return
    with pytest.raises(ConfigError) as err:
        check_registries(config_from_dict(data, "p.yaml"), "p.yaml")
    assert str(err.value).startswith("p.yaml: ")
    assert needle in str(err.value)


def test_dynunet_deep_supervision_passes():
    data = _config({"model": {"name": "dynunet", "params": {}}, "training": {"deep_supervision": True}})
    config = config_from_dict(data)
    check_registries(config)
    assert config.training.deep_supervision


def test_overrides_are_checked_too(tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match=r"model\.params\.featurs \(did you mean 'features'\?\)"):
        check_registries(load_pipeline(pipeline, ["model.params.featurs=[4, 8]"]))


def test_schema_descriptions_name_every_registered_model_and_loss():
    """The schema (no torch at import) lists the names in its descriptions; they must not drift."""
    from medseg.config import LossConfig, ModelConfig

    for name in medseg.models.MODELS:
        assert name in ModelConfig.model_fields["name"].description
    for name in medseg.losses.LOSSES:
        assert name in LossConfig.model_fields["name"].description


def test_loading_the_config_package_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, medseg.config, medseg.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
