"""Choosing 2D, 3D or their ensemble by cross-validation: the ensemble's out-of-fold labels are the
arg-max of the runs' mean probabilities, its Dice a direct computation, the winner the highest mean
Dice (ties to fewer models), and ``medseg predict -m CHOICE`` averages every fold of the winner."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.errors import ConfigError, MedsegError
from medseg.evaluation.configuration_choice import choose_configuration, read_choice
from medseg.inference import Predictor
from medseg.inference.ensemble import EnsemblePredictor, load_predictor
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume
from tests.inference.test_ensemble import _scan, make_fold_run

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
SHAPE = (12, 12, 4)
LABELS = {0: "background", 1: "lesion"}
FOLDS = {0: ["a", "b"], 1: ["c", "d"]}


def _reference(cid: str) -> np.ndarray:
    ref = np.zeros(SHAPE, np.uint8)
    off = "abcd".index(cid)
    ref[2 + off : 8 + off, 2:9, 1:3] = 1
    return ref


def _probabilities(ref: np.ndarray, wrong: np.ndarray, p_wrong: float, p_right: float) -> np.ndarray:
    """Two-class probabilities [X, Y, Z, 2]: the true class gets ``p_right``, or ``p_wrong`` (< 0.5,
    so the arg-max errs) where ``wrong``."""
    p_true = np.where(wrong, p_wrong, p_right).astype(np.float32)
    fg = np.where(ref == 1, p_true, 1 - p_true)
    return np.stack([1 - fg, fg], axis=-1)


def make_run(
    run: Path, errs: str, p_wrong: float = 0.4, p_right: float = 0.9, folds: dict | None = None
) -> dict[str, np.ndarray]:
    """A 2-fold run with OOF labels and probabilities only. ``errs``: ``"left"`` (wrong on x < 6),
    ``"right"`` (x >= 6) or ``"all"``. Returns the OOF probabilities per case."""
    plan = Plan.from_dataset(
        [(Volume(np.zeros(SHAPE, np.float32), AFFINE), None)], LABELS, target_spacing=None
    )
    x = np.indices(SHAPE)[0]
    wrong = {"left": x < 6, "right": x >= 6, "all": np.ones(SHAPE, bool)}[errs]
    (run / "references").mkdir(parents=True)
    out = {}
    folds = folds or FOLDS
    for f, ids in folds.items():
        folder = run / f"fold_{f}"
        (folder / "validation" / "probabilities").mkdir(parents=True)
        (folder / "plan.json").write_text(plan.to_json())
        (folder / "config.yaml").write_text("name: hand_made\n")
        for cid in ids:
            ref = _reference(cid)
            prob = _probabilities(ref, wrong, p_wrong, p_right)
            out[cid] = prob
            val = folder / "validation"
            nib.save(nib.Nifti1Image(prob, AFFINE), val / "probabilities" / f"{cid}_probabilities.nii.gz")
            nib.save(nib.Nifti1Image(np.argmax(prob, -1).astype(np.uint8), AFFINE), val / f"{cid}.nii.gz")
            nib.save(nib.Nifti1Image(ref, AFFINE), run / "references" / f"{cid}.nii.gz")
        (folder / "validation" / "oof.json").write_text(json.dumps({"fold": f, "cases": ids}))
    splits = {str(f): {"train": [], "val": ids} for f, ids in folds.items()}
    record = {"format": "medseg-folds/1", "k": 2, "folds": [0, 1], "seed": 1, "splits": splits}
    (run / "folds.json").write_text(json.dumps(record))
    return out


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    return 2.0 * np.logical_and(pred, ref).sum() / (pred.sum() + ref.sum())


def test_the_ensemble_wins_when_the_runs_err_in_different_places(tmp_path):
    a = make_run(tmp_path / "3d", "left")
    b = make_run(tmp_path / "2d", "right")
    choice = choose_configuration([tmp_path / "3d", tmp_path / "2d"], tmp_path / "chosen")
    names = [c.name for c in choice.candidates]
    assert names == ["3d", "2d", "3d + 2d"]
    refs = {cid: _reference(cid) for cid in "abcd"}
    for cand, probs in zip(choice.candidates[:2], (a, b)):
        direct = np.mean([_dice(np.argmax(probs[c], -1) == 1, refs[c] == 1) for c in "abcd"])
        assert cand.pooled["dice"]["lesion"] == pytest.approx(direct) and cand.mean < 0.9
    # the ensemble: the arg-max of the mean probabilities, which are right everywhere here
    mean = {c: (a[c] + b[c]) / 2 for c in "abcd"}
    direct = np.mean([_dice(np.argmax(mean[c], -1) == 1, refs[c] == 1) for c in "abcd"])
    assert direct == 1.0 and choice.candidates[2].mean == pytest.approx(direct)
    assert choice.chosen is choice.candidates[2]
    record = read_choice(tmp_path / "chosen")
    assert record is not None
    assert [Path(r).name for r in record["chosen"]["runs"]] == ["3d", "2d"]
    assert (tmp_path / "chosen" / "postprocessing.json").is_file()


def test_a_tie_goes_to_the_single_run(tmp_path):
    make_run(tmp_path / "3d", "left")
    # barely wrong everywhere: averaged with 3d it changes nothing, so the ensemble only ties 3d
    make_run(tmp_path / "2d", "all", p_wrong=0.45)
    choice = choose_configuration([tmp_path / "3d", tmp_path / "2d"], tmp_path / "chosen")
    assert choice.candidates[2].mean == pytest.approx(choice.candidates[0].mean)
    assert choice.chosen is choice.candidates[0] and choice.chosen.name == "3d"


def test_runs_on_different_folds_or_one_run_are_refused(tmp_path):
    make_run(tmp_path / "3d", "left")
    make_run(tmp_path / "2d", "right")
    (tmp_path / "2d" / "fold_1" / "validation" / "oof.json").write_text(
        json.dumps({"fold": 1, "cases": ["c"]})
    )
    with pytest.raises(MedsegError, match="different folds"):
        choose_configuration([tmp_path / "3d", tmp_path / "2d"], tmp_path / "chosen")
    with pytest.raises(ConfigError, match="at least two"):
        choose_configuration([tmp_path / "3d", tmp_path / "3d"], tmp_path / "chosen")
    # the same cases in other folds are refused too: the Dice would not be paired
    make_run(tmp_path / "other", "right", folds={0: ["b", "c"], 1: ["a", "d"]})
    with pytest.raises(MedsegError, match="different folds"):
        choose_configuration([tmp_path / "3d", tmp_path / "other"], tmp_path / "chosen")
    assert not (tmp_path / "other" / "crossval").exists()  # refused before any evaluation
    # the output may not be (inside) one of the runs: it would overwrite its postprocessing.json
    with pytest.raises(ConfigError, match="inside the run"):
        choose_configuration([tmp_path / "3d", tmp_path / "2d"], tmp_path / "3d" / "choice")
    # the CLI: several runs without --output is one line and a non-zero exit
    assert main(["crossval", str(tmp_path / "3d"), str(tmp_path / "2d")]) == ConfigError.exit_code


def test_cli_records_the_choice_and_runs_of_one_name_are_told_apart(tmp_path, capsys):
    make_run(tmp_path / "exp1" / "run", "left")
    make_run(tmp_path / "exp2" / "run", "right")
    runs = [str(tmp_path / "exp1" / "run"), str(tmp_path / "exp2" / "run")]
    assert main(["crossval", *runs, "-o", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert (
        "exp1/run + exp2/run" in out and "<- chosen" in out and f"medseg predict -m {tmp_path / 'c'}" in out
    )
    assert sorted(p.name for p in (tmp_path / "c" / "ensembles").iterdir()) == ["runs_1+2"]
    # a second choice does not score what the first left behind
    stale = tmp_path / "c" / "ensembles" / "runs_1+2" / "oof" / "stale.nii.gz"
    stale.write_bytes(b"")
    assert main(["crossval", *runs, "-o", str(tmp_path / "c")]) == 0
    assert not stale.exists()


def test_predict_with_the_chosen_configuration_weighs_every_run_alike(tmp_path):
    run_a = make_fold_run(tmp_path / "a", k=2, spacings=(None, (1.5, 1.5, 2.0)))
    run_b = make_fold_run(tmp_path / "b", k=3)
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    record = {
        "format": "medseg-configuration-choice/1",
        "chosen": {"runs": [str(run_a), str(run_b)], "name": "a + b"},
    }
    (chosen / "configuration.json").write_text(json.dumps(record))
    predictor = load_predictor(chosen, device="cpu")
    assert isinstance(predictor, EnsemblePredictor) and len(predictor.predictors) == 5
    scan = _scan(5)

    def run_mean(run: Path, k: int) -> np.ndarray:
        predictors = [Predictor.from_run(run / f"fold_{f}", device="cpu") for f in range(k)]
        return np.mean([p.predict(scan, probabilities=True).probabilities.array for p in predictors], axis=0)

    got = predictor.predict(scan, probabilities=True).probabilities.array
    # the mean of the two runs' fold ensembles (as the out-of-fold ensemble it was chosen by), not
    # of the five folds, which would weigh the 3-fold run 60 %
    np.testing.assert_allclose(got, (run_mean(run_a, 2) + run_mean(run_b, 3)) / 2, atol=2e-5)
    with pytest.raises(ConfigError, match="--folds"):
        load_predictor(chosen, folds="0", device="cpu")
