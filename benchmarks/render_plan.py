"""The planning section of docs/benchmarks.md (used by ``benchmarks/render.py``).

Reads ``plan_speed`` (``benchmarks/plan_speed.py``) and the planned runs ``plan_hippocampus`` and
``plan_isbi`` with their hand-tuned pairs ``plan_pair_hippocampus`` and ``plan_pair_isbi``
(``train_hippocampus.py`` / ``train_isbi.py`` with and without ``--plan``, trained at the same time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

R = dict[str, dict[str, Any]]

#: (planned run, hand-tuned run trained beside it, what is compared)
PAIRS = [
    ("plan_hippocampus", "plan_pair_hippocampus", "MSD Hippocampus, Dice anterior / posterior"),
    ("plan_isbi", "plan_pair_isbi", "ISBI 2012, pixel error / membrane Dice"),
]


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _score(x: dict[str, Any]) -> str:
    if "dice" in x and isinstance(x["dice"], dict):
        return " / ".join(_f(v) for v in x["dice"].values())
    return f"{_f(x.get('pixel_error'), 4)} / {_f(x.get('membrane_dice'))}"


def speed(r: R) -> str:
    x = r.get("plan_speed")
    if not x:
        return "Not measured yet (`benchmarks/plan_speed.py`).\n"
    rows = ["| dataset | cold (s) | warm (s) | target (s) | planned |", "| --- | ---: | ---: | ---: | --- |"]
    for name, d in x["datasets"].items():
        rows.append(
            f"| {name} | {_f(d['cold_seconds'], 1)} | {_f(d['warm_seconds'], 1)} | "
            f"{_f(d['target_seconds'], 0)} | {d['planned']} {'x'.join(map(str, d['patch_size']))} |"
        )
    return "\n".join(rows) + "\n"


def runs(r: R) -> str:
    rows = [
        "| comparison | planned | hand-tuned (same time, same machine) | steps planned / hand-tuned |",
        "| --- | ---: | ---: | ---: |",
    ]
    found = False
    for planned, hand, what in PAIRS:
        p, h = r.get(planned), r.get(hand)
        if not p:
            continue
        found = True
        rows.append(
            f"| {what} | {_score(p)} | {_score(h) if h else 'n/a'} | "
            f"{p.get('steps_done')} / {h.get('steps_done') if h else 'n/a'} |"
        )
    return "\n".join(rows) + "\n" if found else "No planned run measured yet.\n"


#: held-out runs of what `medseg plan --budget 30` wrote (train_tumour.py --plan), and their targets
HELD_OUT: list[tuple[str, str, float | None]] = [
    ("plan_lgg", "LGG FLAIR abnormality (3 MR sequences), as planned (2D, 2x coarser in-plane)", 0.82),
    ("plan_lidc", "LIDC nodules (CT crops), as planned (3D, per-case z-score)", 0.82),
    ("plan_lidc_rerun", "LIDC, as planned, a second run", 0.82),
    # the same plans, each run alone on the machine: torch's two threads (planned for them)
    ("plan_lgg_alone", "LGG, as planned, run alone (both cores)", 0.82),
    ("plan_lgg_alone_rerun", "LGG, as planned, run alone (both cores), a second run", 0.82),
    ("plan_lidc_alone", "LIDC, as planned, run alone (both cores)", 0.82),
    ("plan_lidc_alone_rerun", "LIDC, as planned, run alone (both cores), a second run", 0.82),
    # the same budget with one decision reverted (target None: not a planned run)
    ("plan_lgg_fullres", "LGG, revert: full resolution (256 x 256, batch 4; session 8's plan)", None),
    ("plan_lgg_coarse_b4", "LGG, 2x coarser in-plane as planned but batch 4 (set by hand)", None),
    ("plan_lidc_ct", "LIDC, revert: nnU-Net's CT scheme (session 8's plan)", None),
]
ABLATIONS = [("plan_ablation_lgg", "LGG"), ("plan_ablation_lidc", "LIDC")]


def _dice(test: dict[str, Any]) -> tuple[float, float, float | None]:
    name = next(iter(test["dice"]))
    stats = test["dice"][name]
    return stats["mean"], stats["median"], (test.get("dice_pooled") or {}).get(name)


def _chosen(x: dict[str, Any]) -> str:
    """The post-processing a run chose on its validation cases, with their Dice before and after."""
    chosen = x.get("postprocessing_chosen")
    if not chosen:
        return "n/a"
    parts = []
    for name, c in chosen.items():
        what = (
            "keep largest"
            if c["keep_largest"]
            else (f"drop < {c['min_size_mm3']:g} mm³" if c["applied"] else "none")
        )
        parts.append(f"{name}: {what} ({_f(c['dice_before'])} -> {_f(c['dice_after'])})")
    return "; ".join(parts)


def held_out(r: R) -> str:
    rows = [
        "| dataset, configuration | budget (min) | torch threads | steps | test cases | "
        "Dice per case: mean / median | pooled Dice | keep-largest mean | "
        "post-processing chosen on validation | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    found = False
    for key, what, target in HELD_OUT:
        x = r.get(key)
        if not x:
            continue
        found = True
        mean, median, pooled = _dice(x["test"])
        kl = _dice(x["test_keep_largest"])[0] if x.get("test_keep_largest") else None
        rows.append(
            f"| {what} | {_f(x['budget_minutes'], 0)} | {x['machine'].get('torch_threads', 'n/a')} | "
            f"{x['steps_done']} | {x['test']['cases']} | "
            f"{_f(mean)} / {_f(median)} | {_f(pooled)} | {_f(kl)} | {_chosen(x)} | {target or ''} |"
        )
    if not found:
        return "No held-out planned run measured yet.\n"
    missed = [
        what for key, what, target in HELD_OUT if target and r.get(key) and _dice(r[key]["test"])[0] < target
    ]
    verdict = f"\nBelow the target (Dice per case): {'; '.join(missed)}.\n" if missed else ""
    return "\n".join(rows) + "\n" + verdict


def label_coverage(r: R) -> str:
    """Each held-out LGG patient's errors against the slices its reference labels."""
    x = r.get("lgg_label_coverage")
    if not x:
        return "Not measured yet (`benchmarks/label_coverage.py`).\n"
    v = x.get("validation")
    curve = (
        f"Its validation Dice first came within {v['within']} of its best ({_f(v['best'])}, step "
        f"{v['best_step']}) at step {v['near_step']} of {v['steps']} ({v['near_step'] / v['steps']:.0%} "
        f"of the run); the validations after that ranged {_f(v['after_range'][0])} to "
        f"{_f(v['after_range'][1])}, the last {_f(v['last'])}. "
        if v
        else ""
    )
    rows = [
        f"Run `{x['run']}`, slices along axis {x['axis']}. {curve}\n",
        "| patient | Dice | Dice without predictions on unlabelled slices | predicted voxels on "
        "unlabelled slices | recall | precision | labelled slices |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case, c in x["cases"].items():
        share = c["pred_voxels_unlabelled_slices"] / max(c["pred_voxels"], 1)
        first_last = "-".join(map(str, c["labelled_slices"] or ["none"]))
        rows.append(
            f"| {case} | {_f(c['dice'])} | {_f(c['dice_labelled_slices'])} | "
            f"{c['pred_voxels_unlabelled_slices']} ({share:.0%}) | {_f(c['recall'], 2)} | "
            f"{_f(c['precision'], 2)} | {first_last} |"
        )
    return "\n".join(rows) + "\n"


def fold_ensemble(r: R) -> str:
    """The LGG budget spent on a fold ensemble: folds, out-of-fold Dice, held-out Dice."""
    x = r.get("fold_ensemble_lgg")
    if not x:
        return "Not measured yet (`benchmarks/fold_ensemble.py`).\n"
    folds = ", ".join(f"{f['steps']} ({_f(f['best_val_dice'])})" for f in x["folds_trained"])
    oof, held, chance = x["oof"], x["held_out"], x["chance_of_target"]
    name = next(iter(held["dice_mean"]))
    per_case = ", ".join(f"{k} {_f(v)}" for k, v in sorted(_per_case(held.get("per_case")).items()))
    raw = oof.get("before_postprocessing")
    return (
        f"{x['folds']} folds of {_f(x['minutes_per_fold'], 1)} minutes ({_f(x['budget_minutes'], 0)} "
        f"in all, {_f(x['wall_minutes_plan_and_training'], 1)} minutes of planning and training), "
        f"steps and best validation Dice per fold: {folds}.\n\n"
        "| | cases | Dice per case mean / median | pooled |\n| --- | ---: | --- | ---: |\n"
        + (
            f"| out of fold, raw | {oof['cases']} | {_f(raw['dice_mean'])} / "
            f"{_f(raw['dice_median'])} | n/a |\n"
            if raw
            else ""
        )
        + f"| out of fold, with the post-processing chosen there | {oof['cases']} | "
        f"{_f(oof['dice_mean'])} / {_f(oof['dice_median'])} | n/a |\n"
        f"| held out, the fold ensemble (`medseg predict -m RUN`) | {held['cases']} | "
        f"**{_f(held['dice_mean'][name])}** / {_f(held['dice_median'][name])} | "
        f"{_f(held['dice_pooled'][name])} |\n\n"
        "The out-of-fold rows are single fold models, not the ensemble, and both are optimistic: each "
        "fold keeps the checkpoint that scored best on those patients, and the post-processing is "
        "chosen on them. "
        + (f"Held-out Dice per patient: {per_case}. " if per_case else "")
        + f"If new patients scored like the {oof['cases']} post-processed out-of-fold values, "
        f"{chance['share']:.0%} of test sets of {chance['subset_size']} would reach a mean of "
        f"{_f(x['target'], 2)} (bootstrap, drawn with replacement; optimistic, as said).\n"
        + _worst_patient(r)
    )


def _per_case(cases: dict[str, float] | None) -> dict[str, float]:
    """``{"case class": dice}`` as ``{case: dice}``."""
    return {k.split()[0]: v for k, v in (cases or {}).items()}


def lgg_models(r: R) -> dict[str, dict[str, float]]:
    """Held-out Dice per patient of every LGG model that recorded it, by a short description."""
    out = {}
    for key, what in (("plan_lgg_alone", "the 30-minute run alone"), ("plan_lgg_alone_rerun", "its rerun")):
        if cases := _per_case(((r.get(key) or {}).get("test") or {}).get("per_case")):
            out[what] = cases
    choice = r.get("plan_choice_lgg") or {}
    for k in ("2d", "3d"):
        if cases := _per_case(((choice.get("held_out") or {}).get(k) or {}).get("per_case")):
            out[f"the {k} fold ensemble of {_f(choice['minutes_per_fold'], 0)}-minute folds, one thread"] = (
                cases
            )
    if cases := _per_case(((r.get("fold_ensemble_lgg") or {}).get("held_out") or {}).get("per_case")):
        out["this fold ensemble"] = cases
    return out


def _worst_patient(r: R) -> str:
    """The held-out patient the fold ensemble scores lowest on, its Dice under every LGG model, the
    mean the other patients would then need for the target, and the best each patient got."""
    x = r.get("fold_ensemble_lgg")
    cases = _per_case(((x or {}).get("held_out") or {}).get("per_case"))
    if len(cases) < 2:
        return ""
    models = lgg_models(r)
    worst = min(cases, key=cases.get)
    seen = ", ".join(f"{_f(m[worst])} ({what})" for what, m in models.items() if worst in m)
    n, target = len(cases), x["target"]
    need = (target * n - cases[worst]) / (n - 1)
    reach = (
        "more than a Dice of 1 allows"
        if need > 1
        else f"a mean Dice of {_f(need)}"
        + (", above the agreement of two expert readers on this data (0.84)" if need > 0.84 else "")
    )
    text = f"\n{worst} scored {seen}."
    if need > target:
        text += (
            f" With it at {_f(cases[worst], 2)}, for the {n} held-out patients to reach {_f(target, 2)} "
            f"the other {n - 1} would need {reach}."
        )
    complete = [m for m in models.values() if set(m) >= set(cases)]
    if len(complete) > 1:
        best = {c: max(m[c] for m in complete) for c in sorted(cases)}
        text += (
            f" Taking for each held-out patient the best Dice any of these {len(complete)} models gave "
            f"it (an oracle no user has) averages {_f(sum(best.values()) / len(best))}: "
            + ", ".join(f"{c} {_f(v)}" for c, v in best.items())
            + "."
        )
    return text + "\n"


def _revert_text(variant: str, v: dict[str, Any], reverts: dict[str, str], dims: int = 3) -> str:
    """``planned value -> reverted value`` of each key a revert sets (or the revert's name)."""
    if variant == "dimensionality":
        return f"{dims}D -> the planned {5 - dims}D alternative"
    if variant == "resolution":
        return "2x coarser for the budget -> the full resolution, planned again (patch, network, batch)"
    parts = []
    for s in v.get("sets") or []:
        key, value = s.split("=", 1)
        planned = (v.get("planned_values") or {}).get(key)
        parts.append(f"`{key.split('.')[-1]}` {planned} -> {value}")
    return "; ".join(parts) or reverts.get(variant, "")


def ablation(r: R) -> str:
    out = []
    for key, name in ABLATIONS:
        x = r.get(key)
        if not x:
            continue
        plan = x.get("plan") or {}
        shape = ", ".join(f"{k} {v}" for k, v in plan.items())
        rows = [
            f"**{name}** ({_f(x['budget_minutes'], 0)} minutes per run, {x['manifest']}; the "
            f"{_f(x['budget_minutes'], 0)}-minute plan: {shape}):\n",
            "| decision | planned -> reverted | steps | Dice per case mean | change | pooled Dice | change |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for variant, v in x["variants"].items():
            dims = int(plan.get("spatial_dims", 3))
            what = "as planned" if variant == "planned" else _revert_text(variant, v, x["reverts"], dims)
            rows.append(
                f"| {variant} | {what} | {v['steps']} | {_f(v['dice_mean'])} | "
                f"{_f(v.get('dice_mean_change'))} | {_f(v.get('dice_pooled'))} | "
                f"{_f(v.get('dice_pooled_change'))} |"
            )
        base = x["variants"].get("planned")
        again = (("tta_off", "test-time mirroring"), ("postprocessing_off", "post-processing"))
        for field, decision in again:
            y = x.get(field)
            if not (y and base):
                continue
            mean, _, pooled = _dice(y)
            base_pooled = base.get("dice_pooled")
            change = None if pooled is None or base_pooled is None else pooled - base_pooled
            rows.append(
                f"| {decision} | off (the planned model again) | {base['steps']} | {_f(mean)} | "
                f"{_f(mean - base['dice_mean'])} | {_f(pooled)} | "
                f"{_f(change)} |"
            )
        failed = "; ".join(f"{k}: {v}" for k, v in (x.get("failed") or {}).items())
        if failed:
            rows.append(f"\nFailed: {failed}.")
        skipped = "; ".join(f"{k}: {v}" for k, v in (x.get("not_run") or {}).items())
        out.append("\n".join(rows) + "\n" + (f"\nNot reverted: {skipped}.\n" if skipped else ""))
    return "\n".join(out) if out else "No ablation measured yet (`benchmarks/plan_ablation.py`).\n"


def choice(r: R) -> str:
    x = r.get("plan_choice_lgg")
    if not x:
        return "Not measured yet (`benchmarks/plan_choice.py`).\n"
    rows = [
        f"{x['folds']} folds of the training patients, {_f(x['minutes_per_fold'], 0)} minutes per "
        "fold, the two configurations trained at the same time (one torch thread each). "
        f"Chosen: **{x['chosen']}**.\n",
        "| configuration | out-of-fold cases | out-of-fold Dice | held-out Dice per case mean (pooled) |",
        "| --- | ---: | ---: | ---: |",
    ]
    held = x["held_out"]
    names = {"3d": "3d", "2d": "2d"}
    for c in x["candidates"]:
        key = names.get(c["name"])
        h = held.get(key) if key else (held["chosen"] if c["name"] == x["chosen"] else None)
        score = "n/a"
        if h:
            name = next(iter(h["dice_mean"]))
            score = f"{_f(h['dice_mean'][name])} ({_f(h['dice_pooled'][name])})"
        mark = " (chosen)" if c["name"] == x["chosen"] else ""
        rows.append(f"| {c['name']}{mark} | {c['n_cases']} | {_f(c['mean'])} | {score} |")
    return "\n".join(rows) + "\n" + _choice_note(x)


def _choice_note(x: dict[str, Any]) -> str:
    """A sentence when the held-out patients rank the two configurations the other way round."""
    oof = {c["name"]: c["mean"] for c in x["candidates"] if c["name"] in ("2d", "3d")}
    held = {k: next(iter(v["dice_mean"].values())) for k, v in x["held_out"].items() if k in oof}
    if len(oof) < 2 or len(held) < 2:
        return ""
    if (oof["2d"] > oof["3d"]) == (held["2d"] > held["3d"]):
        return ""
    n_oof = max(c["n_cases"] for c in x["candidates"])
    n_held = x["held_out"]["2d"]["cases"]
    per_case = "; ".join(
        f"{k}: " + ", ".join(f"{c} {_f(v)}" for c, v in sorted(_per_case(cases).items()))
        for k in ("2d", "3d")
        if (cases := x["held_out"][k].get("per_case"))
    )
    swings = [
        abs(v - x["held_out"]["3d"]["per_case"].get(c, v)) / n_held
        for c, v in (x["held_out"]["2d"].get("per_case") or {}).items()
    ]
    swing = f" (one patient alone moves it by {_f(max(swings), 2)})" if swings else ""
    return (
        f"\nThe {n_held} held-out patients rank the two the other way round from the {n_oof} "
        f"out-of-fold patients{swing}"
        + (f"; per patient, {per_case}" if per_case else "")
        + ". Six patients are too few to rank configurations: the choice rests on the out-of-fold "
        "figures, as designed.\n"
    )


def section(r: R, commands: Callable[..., str]) -> list[str]:
    """The planning section of docs/benchmarks.md, in order (``commands``: the page's command block)."""
    return [
        "## Planning: `medseg plan` on a dataset\n",
        "Fingerprint plus plan (`medseg plan`, step time probed on the CPU), with an empty fingerprint "
        "cache (cold) and again (warm); then the planned pipeline trained with no edits beside the "
        "hand-tuned one, both at the same time with one torch thread each (so both score below the "
        "two-thread figures above, measured on another machine), scored on the same held-out cases "
        "([planning](planning.md)).\n",
        commands(r.get("plan_speed"), *(r.get(k) for p in PAIRS for k in p[:2])),
        speed(r),
        runs(r),
        "### New datasets: LGG and LIDC, planned with `--budget 30`, scored on held-out patients\n",
        "The plan as written (`train_tumour.py --plan MANIFEST --minutes 30`), trained on the manifest's "
        "training patients and scored on its `split: test` "
        "patients (LGG: 6 of 29 patients; LIDC: 122 crops of 66 of 331 patients, split by patient). "
        "The test predictions are what `medseg predict -m RUN` writes: with the post-processing the run "
        "chose on its validation cases (its column: the choice and the validation Dice before and "
        "after). Dice per case is the mean over the test cases; pooled Dice counts every test voxel at "
        "once; keep-largest applies that rule on top, fixed in advance. The rows with one torch thread "
        "ran two at a time (each on one core); the rows marked *run alone* had the machine to "
        "themselves, with torch's two threads: what `medseg plan --budget 30` and `medseg train` give "
        "a user of this 2-core machine. The plan is made for the threads it will train with (its "
        "step-time probe runs with them), so a run alone is planned for more steps.\n",
        commands(*(r.get(k) for k, _, _ in HELD_OUT)),
        held_out(r),
        "The rows marked *revert* and the batch-4 row undo, at the same 30-minute budget, the two "
        "decisions the plan makes since session 9 (each command is the one the run was made with). "
        "LGG at full resolution and LIDC with the CT scheme are session 8's plans, written before those "
        "rules (`run_all.py` now makes them with `--set`). The batch-4 LGG run set the coarser grid by hand, "
        "before the rule existed, and kept the full-resolution plan's batch; its test cases were "
        "predicted again through the softmax, as the others (Dice within 0.002 per patient of its "
        "nearest-neighbour predictions). The second LIDC run is the planned configuration again, "
        "made with `--set` before the rule existed.\n",
        "### LGG: what holds it below 0.82\n",
        "The target is the published result on this data with about five times the training "
        "patients: Buda et al. (Comput Biol Med 2019, the source of this dataset) report a mean Dice of "
        "0.82 (median 0.85) in cross-validation over all 110 patients, trained on a GPU, and call it "
        "comparable to human readers (their project page: 22 folds, so about 105 training patients "
        "per fold, and 0.84 ± 0.02 between two expert readers). Here 19 patients train and 4 "
        "validate. The run's validation Dice levels off early in the budget (below), so more steps "
        "would not close the gap. `benchmarks/label_coverage.py` places each held-out patient's "
        "errors against the slices the reference labels: both under-segmentation (low recall) and "
        "over-segmentation (low precision) occur. One reference stops short of the abnormality: in "
        "lgg_072 the FLAIR hyperintensity of the first labelled slice (25) continues on slices 23 and "
        "24, which are labelled empty (seen with `--figure`; the picture shows patient images, so it "
        "is not kept here), so a prediction there counts as false positive.\n",
        commands(r.get("lgg_label_coverage")),
        label_coverage(r),
        "#### The budget spent on a fold ensemble\n",
        "nnU-Net's default: k folds, each trained on the other folds' patients, predicting together "
        "(their mean probabilities). `benchmarks/fold_ensemble.py` plans with `--budget 6 --folds 5`, "
        "trains `--folds all` (5 x 6 = 30 minutes, alone on the machine), chooses the post-processing "
        "out of fold (`medseg crossval`) and predicts the held-out patients with the ensemble. Every "
        "training patient now trains in 4 of the 5 folds, and each is also predicted by the fold "
        "model that did not train on it: out-of-fold Dice over the 23 training patients, beside the "
        "6 held-out ones.\n",
        commands(r.get("fold_ensemble_lgg")),
        fold_ensemble(r),
        "### What each planned decision contributes\n",
        "`benchmarks/plan_ablation.py`: the plan made for the ablation's budget, trained as written and "
        "then with one decision reverted at a time (each row names the planned and the reverted value), "
        "every run scored on the same held-out patients. The LGG and LIDC ablations ran at the same "
        "time, one variant of each at a time, one torch thread each (the steps column shows how "
        "evenly the two cores were shared). The short budget gives a smaller plan than `--budget 30` "
        "above (shown per dataset). Test-time mirroring and the post-processing chosen on the "
        "validation cases are reverted without retraining; reverting "
        "the mirror axes changes the test-time mirroring too. A change below zero means the planned "
        "decision helped. One run per variant: differences of a few hundredths are within run-to-run "
        "noise.\n",
        commands(*(r.get(k) for k, _ in ABLATIONS)),
        ablation(r),
        "### 2D or 3D, chosen by cross-validation (LGG)\n",
        "The LGG volumes record no voxel size (1 x 1 x 1, unit unknown) and are flat (256 x 256 x about "
        "25), so the plan proposes a 2D configuration and a 3D alternative; `benchmarks/plan_choice.py` "
        "runs the documented commands (plan, train both with `--folds all`, `medseg crossval 2d 3d -o "
        "chosen`) and "
        "then predicts the 6 held-out patients with the chosen configuration and with each run's fold "
        "ensemble.\n",
        commands(r.get("plan_choice_lgg")),
        choice(r),
    ]
