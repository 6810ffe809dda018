"""Adding a network is one row in ``MODELS`` (and its folder): nothing else needs editing.

A throwaway one-convolution network, defined here, is put into ``MODELS``; ``build_model``,
the pipeline config check (``check_registries``), ``medseg models`` (text, JSON, Markdown) and
the save/load round trip all take it without further edits.
"""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import Field
from torch import nn

from medseg.cli.main import main
from medseg.config.load import config_from_dict
from medseg.errors import ConfigError
from medseg.models import MODELS, ModelParams, ModelSpec, build_model, load_model, save_model
from medseg.models._blocks import conv_type
from medseg.training.config_check import check_registries


class OneConvParams(ModelParams):
    """Parameters of the throwaway ``oneconv``."""

    kernel_size: int = Field(3, ge=1, description="odd kernel size of the only convolution")

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return (1,) * spatial_dims


def build_oneconv(spatial_dims: int, in_channels: int, out_channels: int, p: OneConvParams) -> nn.Module:
    return conv_type(spatial_dims)(in_channels, out_channels, p.kernel_size, padding=p.kernel_size // 2)


ONECONV = ModelSpec(
    name="oneconv",
    family="test",
    description="one convolution (a test row)",
    paper="none",
    params_model=OneConvParams,
    builder=build_oneconv,
    example_params={"kernel_size": 1},
)


@pytest.fixture
def oneconv(monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    monkeypatch.setitem(MODELS, ONECONV.name, ONECONV)
    return ONECONV


def test_build_model_takes_a_new_row(oneconv):
    model = build_model("oneconv", 2, 2, 3, **oneconv.example(2))
    assert model.medseg_config["params"] == {"kernel_size": 1}
    assert tuple(model(torch.zeros(1, 2, 5, 7)).shape) == (1, 3, 5, 7)
    with pytest.raises(ConfigError, match=r"unknown parameter 'features'.*valid parameters of 'oneconv'"):
        build_model("oneconv", 2, 2, 3, features=[4])


def test_save_and_load_take_a_new_row(oneconv, tmp_path):
    model = build_model("oneconv", 3, 1, 2).eval()
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    x = torch.randn(1, 1, 4, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_pipeline_config_check_takes_a_new_row(oneconv):
    base = {"name": "t", "data": {"manifest": "unused.json"}, "training": {"patch_size": [16, 16]}}
    cfg = config_from_dict({**base, "model": {"name": "oneconv", "spatial_dims": 2, "params": {}}})
    check_registries(cfg)
    bad = config_from_dict(
        {**base, "model": {"name": "oneconv", "spatial_dims": 2, "params": {"features": [4]}}}
    )
    with pytest.raises(ConfigError, match="features"):
        check_registries(bad)


def test_medseg_models_lists_a_new_row(oneconv, capsys):
    assert main(["models", "--spatial-dims", "2"]) == 0
    text = capsys.readouterr().out
    assert "oneconv" in text and "kernel_size = 3" in text and 'small example: {"kernel_size": 1}' in text
    assert main(["models", "oneconv", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "oneconv" and entry["parameter_count"] == 2 * 1 * 27 + 2
    assert entry["example_params"] == {"2": {"kernel_size": 1}, "3": {"kernel_size": 1}}
    assert main(["models", "--markdown"]) == 0
    assert "#### `oneconv`" in capsys.readouterr().out


def test_without_the_row_the_name_is_unknown():
    assert "oneconv" not in MODELS
    with pytest.raises(ConfigError, match="unknown model 'oneconv'"):
        build_model("oneconv", 2, 1, 2)
