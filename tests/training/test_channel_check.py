"""Channel order: training refuses a manifest whose channels differ from data.channels or,
on resume, from the channels the run was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.config.load import config_from_dict
from medseg.errors import ConfigError
from medseg.training import Trainer
from medseg.training.channel_check import check_channel_inputs, check_channels, check_resume_channels
from medseg.training.setup import prepare_data
from tests.fixtures.synthetic_dataset import ellipsoid_case, pipeline_dict

SHAPE = (20, 22, 16)


def _write_manifest(root: Path, order: list[str]) -> Path:
    """Rewrite the manifest listing the channels (and each case's files) in ``order``."""
    cases = [
        {
            "id": f"case{i}",
            "images": [f"case{i}_{ch}.nii.gz" for ch in order],
            "label": f"case{i}_seg.nii.gz",
            "split": "val" if i == 2 else "train",
        }
        for i in range(3)
    ]
    manifest = {"name": "two", "labels": {"0": "bg", "1": "a", "2": "b"}, "channels": order, "cases": cases}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root / "manifest.json"


@pytest.fixture(scope="module")
def two_channel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two")
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    for i in range(3):
        img, lab = ellipsoid_case(rng, SHAPE)
        nib.save(nib.Nifti1Image(img, affine), root / f"case{i}_t1.nii.gz")
        nib.save(nib.Nifti1Image(0.5 * img + 1.0, affine), root / f"case{i}_flair.nii.gz")
        nib.save(nib.Nifti1Image(lab, affine), root / f"case{i}_seg.nii.gz")
    return _write_manifest(root, ["t1", "flair"])


def _config(manifest: Path, cache: Path, channels: list[str] | None = None):
    d = pipeline_dict(
        manifest, cache, "unet", 3, {"features": [4, 8]}, epochs=1, iterations_per_epoch=1, batch_size=1
    )
    d["training"]["patch_size"] = [16, 16, 16]
    d["augmentation"] = {"enabled": False}
    if channels is not None:
        d["data"]["channels"] = channels
    return config_from_dict(d)


def test_check_channels_names_both_lists_in_order():
    check_channels(None, ["t1", "flair"], "m.json", "data.channels")  # no expectation: no check
    check_channels([" T1", "FLAIR "], ["t1", "flair"], "m.json", "data.channels")
    with pytest.raises(ConfigError, match="another order") as err:
        check_channels(["t1", "flair"], ["flair", "t1"], "m.json", "data.channels")
    msg = str(err.value)
    assert "['t1', 'flair']" in msg and "['flair', 't1']" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="other channels"):
        check_channels(["ct", "pet"], ["ct"], "m.json", "data.channels")


def test_check_resume_channels():
    check_resume_channels(None, ["a", "b"], "m.json")  # an older checkpoint: nothing recorded
    check_resume_channels(["channel_0", "channel_1"], ["flair", "t1"], "m.json")  # generic: count only
    check_resume_channels(["T1", "flair"], ["t1", "FLAIR"], "m.json")
    with pytest.raises(ConfigError, match=r"2 channel\(s\).*trained on 1"):
        check_resume_channels(["channel_0"], ["t1", "flair"], "m.json")
    with pytest.raises(ConfigError, match="another order"):
        check_resume_channels(["t1", "flair"], ["flair", "t1"], "m.json")


def test_prepare_data_refuses_other_channels_and_accepts_equal_ignoring_case(two_channel, tmp_path):
    bad = _config(two_channel, tmp_path / "cache", ["FLAIR", "T1"])
    with pytest.raises(ConfigError, match=r"data\.channels") as err:
        prepare_data(bad, None, None)
    assert "['FLAIR', 'T1']" in str(err.value) and "['t1', 'flair']" in str(err.value)
    data = prepare_data(_config(two_channel, tmp_path / "cache", ["T1", " Flair"]), None, None)
    assert data.plan.n_channels == 2 and len(data.train) == 2


def test_resume_on_swapped_channels_is_refused_before_any_step(two_channel, tmp_path):
    root = two_channel.parent
    cfg = _config(two_channel, tmp_path / "cache")
    run = tmp_path / "run"
    try:
        Trainer(cfg, run, device="cpu").fit()
        last = (run / "checkpoints" / "last.pt").read_bytes()
        metrics = (run / "metrics.csv").read_text()
        _write_manifest(root, ["flair", "t1"])
        with pytest.raises(ConfigError, match="resumed run") as err:
            Trainer(_config(two_channel, tmp_path / "cache"), run, device="cpu", extend_epochs=1).fit()
        assert "['t1', 'flair']" in str(err.value) and "['flair', 't1']" in str(err.value)
        assert (run / "checkpoints" / "last.pt").read_bytes() == last  # no step was taken
        assert (run / "metrics.csv").read_text() == metrics
    finally:
        _write_manifest(root, ["t1", "flair"])


def test_a_normalization_list_of_the_wrong_length_is_a_config_error(two_channel, tmp_path):
    cfg = _config(two_channel, tmp_path / "cache")
    cfg.preprocessing.normalization = ["zscore", "percentile", "none"]
    with pytest.raises(ConfigError, match=r"3 schemes for 2 channel\(s\)"):
        prepare_data(cfg, None, None)  # refused before any case is read
    cfg.preprocessing.normalization = ["zscore", "percentile"]
    data = prepare_data(cfg, None, None)
    assert data.plan.normalization == ["zscore", "percentile"]
    assert data.train[0].image[1].min() >= 0.0 and data.train[0].image[1].max() <= 1.0


def test_channel_inputs_refuse_a_wrong_scheme_count_and_warn_about_dark_dropout(caplog):
    names = ["t1", "flair", "pet"]
    with pytest.raises(ConfigError, match=r"lists 2 schemes for 3 channel\(s\) \(t1, flair, pet\)"):
        check_channel_inputs(["zscore", "zscore"], 0.0, True, names)
    check_channel_inputs(["zscore"], 0.0, True, names)  # one scheme for all: fine
    with caplog.at_level("WARNING"):
        check_channel_inputs(["zscore", "zscore", "zscore"], 0.3, True, names)
    assert not caplog.records  # 0 is every channel's mean: nothing to say
    with caplog.at_level("WARNING"):
        check_channel_inputs(["zscore", "ct", "percentile"], 0.3, True, names)
    assert "pet (percentile)" in caplog.text and "flair" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_channel_inputs(["zscore"], 0.3, False, names)
    assert "augmentation.enabled is false" in caplog.text
