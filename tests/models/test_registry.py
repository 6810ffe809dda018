"""Registry, parameter validation, save/load and the ``medseg models`` command."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.cli.main import main
from medseg.errors import ConfigError, CorruptFileError, InputNotFoundError
from medseg.models import (
    MODELS,
    build_from_config,
    build_model,
    count_parameters,
    list_models,
    load_model,
    required_divisor,
    save_model,
)
from medseg.models.docs import UPDATE_COMMAND

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[2]


def test_registry_rows_are_complete():
    assert list_models() == list(MODELS.values())
    for key, spec in MODELS.items():
        assert key == spec.name == key.strip().lower()
        assert spec.spatial_dims and set(spec.spatial_dims) <= {2, 3}
        assert spec.paper and spec.description
        assert (REPO / "medseg" / "models" / spec.family).is_dir(), f"{key}: no family folder"
        names = [p.name for p in spec.params]
        assert names == list(spec.params_model.model_fields)
        assert all(p.description for p in spec.params)
        for dims in spec.spatial_dims:
            for variant, params in spec.examples(dims).items():
                assert params, f"{key} {variant}: an example should be small, not the defaults"
                assert build_model(key, dims, 1, 2, **params).medseg_config["name"] == key


def test_examples_are_validated_when_a_row_is_created():
    spec = MODELS["unet"]
    with pytest.raises(ValueError, match=r"'unet': example 'example' is invalid in 2D: .*features needs"):
        dataclasses.replace(spec, example_params={"features": [8]})
    with pytest.raises(ValueError, match="'bad'"):
        dataclasses.replace(spec, example_variants={"bad": {2: {"featurez": [4, 8]}, 3: {}}})
    with pytest.raises(KeyError):  # per-dims examples must cover every supported dimensionality
        dataclasses.replace(spec, example_params={2: {"features": [4, 8]}})
    per_dims = dataclasses.replace(spec, example_params={2: {"features": [4, 8]}, 3: {"features": [2, 4]}})
    assert per_dims.example(3) == {"features": [2, 4]}
    per_dims.example(3)["features"].append(8)  # a copy: the row is not changed
    assert per_dims.example(3) == {"features": [2, 4]}


def test_unknown_model_lists_known_names():
    with pytest.raises(ConfigError) as exc:
        build_model("resnet", 3, 1, 2)
    text = str(exc.value)
    assert "'resnet'" in text
    for name in MODELS:
        assert name in text


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_param_names_it_and_lists_valid_ones(name):
    with pytest.raises(ConfigError) as exc:
        build_model(name, MODELS[name].spatial_dims[-1], 1, 2, featurez=[1, 2])  # 2D-only too
    text = str(exc.value)
    assert "unknown parameter 'featurez'" in text
    for valid in MODELS[name].params_model.model_fields:
        assert valid in text


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        ("unet", {"features": [8]}, "'features'"),
        ("unet", {"features": [8, 16], "strides": [2, 2]}, "strides has 2 entries"),
        ("unet", {"strides": [[2, 2], 2, 2, 2]}, "2 entries but the model is 3D"),
        ("unet", {"kernel_size": 4}, "odd"),
        ("unet", {"strides": ["x", 2, 2, 2]}, "'strides[0]': must be an int or a list of ints"),
        ("unet", {"norm": "group"}, "'norm'"),
        ("unet", {"dropout": 1.5}, "'dropout'"),
        ("dynunet", {"strides": [2, 2, 2, 2, 2]}, "strides[0] must be 1"),
        ("dynunet", {"features": [4, 8, 16], "deep_supervision": True, "deep_supr_num": 2}, "deep_supr_num"),
        ("dynunet", {"features": [4, 8, 16], "filters": [4, 8, 16]}, "give 'features' only"),
        ("uctransnet", {"features": [4, 8, 16, 32, 64], "token_stride": 4}, "token_stride"),
        ("uctransnet", {"embed_dims": [4, 4]}, "embed_dims"),
        ("deeplabv3", {"output_stride": 12}, "output_stride"),
        ("deeplabv3", {"blocks": [1, 1]}, "blocks"),
        ("deeplabv3plus", {"low_level_stage": 4}, "low_level_stage"),
        ("deeplabv3plus", {"aspp_rates": [[1, 2]]}, "2 entries but the model is 3D"),
    ],
)
def test_invalid_param_values_name_the_param(name, params, needle):
    with pytest.raises(ConfigError) as exc:
        build_model(name, 3, 1, 2, **params)
    assert needle in str(exc.value)
    assert "valid parameters" in str(exc.value)


@pytest.mark.parametrize("dims", [1, 4, "3", True, 2.0])
def test_bad_spatial_dims(dims):
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_model("unet", dims, 1, 2)


@pytest.mark.parametrize(("in_ch", "out_ch", "needle"), [(0, 2, "in_channels"), (1, "2", "out_channels")])
def test_bad_channel_counts(in_ch, out_ch, needle):
    with pytest.raises(ConfigError, match=needle):
        build_model("unet", 2, in_ch, out_ch)


def test_medseg_config_holds_resolved_defaults_and_rebuilds():
    model = build_model("dynunet", 3, 2, 3, features=[4, 8, 16, 16], strides=[1, [2, 2, 1], 2, 2])
    cfg = model.medseg_config
    assert cfg["name"] == "dynunet" and cfg["spatial_dims"] == 3
    assert cfg["in_channels"] == 2 and cfg["out_channels"] == 3
    p = cfg["params"]
    assert p["kernel_size"] == [3, 3, 3, 3]  # default resolved
    assert p["strides"] == [1, [2, 2, 1], 2, 2]
    assert p["deep_supr_num"] == 2 and p["norm"] == "instance"
    assert json.loads(json.dumps(cfg)) == cfg  # plain JSON
    assert required_divisor(model) == (8, 8, 4) == required_divisor(cfg)
    again = build_from_config(cfg)
    assert again.medseg_config == cfg
    assert count_parameters(again) == count_parameters(model)


def test_required_divisor_per_family():
    assert required_divisor({"name": "unet", "spatial_dims": 2}) == (16, 16)
    assert required_divisor({"name": "unet", "spatial_dims": 3, "params": {"features": [4, 8, 16]}}) == (
        4,
        4,
        4,
    )
    assert required_divisor({"name": "uctransnet", "spatial_dims": 3}) == (16, 16, 16)
    assert required_divisor(
        {"name": "uctransnet", "spatial_dims": 2, "params": {"features": [4, 8, 16], "token_stride": 8}}
    ) == (8, 8)
    aniso = {"strides": [[2, 2, 1], 2, 2, 2, 2], "output_stride": [16, 16, 8]}
    assert required_divisor({"name": "deeplabv3plus", "spatial_dims": 3, "params": aniso}) == (16, 16, 8)


def test_inputs_at_a_multiple_of_the_divisor_are_not_padded():
    model = build_model("unet", 3, 1, 2, features=[4, 8, 8], strides=[[2, 2, 1], 2])
    seen = []
    model.net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[2:])))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 8, 12, 6))
        model(torch.zeros(1, 1, 9, 12, 7))
    assert seen == [(8, 12, 6), (12, 12, 8)]


@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if spec.supports_3d])
def test_save_load_round_trip_is_exact(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, 3, 2, 3, **MODELS[name].example(3))
    # move batch-norm-free weights away from their init so the round trip is not trivially equal
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(model, tmp_path / "m" / "model.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp files left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "medseg-model/1" and raw["config"] == model.medseg_config
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.medseg_config == model.medseg_config
    x = torch.randn(2, 2, 12, 9, 17)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


class _Arbitrary:
    """Any class outside torch's weights-only allow-list."""


