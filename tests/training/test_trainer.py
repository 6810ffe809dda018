"""Training runs: every family learns a little, runs resume exactly, DDP ranks agree."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medseg.config.load import config_from_dict
from medseg.errors import ConfigError, MedsegError
from medseg.training import Trainer
from medseg.training.checkpoint import load_checkpoint
from tests.fixtures.synthetic_dataset import pipeline_dict, write_2d_dataset, write_3d_dataset

REPO = Path(__file__).resolve().parents[2]


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def data3d(tmp_path_factory) -> Path:
    return write_3d_dataset(tmp_path_factory.mktemp("d3"), n=5)


FAMILIES = [
    ("unet", {"features": [8, 16, 32]}),
    ("uctransnet", {"features": [8, 16, 32], "transformer_layers": 1, "num_heads": 2}),
    ("deeplabv3plus", {"features": [8, 16, 32, 32], "aspp_channels": 16}),
    ("dynunet", {"features": [8, 16, 32], "deep_supervision": True}),
]


@pytest.mark.parametrize(("model", "params"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_family_trains_a_few_iterations(data3d, tmp_path, model, params):
    cfg = config_from_dict(
        pipeline_dict(data3d, tmp_path / "cache", model, 3, params, epochs=3, iterations_per_epoch=5)
    )
    run = tmp_path / "run"
    Trainer(cfg, run, device="cpu").fit()
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    losses = [float(r["train_loss"]) for r in rows]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert rows[-1]["val_dice_mean"] != ""
    for name in ("config.yaml", "plan.json", "splits.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["model_config"]["name"] == model
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == model


def test_2d_on_png_images_and_slicewise_on_volumes(tmp_path, data3d):
    manifest = write_2d_dataset(tmp_path / "d2", n=4)
    cfg = config_from_dict(
        pipeline_dict(
            manifest, tmp_path / "cache", "unet", 2, {"features": [8, 16]}, epochs=3, iterations_per_epoch=6
        )
    )
    Trainer(cfg, tmp_path / "run2d", device="cpu").fit()
    assert json.loads((tmp_path / "run2d" / "plan.json").read_text())["target_spacing"] is None
    rows = _rows(tmp_path / "run2d")
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert rows[-1]["val_dice_disc"] != ""  # validated slice by slice on the held-out image
    cfg = config_from_dict(
        pipeline_dict(
            data3d, tmp_path / "cache", "unet", 2, {"features": [8, 16]}, epochs=3, iterations_per_epoch=6
        )
    )
    Trainer(cfg, tmp_path / "slices", device="cpu").fit()
    rows = _rows(tmp_path / "slices")
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    state = load_checkpoint(tmp_path / "slices" / "checkpoints" / "last.pt")
    assert state["slice_axis"] == 2  # the axis with the largest spacing (1.5 mm) of the 3D cases
    assert rows[-1]["val_dice_right"] != ""


def test_training_learns_the_synthetic_task(data3d, tmp_path):
    cfg = config_from_dict(
        pipeline_dict(
            data3d,
            tmp_path / "cache",
            "unet",
            3,
            {"features": [8, 16, 32]},
            epochs=12,
            iterations_per_epoch=10,
            val_every=12,
            lr=0.02,
        )
    )
    Trainer(cfg, tmp_path / "run", device="cpu").fit()
    # chance level is about 0.05: 0.5 after 120 iterations shows sampling, augmentation and
    # validation all line up (the per-family > 0.9 learning tests live in tests/models)
    assert float(_rows(tmp_path / "run")[-1]["val_dice_mean"]) > 0.5


def _cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "medseg", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_kill_and_resume_gives_the_uninterrupted_weights(data3d, tmp_path):
    cfg = pipeline_dict(
        data3d,
        tmp_path / "cache",
        "unet",
        3,
        {"features": [8, 16, 32]},
        epochs=4,
        iterations_per_epoch=6,
        num_workers=1,
    )
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump(cfg))
    straight = _cli(["train", str(pipeline), "-o", str(tmp_path / "a"), "--device", "cpu"])
    assert straight.wait(timeout=300) == 0, straight.stdout.read()
    victim = _cli(["train", str(pipeline), "-o", str(tmp_path / "b"), "--device", "cpu"])
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for the end of epoch 2, then kill -9 mid-run
        metrics = tmp_path / "b" / "metrics.csv"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert not (tmp_path / "b" / "metrics.csv").read_text().count("\n3,")  # it did not finish
    resumed = _cli(["train", "-o", str(tmp_path / "b"), "--resume", "--device", "cpu"])
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert "resuming after epoch" in out
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert _rows(tmp_path / "a") == [
        {k: v for k, v in r.items() if k != "seconds"} | {"seconds": ra["seconds"]}
        for r, ra in zip(_rows(tmp_path / "b"), _rows(tmp_path / "a"))
    ]


def test_extend_epochs_and_refusals(data3d, tmp_path):
    cfg = config_from_dict(pipeline_dict(data3d, tmp_path / "cache", "unet", 3, {"features": [8, 16]}))
    run = tmp_path / "run"
    Trainer(cfg, run, device="cpu").fit()
    with pytest.raises(MedsegError, match="already holds a training run"):
        Trainer(cfg, run, device="cpu").fit()
    Trainer(cfg, run, device="cpu", extend_epochs=2).fit()
    assert [int(r["epoch"]) for r in _rows(run)] == [0, 1, 2, 3]
    with pytest.raises(MedsegError, match="nothing to resume"):
        Trainer(cfg, tmp_path / "empty", device="cpu", resume=True).fit()


@pytest.mark.slow
def test_two_process_gloo_ddp(data3d, tmp_path):
    cfg = pipeline_dict(
        data3d, tmp_path / "cache", "unet", 3, {"features": [8, 16]}, epochs=2, iterations_per_epoch=4
    )
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(REPO / "tests" / "fixtures" / "ddp_train.py"),
            str(cfg_path),
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "weights_rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "weights_rank1.pt", weights_only=True)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    i0 = torch.load(tmp_path / "indices_rank0.pt", weights_only=True)
    i1 = torch.load(tmp_path / "indices_rank1.pt", weights_only=True)
    assert not set(i0) & set(i1)  # disjoint shards
    assert sorted(i0 + i1) == list(range(2 * 8))  # none missed: 2 epochs x 4 iterations x batch 2
    assert len(_rows(tmp_path / "run")) == 2  # only rank 0 wrote metrics


def test_fold_split_and_resume_keeps_the_runs_split(data3d, tmp_path):
    cfg = config_from_dict(
        pipeline_dict(
            data3d, tmp_path / "cache", "unet", 3, {"features": [8, 16]}, epochs=1, iterations_per_epoch=2
        )
    )
    cfg.data.folds = 2
    run = tmp_path / "run"
    Trainer(cfg, run, device="cpu", fold=1).fit()
    split = json.loads((run / "splits.json").read_text())
    assert split["fold"] == 1 and split["folds"] == 2
    assert not set(split["train"]) & set(split["val"])
    with pytest.raises(ConfigError, match="fold 1, not --fold 0"):
        Trainer(cfg, run, device="cpu", fold=0, extend_epochs=1).fit()
    Trainer(cfg, run, device="cpu", extend_epochs=1).fit()  # resumes on its own split
    assert json.loads((run / "splits.json").read_text()) == split


def test_label_values_with_gaps(tmp_path):
    """Classes {0, 1, 3}: per-class Dice columns follow the declared classes."""
    import nibabel as nib

    from tests.fixtures.synthetic_dataset import ellipsoid_case

    rng = np.random.default_rng(0)
    cases = []
    for i in range(3):
        img, lab = ellipsoid_case(rng)
        lab[lab == 2] = 3
        nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / f"i{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / f"l{i}.nii.gz")
        cases.append(
            {
                "id": f"c{i}",
                "images": [f"i{i}.nii.gz"],
                "label": f"l{i}.nii.gz",
                "split": "val" if i == 2 else "train",
            }
        )
    (tmp_path / "m.json").write_text(json.dumps({"labels": {"0": "bg", "1": "a", "3": "c"}, "cases": cases}))
    cfg = config_from_dict(
        pipeline_dict(
            tmp_path / "m.json",
            tmp_path / "cache",
            "unet",
            3,
            {"features": [8, 16]},
            epochs=1,
            iterations_per_epoch=2,
        )
    )
    Trainer(cfg, tmp_path / "run", device="cpu").fit()
    row = _rows(tmp_path / "run")[0]
    assert "val_dice_a" in row and "val_dice_c" in row and row["val_dice_c"] != ""


def test_time_budget_ends_the_run_mid_epoch(data3d, tmp_path):
    """A spent budget stops within the epoch (not at its end), validates and saves the checkpoints."""
    d = pipeline_dict(
        data3d, tmp_path / "cache", "unet", 3, {"features": [8, 16]}, epochs=4, iterations_per_epoch=2000
    )
    d["training"]["max_minutes"] = 0.02  # 1.2 s: a few of the 2000 steps of the first epoch
    run = tmp_path / "run"
    last = Trainer(config_from_dict(d), run, device="cpu").fit()
    rows = _rows(run)
    assert len(rows) == 1 and 1 <= int(rows[0]["step"]) < 2000
    assert int(last["step"]) == int(rows[0]["step"])
    assert rows[0]["val_dice_mean"] != ""
    assert (run / "checkpoints" / "best.pt").is_file()
