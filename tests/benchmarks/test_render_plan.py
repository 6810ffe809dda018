"""benchmarks/render_plan.py: the LGG held-out patients across models."""

from __future__ import annotations

from benchmarks.render_plan import _worst_patient, lgg_models


def _cases(values: dict[str, float]) -> dict[str, float]:
    return {f"{k} abnormality": v for k, v in values.items()}


def test_worst_patient_needs_and_oracle():
    ens = {"a": 0.1, "b": 0.8, "c": 0.9}
    alone = {"a": 0.4, "b": 0.7, "c": 0.95}
    r = {
        "fold_ensemble_lgg": {"target": 0.8, "held_out": {"per_case": _cases(ens)}},
        "plan_lgg_alone": {"test": {"per_case": _cases(alone)}},
        "plan_lgg_alone_rerun": {"test": {"per_case": _cases({"a": 0.5})}},  # incomplete: no oracle
    }
    assert set(lgg_models(r)) == {"the 30-minute run alone", "its rerun", "this fold ensemble"}
    text = _worst_patient(r)
    assert "a scored 0.400 (the 30-minute run alone), 0.500 (its rerun), 0.100 (this fold ensemble)" in text
    # (0.8 * 3 - 0.1) / 2 = 1.15: beyond a Dice of 1
    assert "would need more than a Dice of 1 allows" in text
    # best of the two complete models per patient: 0.4, 0.8, 0.95
    assert "these 2 models gave it (an oracle no user has) averages 0.717" in text


def test_worst_patient_says_nothing_of_a_reachable_target():
    r = {"fold_ensemble_lgg": {"target": 0.5, "held_out": {"per_case": _cases({"a": 0.6, "b": 0.9})}}}
    assert _worst_patient(r) == "\na scored 0.600 (this fold ensemble).\n"
