"""Transfer learning: --init-from loads matching tensors, freeze_encoder_epochs freezes the encoder."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from medseg.config.load import config_from_dict
from medseg.errors import ConfigError, CorruptFileError, InputNotFoundError
from medseg.models import build_model, save_model
from medseg.models.registry import MODELS
from medseg.training import Trainer
from medseg.training.checkpoint import load_checkpoint
from medseg.training.transfer import (
    EncoderFreezer,
    apply_init,
    encoder_parameters,
    find_source,
    load_source,
)
from tests.fixtures.synthetic_dataset import pipeline_dict, write_2d_dataset

REPO = Path(__file__).resolve().parents[2]
FEATURES = [4, 8]
FIRST_CONV = "net.encoder.0.0.0.weight"  # unet's convolution over the input
HEAD = ("net.head.weight", "net.head.bias")


@pytest.fixture(scope="module")
def discs(tmp_path_factory) -> Path:
    return write_2d_dataset(tmp_path_factory.mktemp("d2"), n=3)


def _cfg(manifest: Path, cache: Path, model: str = "unet", params=None, **training):
    t = {"epochs": 1, "iterations_per_epoch": 1} | training
    return pipeline_dict(manifest, cache, model, 2, params or {"features": FEATURES}, **t)


@pytest.fixture(scope="module")
def source_run(discs, tmp_path_factory) -> Path:
    """A tiny 2D unet run (1 input channel, 2 classes)."""
    root = tmp_path_factory.mktemp("src")
    Trainer(config_from_dict(_cfg(discs, root / "cache")), root / "run", device="cpu").fit()
    return root / "run"


def _source_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "best.pt")["model"]


def _fresh(in_channels: int = 1, out_channels: int = 2, features=FEATURES, name="unet", dims=2):
    torch.manual_seed(0)
    model = build_model(name, dims, in_channels, out_channels, features=features)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


# -- init-from ---------------------------------------------------------------------------------------
def test_other_number_of_classes_keeps_the_head_at_init_and_loads_the_rest_exactly(source_run, tmp_path):
    src = _source_state(source_run)
    model, init = _fresh(out_channels=4)
    report = apply_init(model, load_source(source_run), tmp_path)
    after = model.state_dict()
    assert {r["name"] for r in report.reshaped} == set(HEAD)
    assert all(r["action"] == "kept at init" for r in report.reshaped)
    for name in HEAD:
        assert torch.equal(after[name], init[name]), name
    assert sorted(report.loaded) == sorted(set(after) - set(HEAD))
    for name in report.loaded:
        assert torch.equal(after[name], src[name]), name  # bit for bit
    assert not report.missing_in_source and not report.extra_in_source
    written = json.loads((tmp_path / "init_from.json").read_text())
    assert written["loaded"] == report.loaded and written["source_model"] == "unet"
    assert written["source"].endswith("best.pt")  # a run folder gives its best checkpoint
    assert (
        f"{len(report.loaded)} loaded, 2 reshaped (0 input channels copied, 2 kept at init)"
        in (written["summary"])
    )


def test_more_input_channels_copy_the_shared_channel_and_keep_the_others(source_run):
    src = _source_state(source_run)
    model, init = _fresh(in_channels=3)
    report = apply_init(model, load_source(source_run))
    w = model.state_dict()[FIRST_CONV]
    assert torch.equal(w[:, :1], src[FIRST_CONV])
    assert torch.equal(w[:, 1:], init[FIRST_CONV][:, 1:])
    assert [r["name"] for r in report.reshaped] == [FIRST_CONV]
    assert report.reshaped[0]["action"] == "copied input channels 0..0"
    assert len(report.loaded) == len(init) - 1


def test_fewer_input_channels_from_a_model_file(tmp_path):
    torch.manual_seed(1)
    three = build_model("unet", 2, 3, 2, features=FEATURES)
    save_model(three, tmp_path / "three.pt")
    model, _ = _fresh(in_channels=1)
    report = apply_init(model, load_source(tmp_path / "three.pt"))
    assert torch.equal(model.state_dict()[FIRST_CONV], three.state_dict()[FIRST_CONV][:, :1])
    assert report.source_epoch is None and report.reshaped[0]["action"] == "copied input channels 0..0"


def test_other_widths_are_reshaped_but_never_channel_copied(source_run):
    model, init = _fresh(features=[4, 16])  # the input conv keeps its shape, deeper ones change
    report = apply_init(model, load_source(source_run))
    assert report.reshaped and all(r["action"] == "kept at init" for r in report.reshaped)
    for r in report.reshaped:
        assert torch.equal(model.state_dict()[r["name"]], init[r["name"]])
    assert FIRST_CONV in report.loaded


def test_another_family_or_dimensionality_is_one_clear_error(source_run):
    torch.manual_seed(0)
    other = build_model("deeplabv3", 2, 1, 2, features=[4, 8, 8, 8], aspp_channels=8)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ConfigError, match=r"'deeplabv3'.*'unet'") as info:
        apply_init(other, load_source(source_run))
    assert "\n" not in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())  # untouched
    model3d, _ = _fresh(dims=3)
    with pytest.raises(ConfigError, match="3D model 'unet' from the 2D model"):
        apply_init(model3d, load_source(source_run))


def test_missing_and_unreadable_sources(tmp_path, source_run):
    with pytest.raises(InputNotFoundError, match="no such run folder or checkpoint"):
        load_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputNotFoundError, match="holds no checkpoint"):
        load_source(tmp_path / "empty")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match="unreadable checkpoint"):
        load_source(tmp_path / "junk.pt")
    torch.save({"obj": argparse.Namespace(a=1)}, tmp_path / "pickle.pt")  # weights_only refuses it
    with pytest.raises(CorruptFileError, match="unreadable checkpoint"):
        load_source(tmp_path / "pickle.pt")
    torch.save({"format": "other", "model": {}}, tmp_path / "other.pt")
    with pytest.raises(CorruptFileError, match="not a medseg checkpoint or model file"):
        load_source(tmp_path / "other.pt")
    only_last = tmp_path / "r" / "checkpoints"
    only_last.mkdir(parents=True)
    (only_last / "last.pt").write_bytes((source_run / "checkpoints" / "last.pt").read_bytes())
    assert find_source(tmp_path / "r") == only_last / "last.pt"
    assert find_source(source_run) == source_run / "checkpoints" / "best.pt"


def test_trainer_refuses_a_missing_source_before_any_data_work(discs, tmp_path):
    cfg = config_from_dict(_cfg(discs, tmp_path / "cache"))
    with pytest.raises(InputNotFoundError):
        Trainer(cfg, tmp_path / "run", device="cpu", init_from=tmp_path / "missing")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


# -- freezing ------------------------------------------------------------------------------------------
def _optimizer(kind: str, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.99, nesterov=True, weight_decay=0.1)
    return torch.optim.AdamW(params, lr=0.01, weight_decay=0.5)


def _train_steps(model, opt, steps: int, freezer=None, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(2, 1, 16, 16, generator=g)
        y = torch.randint(0, 2, (2, 16, 16), generator=g)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if freezer is not None:
            freezer.drop_grads()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


@pytest.mark.parametrize("distributed", [False, True], ids=["single", "ddp-mode"])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_frozen_encoder_does_not_move_and_matches_a_decoder_only_optimiser(kind, distributed):
    model, init = _fresh()
    enc = {n for n, _ in encoder_parameters(model, "unet")}
    freezer = EncoderFreezer(model, "unet", 1, distributed=distributed)
    opt = _optimizer(kind, model.parameters())
    freezer.set_epoch(0)
    assert all(p.requires_grad == distributed for n, p in model.named_parameters() if n in enc)
    _train_steps(model, opt, 3, freezer)
    # reference: the same steps with an optimiser (and clipping) that never saw the encoder
    ref, _ = _fresh()
    for n, p in ref.named_parameters():
        p.requires_grad_(n not in enc)
    _train_steps(ref, _optimizer(kind, [p for p in ref.parameters() if p.requires_grad]), 3)
    for n, p in model.named_parameters():
        if n in enc:
            assert torch.equal(p, init[n]), n  # bit-identical: no step, momentum or decay
        else:
            assert not torch.equal(p, init[n]), n
            assert torch.equal(p, dict(ref.named_parameters())[n]), n
    freezer.set_epoch(1)
    assert all(p.requires_grad for p in model.parameters())
    _train_steps(model, opt, 1, freezer)
    for n, p in model.named_parameters():
        if n in enc:
            assert not torch.equal(p, init[n]), n


class _ZeroInsteadOfDrop:
    def __init__(self, params) -> None:
        self.params = params

    def drop_grads(self) -> None:
        for p in self.params:
            p.grad.zero_()


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_zeroed_gradients_would_not_be_enough(kind):
    """The control: zeros instead of no gradient still move the encoder (weight decay)."""
    model, init = _fresh()
    enc = encoder_parameters(model, "unet")
    _train_steps(model, _optimizer(kind, model.parameters()), 2, _ZeroInsteadOfDrop([p for _, p in enc]))
    assert all(not torch.equal(p, init[n]) for n, p in enc if n.endswith("weight"))


def test_a_model_without_an_encoder_cannot_be_frozen(monkeypatch):
    monkeypatch.setitem(MODELS, "unet", dataclasses.replace(MODELS["unet"], encoder_prefixes=()))
    model, _ = _fresh()
    EncoderFreezer(model, "unet", 0)  # nothing asked, nothing to check
    with pytest.raises(ConfigError, match="declares no encoder"):
        EncoderFreezer(model, "unet", 2)


def _dims_examples():
    for name, spec in MODELS.items():
        for dims in spec.spatial_dims:
            for variant, params in spec.examples(dims).items():
                yield pytest.param(name, dims, params, id=f"{name}-{dims}d-{variant}")


@pytest.mark.parametrize(("name", "dims", "params"), list(_dims_examples()))
def test_every_family_names_part_of_its_parameters_as_encoder(name, dims, params):
    model = build_model(name, dims, 1, 2, **params)
    names = [n for n, _ in model.named_parameters()]
    encoder = [n for n, _ in encoder_parameters(model, name)]
    assert 0 < len(encoder) < len(names)
    for prefix in MODELS[name].encoder_prefixes:  # a renamed module is caught, not silently unfrozen
        assert any(n.startswith(f"net.{prefix}.") for n in encoder), prefix


def test_trainer_freezes_after_init_then_unfreezes_on_resume(discs, source_run, tmp_path, caplog):
    src = _source_state(source_run)
    cfg = config_from_dict(_cfg(discs, tmp_path / "cache", epochs=1, iterations_per_epoch=3))
    cfg.training.freeze_encoder_epochs = 1
    run = tmp_path / "run"
    Trainer(cfg, run, device="cpu", init_from=source_run).fit()
    after0 = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    enc = {n for n, _ in encoder_parameters(build_model("unet", 2, 1, 2, features=FEATURES), "unet")}
    for name, value in after0.items():
        if name in enc:
            assert torch.equal(value, src[name]), name  # loaded bit for bit, then frozen
    assert any(not torch.equal(after0[n], src[n]) for n in HEAD)
    assert json.loads((run / "init_from.json").read_text())["missing_in_source"] == []
    caplog.clear()  # only the resumed run's records (earlier tests may have left INFO on)
    with caplog.at_level(logging.INFO, logger="medseg.training"):
        Trainer(cfg, run, device="cpu", extend_epochs=1, init_from=source_run).fit()
    assert "not applied again on resume" in caplog.text and "encoder frozen" not in caplog.text
    after1 = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(not torch.equal(after1[n], after0[n]) for n in enc if n.endswith("weight"))


# -- command line and torchrun ------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "medseg", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_cli_init_from_end_to_end(discs, source_run, tmp_path):
    cfg = _cfg(discs, tmp_path / "cache", epochs=2, iterations_per_epoch=2)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    args = ["train", str(pipeline), "-o", str(run), "--device", "cpu", "--init-from"]
    proc = _cli(*args, str(source_run), "--set", "training.freeze_encoder_epochs=1")
    assert proc.returncode == 0, proc.stderr
    assert "22 loaded, 0 reshaped" in proc.stderr and "encoder unfrozen from epoch 2" in proc.stderr
    assert len(json.loads((run / "init_from.json").read_text())["loaded"]) == 22
    missing = _cli(*args, str(tmp_path / "nope"), "-o", str(tmp_path / "run2"))
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert missing.returncode == InputNotFoundError.exit_code and len(lines) == 1, missing.stderr
    assert "nope" in lines[0] and "Traceback" not in missing.stderr


_DDP_SCRIPT = """
import json, os, sys, torch
sys.path.insert(0, sys.argv[4])
from medseg.config.load import config_from_dict
from medseg.training import Trainer, transfer
snaps = {}
original = transfer.EncoderFreezer.set_epoch
def recording(self, epoch):
    snaps[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    original(self, epoch)
transfer.EncoderFreezer.set_epoch = recording
trainer = Trainer(config_from_dict(json.loads(open(sys.argv[1]).read())), sys.argv[2], device="cpu",
                  init_from=sys.argv[3])
trainer.fit()
snaps["end"] = trainer.model.state_dict()
torch.save(snaps, os.path.join(os.path.dirname(sys.argv[2]), f"snaps{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
def test_torchrun_freezes_alike_on_every_rank(discs, source_run, tmp_path):
    cfg = _cfg(discs, tmp_path / "cache", epochs=2, iterations_per_epoch=2, freeze_encoder_epochs=1)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "script.py").write_text(_DDP_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547"]
    cmd += [str(tmp_path / "script.py"), str(tmp_path / "cfg.json"), str(tmp_path / "run")]
    proc = subprocess.run(
        [*cmd, str(source_run), str(REPO)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s0, s1 = (torch.load(tmp_path / f"snaps{r}.pt", weights_only=True) for r in (0, 1))
    src = _source_state(source_run)
    enc = {n for n, _ in encoder_parameters(build_model("unet", 2, 1, 2, features=FEATURES), "unet")}
    for key in ("end", 0, 1):
        assert all(torch.equal(s0[key][n], s1[key][n]) for n in s0[key]), key  # ranks agree
    for n in enc:
        assert torch.equal(s0[0][n], src[n]) and torch.equal(s0[1][n], src[n]), n  # loaded, frozen
    assert any(not torch.equal(s0[1][n], src[n]) for n in HEAD)  # the decoder trained meanwhile
    assert all(not torch.equal(s0["end"][n], src[n]) for n in enc if n.endswith("weight"))