def _assert_one_line(exc: Exception, *needles: str) -> None:
    text = str(exc)
    assert "\n" not in text
    for needle in needles:
        assert needle in text


def test_load_model_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all" * 10)
    with pytest.raises(CorruptFileError) as exc:
        load_model(junk)
    _assert_one_line(exc.value, "junk.pt")
    # a truncated model file
    good = save_model(build_model("unet", 2, 1, 2, features=[4, 8, 8]), tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptFileError) as exc:
        load_model(cut)
    _assert_one_line(exc.value, "cut.pt")
    # a torch file that is not a medseg model
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CorruptFileError) as exc:
        load_model(other)
    _assert_one_line(exc.value, "other.pt", "not a medseg model file")
    # a pickle that weights_only refuses (arbitrary objects are never unpickled)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "medseg-model/1", "config": {"x": _Arbitrary()}}, evil)
    with pytest.raises(CorruptFileError) as exc:
        load_model(evil)
    _assert_one_line(exc.value, "evil.pt")
    # weights that do not fit the stored config
    payload = torch.load(good, weights_only=True)
    payload["config"]["params"]["features"] = [4, 8, 16]
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(CorruptFileError) as exc:
        load_model(bad)
    _assert_one_line(exc.value, "mismatch.pt", "do not fit")


