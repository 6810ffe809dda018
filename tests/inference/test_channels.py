"""Named multi-sequence channels at prediction: one file per channel grouped into one case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.inference import Predictor
from medseg.inference.batch import predict_folder
from medseg.inference.channels import ChannelOptions, MissingChannel, blank_channels
from medseg.inference.discovery import discover
from medseg.training.checkpoint import channel_names, load_checkpoint, save_checkpoint
from medseg.volume import Volume

REPO = Path(__file__).resolve().parents[2]
NAMES = ("t1", "flair")
SHAPE = (20, 18, 12)
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def make_two_channel_run(run_dir: Path, names: tuple[str, ...] | None = NAMES) -> Path:
    """A run folder with a small untrained 2-channel U-Net recording the channel ``names``."""
    from medseg.config.load import config_from_dict
    from medseg.models import build_model
    from medseg.training.checkpoint import save_inference_checkpoint
    from medseg.transforms.preprocess import Plan

    torch.manual_seed(0)
    model = build_model("unet", 3, 2, 2, features=[4, 8])
    img = Volume(np.random.default_rng(0).normal(size=(20, 20, 20, 2)).astype(np.float32), np.eye(4))
    plan = Plan.from_dataset([(img, None)], {0: "background", 1: "tumour"}, target_spacing=None)
    cfg = config_from_dict(
        {
            "name": "two_channels",
            "data": {"manifest": "unused.json"},
            "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [4, 8]}},
            "training": {"patch_size": [16, 16, 16]},
            "inference": {"overlap": 0.25},
        }
    )
    save_inference_checkpoint(run_dir / "checkpoints" / "best.pt", model, plan, cfg, channels=names)
    return run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_two_channel_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return Predictor.from_run(run, device="cpu")


def _channels(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t1 = rng.normal(100, 20, SHAPE).astype(np.float32)
    flair = (rng.normal(0, 1, SHAPE) ** 2 * 50).astype(np.float32)  # another distribution than t1
    return [t1, flair]


def _save(array: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)


def _write_case(folder: Path, case: str, seed: int, suffixes=("_0000", "_0001"), skip=()) -> list[np.ndarray]:
    arrays = _channels(seed)
    for i, (suffix, arr) in enumerate(zip(suffixes, arrays, strict=True)):
        if i not in skip:
            _save(arr, folder / f"{case}{suffix}.nii.gz")
    return arrays


def _probabilities(out: Path, case: str) -> np.ndarray:
    return np.asarray(nib.load(out / f"{case}_probabilities.nii.gz").dataobj)


def _by_id(result) -> dict:
    return {r.id: r for r in result.results}


def _options(missing: str = "refuse") -> ChannelOptions:
    return ChannelOptions(NAMES, MissingChannel.parse(missing, NAMES))


# -- the record --------------------------------------------------------------------------------


def test_the_run_records_its_channel_names_and_older_runs_read_as_unnamed(run, tmp_path):
    assert Predictor.from_run(run, device="cpu").channel_names == ["t1", "flair"]
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    del state["channels"]  # as a run from before the record
    old = tmp_path / "old.pt"
    save_checkpoint(old, {k: v for k, v in state.items() if k != "format"})
    unnamed = Predictor.from_run(old, device="cpu")
    assert unnamed.channel_names is None
    assert ChannelOptions.of_predictor(unnamed).names == ("channel_0", "channel_1")
    assert channel_names(["T1", "t1"], 2) == ["channel_0", "channel_1"]  # not told apart by name
    assert channel_names(["image"], 3) == ["channel_0", "channel_1", "channel_2"]
    assert channel_names(["t1", "flair"], 2) == ["t1", "flair"]


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_groups_channel_files_and_names_their_problems(tmp_path):
    root = tmp_path / "in"
    for name in [
        "a_0000",
        "a_0001",
        "sub/b_T1",
        "sub/b_FLAIR",
        "c_0000",
        "d",
        "e_0000",
        "e_0001",
        "e_0002",
        "f_0000",
        "f_t1",
    ]:
        (root / f"{name}.nii.gz").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.nii.gz").write_bytes(b"")
    cases, skipped = discover(root, channel_names=NAMES)
    by_id = {c.id: c for c in cases}
    assert sorted(by_id) == ["a", "c", "d", "e", "f", "sub__b"] and skipped == []
    assert by_id["a"].channels == (root / "a_0000.nii.gz", root / "a_0001.nii.gz")
    assert by_id["sub__b"].channels == (root / "sub/b_T1.nii.gz", root / "sub/b_FLAIR.nii.gz")
    assert by_id["c"].channels == (root / "c_0000.nii.gz", None) and by_id["c"].problem is None
    assert by_id["d"].channels is None  # a 4D file, as before
    assert "e_0002.nii.gz is channel 0002 but the model takes 2" in by_id["e"].problem
    assert "channel t1 is given twice (f_0000.nii.gz, f_t1.nii.gz)" in by_id["f"].problem
    # a one-channel model keeps one case per file
    assert "a_0000" in {c.id for c in discover(root)[0]}


# -- prediction --------------------------------------------------------------------------------


def test_index_and_name_suffixes_predict_one_case_each_as_the_same_4d_file(predictor, tmp_path):
    indexed, named, four_d = tmp_path / "indexed", tmp_path / "named", tmp_path / "four_d"
    for case, seed in (("a", 1), ("b", 2)):
        arrays = _write_case(indexed, case, seed)
        _write_case(named, case, seed, suffixes=("_T1", "_Flair"))
        _save(np.stack(arrays, axis=-1), four_d / f"{case}.nii.gz")
    _save(np.stack(_channels(1)[::-1], axis=-1), four_d / "a_swapped.nii.gz")
    results = {}
    for folder in (indexed, named, four_d):  # a predictor carries no names: indices work without them
        results[folder.name] = predict_folder(
            predictor,
            folder,
            tmp_path / f"out_{folder.name}",
            probabilities=True,
            overlap_io=False,
            channels=_options() if folder == named else None,
        )
    for name in ("indexed", "named"):
        assert {r.id: r.status for r in results[name].results} == {"a": "ok", "b": "ok"}, name
        for case in ("a", "b"):
            np.testing.assert_array_equal(
                _probabilities(tmp_path / f"out_{name}", case), _probabilities(tmp_path / "out_four_d", case)
            )
    assert results["four_d"].exit_code == 0
    # the order matters: the channels swapped give another prediction
    swapped = _probabilities(tmp_path / "out_four_d", "a_swapped")
    assert not np.allclose(swapped, _probabilities(tmp_path / "out_four_d", "a"))
    sidecar = json.loads((tmp_path / "out_named" / "a.json").read_text())
    assert sidecar["channels"] == {"t1": "a_T1.nii.gz", "flair": "a_Flair.nii.gz"}
    assert "warnings" not in sidecar


def test_a_missing_channel_is_refused_with_the_expected_names_and_the_batch_goes_on(predictor, tmp_path):
    folder = tmp_path / "in"
    _write_case(folder, "a", 1)
    _write_case(folder, "c", 3, skip=(1,))
    result = predict_folder(predictor, folder, tmp_path / "out", overlap_io=False, channels=_options())
    by_id = _by_id(result)
    assert by_id["a"].status == "ok" and by_id["c"].status == "failed" and result.exit_code == 14
    error = by_id["c"].error
    assert "the model takes channels t1, flair; found t1 (c_0000.nii.gz); missing flair" in error
    assert "--missing-channel" in error and "\n" not in error
    assert not (tmp_path / "out" / "c.nii.gz").exists()


@pytest.mark.parametrize("normalization", ["zscore", "ct"])
def test_missing_channel_zeros_predicts_and_records_the_warning(predictor, tmp_path, normalization):
    if normalization == "ct":  # raw zeros do not normalise to 0 here: the channel is set after
        from medseg.transforms.preprocess import Plan

        stats = [
            {"lo": 0.0, "hi": 300.0, "mean": 100.0, "std": 20.0},
            {"lo": 0.0, "hi": 300.0, "mean": 50.0, "std": 40.0},
        ]
        plan = Plan(
            target_spacing=None, normalization="ct", n_channels=2, labels={0: "bg", 1: "t"}, ct_stats=stats
        )
        predictor = Predictor(predictor.model, plan, (16, 16, 16), "cpu", overlap=0.25)
    folder = tmp_path / "in"
    arrays = _write_case(folder, "c", 3, skip=(1,))
    out = tmp_path / "out"
    result = predict_folder(
        predictor, folder, out, probabilities=True, overlap_io=False, channels=_options("zeros")
    )
    assert result.exit_code == 0, result.table()
    sidecar = json.loads((out / "c.json").read_text())
    assert sidecar["channels"] == {"t1": "c_0000.nii.gz", "flair": "zeros"}
    assert sidecar["warnings"] == ["missing channel(s) flair: zeros used"]
    # the same as the case with flair at its normalised mean (0) everywhere
    prepared = predictor.prepare(Volume(np.stack(arrays, -1), AFFINE))
    prepared.case.image[1] = 0.0
    labels, probs = predictor.infer(prepared, probabilities=True)
    expected = predictor.finish(prepared, labels, probs).probabilities.array
    np.testing.assert_allclose(_probabilities(out, "c"), expected, atol=1e-6)


def test_missing_channel_copy_stands_in_the_named_channel(predictor, tmp_path):
    folder, four_d = tmp_path / "in", tmp_path / "four_d"
    t1 = _write_case(folder, "c", 3, skip=(1,))[0]
    _save(np.stack([t1, t1], axis=-1), four_d / "c.nii.gz")
    out = tmp_path / "out"
    result = predict_folder(
        predictor, folder, out, probabilities=True, overlap_io=False, channels=_options("copy:T1")
    )
    assert result.exit_code == 0, result.table()
    predict_folder(predictor, four_d, tmp_path / "out4d", probabilities=True, overlap_io=False)
    np.testing.assert_array_equal(_probabilities(out, "c"), _probabilities(tmp_path / "out4d", "c"))
    assert json.loads((out / "c.json").read_text())["channels"]["flair"] == "copy of t1"


def test_a_channel_on_another_grid_is_refused_for_that_case(predictor, tmp_path):
    folder = tmp_path / "in"
    _write_case(folder, "a", 1)
    _write_case(folder, "shifted", 2, skip=(1,))
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.01  # 10 micrometres: more than the tolerance
    _save(_channels(2)[1], folder / "shifted_0001.nii.gz", shifted)
    _write_case(folder, "small", 4, skip=(1,))
    _save(_channels(4)[1][:, :, :10], folder / "small_0001.nii.gz")
    result = predict_folder(predictor, folder, tmp_path / "out", overlap_io=False, channels=_options())
    by_id = _by_id(result)
    assert by_id["a"].status == "ok"
    assert "channel flair (shifted_0001.nii.gz) is not on the grid of t1 (shifted_0000.nii.gz)" in (
        by_id["shifted"].error
    )
    assert "voxels up to 0.01 mm apart" in by_id["shifted"].error
    assert "shape (20, 18, 10) vs (20, 18, 12)" in by_id["small"].error


def test_missing_channel_values_are_checked():
    assert MissingChannel.parse("ZEROS", NAMES) == MissingChannel("zeros")
    assert MissingChannel.parse("copy:FLAIR", NAMES) == MissingChannel("copy", 1)
    with pytest.raises(ConfigError, match=r"no channel 't2'.*t1, flair"):
        MissingChannel.parse("copy:t2", NAMES)
    with pytest.raises(ConfigError, match="not one of refuse, zeros or copy"):
        MissingChannel.parse("mean", NAMES)
    image = np.ones((2, 3, 3, 3), np.float32)
    blank_channels(image, [1])
    assert image[0].min() == 1.0 and not image[1].any()


def test_cli_refuses_a_bad_policy_in_one_line_and_predicts_with_zeros(run, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    folder = tmp_path / "in"
    _write_case(folder, "c", 3, skip=(1,))

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "medseg", "predict", "-m", str(run), "-i", str(folder), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    bad = cli("-o", str(tmp_path / "out"), "--device", "cpu", "--missing-channel", "copy:t2")
    assert bad.returncode == 10 and "Traceback" not in bad.stderr
    assert "no channel 't2'" in bad.stderr and "t1, flair" in bad.stderr
    refused = cli("-o", str(tmp_path / "out"), "--device", "cpu")
    assert refused.returncode == 14 and "missing flair" in refused.stdout
    ok = cli("-o", str(tmp_path / "out"), "--device", "cpu", "--missing-channel", "zeros")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "out" / "c.json").read_text())["warnings"]


def test_a_trained_run_records_the_manifest_channels_and_predicts_from_named_files(tmp_path):
    """Train a tiny two-channel run from a manifest naming its channels, then predict one case
    given as ``<case>_<name>`` files."""
    from medseg.config.load import config_from_dict
    from medseg.training.trainer import Trainer
    from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset

    manifest_path = write_3d_dataset(tmp_path / "data", n=3)
    manifest = json.loads(manifest_path.read_text())
    manifest["channels"] = ["T1", "Flair"]
    for case in manifest["cases"]:
        case["images"] = case["images"] * 2  # the same scan as both channels: enough for the record
    manifest_path.write_text(json.dumps(manifest))
    params = {"features": [4, 8]}
    cfg = pipeline_dict(
        manifest_path, tmp_path / "cache", "unet", 3, params, epochs=1, iterations_per_epoch=1
    )
    Trainer(config_from_dict(cfg), tmp_path / "run", device="cpu").fit()
    assert Predictor.from_run(tmp_path / "run", device="cpu").channel_names == ["T1", "Flair"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["channels"] == ["T1", "Flair"]
    scan = nib.load(tmp_path / "data" / "case0.nii.gz")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("case0_t1", "case0_FLAIR"):
        nib.save(scan, folder / f"{name}.nii.gz")
    result = predict_folder(
        Predictor.from_run(tmp_path / "run", device="cpu"),
        folder,
        tmp_path / "out",
        overlap_io=False,  # no channels=: the names come with the predictor
    )
    assert [(r.id, r.status) for r in result.results] == [("case0", "ok")], result.table()
    assert nib.load(tmp_path / "out" / "case0.nii.gz").shape == scan.shape