def test_cli_models_json_lists_every_model_with_counts(capsys):
    assert main(["models", "--json", "--spatial-dims", "2", "--in-channels", "3", "--out-channels", "4"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list(MODELS)
    for e in entries:
        real = count_parameters(build_model(e["name"], 2, 3, 4))
        assert e["parameter_count"] == real
        assert e["config"] == {"spatial_dims": 2, "in_channels": 3, "out_channels": 4}
        assert e == {
            **MODELS[e["name"]].to_dict(),
            **{k: e[k] for k in ("parameter_count", "divisor", "config")},
        }
        assert e["example_params"]["2"] == MODELS[e["name"]].example(2)
        assert len(e["divisor"]) == 2
        assert {p["name"] for p in e["params"]} == set(MODELS[e["name"]].params_model.model_fields)
    unet = next(e for e in entries if e["name"] == "unet")
    defaults = {p["name"]: p["default"] for p in unet["params"]}
    assert defaults["skip_connections"] is True and defaults["features"] == [16, 32, 64, 128, 256]
    # the channel counts matter: 3 input channels add (3 - 1) * 16 * 3 * 3 first-conv weights
    assert (
        main(["models", "unet", "--json", "--spatial-dims", "2", "--in-channels", "1", "--out-channels", "4"])
        == 0
    )
    (one,) = json.loads(capsys.readouterr().out)
    assert unet["parameter_count"] - one["parameter_count"] == 2 * 16 * 9


def test_cli_models_text_and_errors(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, spec in MODELS.items():
        assert name in out
        for param in spec.params_model.model_fields:
            assert param in out
        if spec.supports_3d:
            assert f"small example: {json.dumps(spec.example(3))}" in out
    assert main(["models", "nope"]) == 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'nope'" in err[0]
    assert main(["models", "--in-channels", "0"]) == 10


def test_parameter_count_matches_formula_for_a_tiny_unet():
    """A 2-level 2D U-Net's parameter count, by hand: convs + instance norms + up + head."""
    m = build_model("unet", 2, 1, 2, features=[2, 4], convs_per_level=1)
    conv = lambda i, o, k=3: i * o * k * k  # noqa: E731 (bias=False before a norm)
    norm = lambda c: 2 * c  # noqa: E731
    expected = (
        conv(1, 2) + norm(2)  # level 0
        + conv(2, 4) + norm(4)  # level 1
        + 4 * 2 * 2 * 2 + 2  # transposed conv 2x2 with bias
        + conv(4, 2) + norm(2)  # decoder level 0 (2 + 2 concatenated channels)
        + 2 * 2 + 2  # 1x1 head with bias
    )  # fmt: skip
    assert count_parameters(m) == expected
    assert math.prod(required_divisor(m)) == 4


def _load_benchmark():
    path = REPO / "benchmarks" / "model_table.py"
    spec = importlib.util.spec_from_file_location("model_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_models_md_is_generated_from_the_registry():
    """docs/models.md's size and parameter tables are what benchmarks/model_table.py generates now
    from MODELS (regenerate them when a model or a default changes)."""
    text = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    bench = _load_benchmark()
    assert bench.generated_docs(text) == text, f"docs/models.md is stale: run `{UPDATE_COMMAND}`"
    for spec in list_models():
        assert f"#### `{spec.name}`" in text
        for param in spec.params_model.model_fields:
            assert f"| `{param}` |" in text, f"{spec.name}.{param} missing from docs/models.md"
    assert main(["models", "--markdown"]) == 0


def test_stale_docs_are_detected_and_rewritten(tmp_path):
    bench = _load_benchmark()
    current = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    stale = current.replace("| `features` |", "| `filters` |", 1)
    path = tmp_path / "models.md"
    path.write_text(stale, encoding="utf-8")
    assert bench.generated_docs(stale) != stale
    assert bench.update_docs(path) and path.read_text(encoding="utf-8") == current
    assert not bench.update_docs(path)
    with pytest.raises(ValueError, match="no generated block 'sizes'"):
        bench.generated_docs("# no markers\n")


def _dynunet_with_features() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("dynunet", 3, 1, 2, features=[4, 8, 8], strides=[1, [2, 2, 1], 2])


def test_old_filters_name_builds_the_same_network_with_a_warning():
    new = _dynunet_with_features()
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match="'filters' is deprecated, use 'features'"):
        old = build_model("dynunet", 3, 1, 2, filters=[4, 8, 8], strides=[1, [2, 2, 1], 2])
    assert old.medseg_config == new.medseg_config and "filters" not in old.medseg_config["params"]
    assert list(old.state_dict()) == list(new.state_dict())
    for (k, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        assert torch.equal(a, b), k
    with warnings.catch_warnings():  # families without 'features' do not translate it
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match="unknown parameter 'featurez'"):
            build_model("dynunet", 3, 1, 2, featurez=[4, 8, 8])


def _with_old_name(config: dict) -> dict:
    """A model config as medseg recorded it before ``filters`` became ``features``."""
    params = dict(config["params"])
    params["filters"] = params.pop("features")
    return {**config, "params": params}


def test_model_file_saved_with_filters_still_loads(tmp_path):
    model = _dynunet_with_features().eval()
    path = save_model(model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"] = _with_old_name(payload["config"])
    torch.save(payload, path)
    with pytest.warns(FutureWarning, match="filters"):
        loaded = load_model(path)
    assert loaded.medseg_config == model.medseg_config
    x = torch.randn(1, 1, 9, 10, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_run_folder_saved_with_filters_still_predicts(tmp_path):
    from medseg.config.load import config_from_dict
    from medseg.inference.predictor import Predictor
    from medseg.training.checkpoint import save_inference_checkpoint
    from medseg.training.config_check import check_registries
    from medseg.transforms.preprocess import Plan
    from medseg.volume import Volume

    model = _dynunet_with_features().eval()
    old_config = _with_old_name(model.medseg_config)
    img = Volume(np.random.default_rng(0).normal(size=(12, 12, 12)).astype(np.float32), np.eye(4))
    plan = Plan.from_dataset([(img, None)], {0: "background", 1: "object"}, target_spacing=None)
    cfg = config_from_dict(
        {
            "name": "old",
            "data": {"manifest": "unused.json"},
            "model": {"name": "dynunet", "spatial_dims": 3, "params": old_config["params"]},
            "training": {"patch_size": [12, 12, 12]},
        }
    )
    with pytest.warns(FutureWarning, match="filters"):
        check_registries(cfg)  # the config check accepts the old name too
    model.medseg_config = old_config  # what the checkpoint recorded before the rename
    save_inference_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", model, plan, cfg)
    with pytest.warns(FutureWarning, match="filters"):
        predictor = Predictor.from_run(tmp_path / "run", device="cpu")
    for a, b in zip(predictor.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(1, 1, 8, 8, 4)
    with torch.no_grad():
        assert torch.equal(predictor.model(x), model(x))
