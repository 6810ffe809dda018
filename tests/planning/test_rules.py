"""The planning rules of ``medseg plan`` on synthetic fingerprints (tests/planning/synthetic.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.config.schema import PipelineConfig
from medseg.errors import ConfigError
from medseg.planning import problems, rules, topology
from medseg.planning.planner import MIN_STEPS, TRAIN_SHARE, plan_pipeline
from tests.planning.synthetic import make_fingerprint, side

ANISO_SPACINGS = [(0.7, 0.7, 5.0), (0.8, 0.8, 2.5), (0.75, 0.75, 5.0), (0.7, 0.7, 5.0), (0.78, 0.78, 1.5)]


def aniso_ct(**kw):
    return make_fingerprint(
        name="abdomen",
        modality="CT",
        channels=(("ct", "ct"),),
        shape=(512, 512, 80),
        spacings=ANISO_SPACINGS,
        classes={"1": {"name": "organ", "volume_mm3": 3e5, "centroid": [0.5, 0.5, 0.5]}},
        **kw,
    )


def hippo(**kw):
    kw.setdefault("n_cases", 40)
    return make_fingerprint(
        name="Hippocampus",
        shape=(36, 50, 35),
        classes={
            "1": {"name": "anterior", "volume_mm3": 1700, "centroid": [0.47, 0.7, 0.34]},
            "2": {"name": "posterior", "volume_mm3": 1500, "centroid": side(0.39, 0.45, 0.5)},
        },
        **kw,
    )


def em2d(**kw):
    return make_fingerprint(
        name="isbi",
        modality="EM",
        channels=(("em", "8bit"),),
        shape=(512, 512, 1),
        n_cases=30,
        classes={"1": {"name": "membrane", "volume_mm3": 5e4, "centroid": [0.5, 0.5, 0.5]}},
        **kw,
    )


def decision(result, key):
    hits = [d for d in result.decisions if d.key == key]
    assert len(hits) == 1, f"{key}: {len(hits)} decisions"
    return hits[0]


def lookup(cfg, key):
    for part in key.split("."):
        cfg = cfg[int(part) if isinstance(cfg, dict) and part.isdigit() and int(part) in cfg else part]
    return cfg


def valid(result):
    for r in result.configurations:
        PipelineConfig.model_validate(r.config)
        for d in r.decisions:  # every decision is what the config holds, and explains itself
            assert lookup(r.config, d.key) == d.value, d.key
            assert d.reason.strip(), d.key
    return result


# -- target spacing, dimensionality ----------------------------------------------------------
def test_anisotropic_ct_coarse_axis_gets_its_10th_percentile():
    fp = aniso_ct()
    r = valid(plan_pipeline(fp, 30))
    sp = np.array(ANISO_SPACINGS * 4)
    d = decision(r, "preprocessing.target_spacing")
    assert d.value[2] == pytest.approx(np.percentile(sp[:, 2], 10))
    assert d.value[:2] == pytest.approx(np.median(sp[:, :2], axis=0).tolist())
    assert "10th percentile" in d.reason and "nnU-Net" in d.reason
    assert "10th percentile" in d.evidence
    assert decision(r, "preprocessing.normalization").value == "ct"
    # both configurations: 3D primary, 2D alternative on slices across the coarse axis
    assert r.kind == "3d" and [a.kind for a in r.alternatives] == ["2d"]
    assert "cross-validation picks" in decision(r, "model.spatial_dims").reason
    alt = r.alternatives[0]
    assert alt.config["model"]["spatial_dims"] == 2 and alt.config["preprocessing"]["slice_axis"] == 2
    assert len(alt.config["training"]["patch_size"]) == 2
    # the slice axis keeps its spacing: 2 values, in-plane only
    assert alt.config["preprocessing"]["target_spacing"] == pytest.approx(d.value[:2])


def test_isotropic_target_is_the_median_and_one_configuration():
    fp = hippo(spacings=[(1.0, 1.0, 1.0), (1.2, 1.0, 0.9), (0.9, 1.1, 1.0)])
    r = valid(plan_pipeline(fp, 28))
    sp = np.array([fp["cases"][i]["spacing"] for i in range(40)])
    assert decision(r, "preprocessing.target_spacing").value == pytest.approx(np.median(sp, 0).tolist())
    assert r.alternatives == [] and r.configurations == [r]


def test_anisotropic_spacing_with_as_many_voxels_keeps_the_median():
    """nnU-Net's rule needs both: a coarse spacing and few voxels along that axis."""
    fp = make_fingerprint(
        modality="CT", channels=(("ct", "ct"),), shape=(128, 128, 128), spacing=(0.8, 0.8, 4.0)
    )
    assert decision(valid(plan_pipeline(fp, 10)), "preprocessing.target_spacing").value == [0.8, 0.8, 4.0]


# -- topology -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "spacing"),
    [
        ([40, 56, 40], [1, 1, 1]),
        ([20, 512, 512], [5.0, 0.7, 0.7]),
        ([96, 160, 160], [2.5, 0.8, 0.8]),
        ([512, 512], [1, 1]),
        ([7, 64, 64], [1, 1, 1]),
    ],
)
def test_pooling_rule_follows_nnunet(patch, spacing):
    steps = topology.pooling_strides(patch, spacing)
    size, sp = [float(p) for p in patch], [float(s) for s in spacing]
    for st in steps:
        pooled = [a for a in range(len(st)) if st[a] == 2]
        finest = min(sp[a] for a in range(len(sp)) if size[a] >= 8)
        for a in pooled:
            assert size[a] >= 8, "a pooled axis keeps >= 4 voxels"
            assert sp[a] / finest < 2, "no pooling where the spacing is >= 2x the finest"
        for a in range(len(st)):
            if st[a] == 1 and size[a] >= 8 and sp[a] / finest < 2:
                pytest.fail(f"axis {a} could have been pooled")
        for a in pooled:
            size[a], sp[a] = math.ceil(size[a] / 2), sp[a] * 2
    poolable = [a for a in range(len(size)) if size[a] >= 8]
    if poolable:  # stopped: one axis alone without room to spare, or none at all
        finest = min(sp[a] for a in poolable)
        left = [a for a in poolable if sp[a] / finest < 2]
        assert len(left) == 1 and size[left[0]] < 12


def test_hippocampus_plan_reproduces_the_hand_tuned_recipe():
    """median shape 36 x 50 x 35 -> nnU-Net's patch 40 x 56 x 40, unet [16, 32, 64, 128] on a CPU."""
    r = valid(plan_pipeline(hippo(), 28))
    c = r.config
    assert c["training"]["patch_size"] == [40, 56, 40]
    assert c["model"] == {"name": "unet", "spatial_dims": 3, "params": {"features": [16, 32, 64, 128]}}
    assert (
        c["training"]["batch_size"] == 2
        and "batch 2 beat batch 4" in decision(r, "training.batch_size").reason
    )
    assert c["augmentation"]["flip_axes"] == [0] and c["inference"]["tta"] is True
    assert "left-right only" in decision(r, "augmentation.flip_axes").reason
    assert c["preprocessing"]["normalization"] == "zscore"
    assert c["training"]["cpu_bf16"] is True and c["training"]["schedule"] == "poly"
    cuda = valid(plan_pipeline(hippo(), 28, device="cuda"))
    assert cuda.config["model"]["params"]["features"][0] == 32 and "cpu_bf16" not in cuda.config["training"]


def test_memory_cap_gives_a_smaller_patch_that_fits():
    fp = aniso_ct()
    big = valid(plan_pipeline(fp, 600, device="cuda", memory_gb=8))
    small = valid(plan_pipeline(fp, 600, device="cuda", memory_gb=1))
    pb, ps = big.config["training"]["patch_size"], small.config["training"]["patch_size"]
    assert math.prod(ps) < math.prod(pb)
    for r, gb in ((big, 8), (small, 1)):
        p = r.config["model"]["params"]
        topo = topology.Topology(
            tuple(r.config["training"]["patch_size"]),
            tuple(tuple(s) for s in p.get("strides", [[2, 2, 2]] * (len(p["features"]) - 1))),
            tuple(p["features"]),
        )
        assert topology.training_memory_bytes(topo, 2, 1, 2, amp=True) <= gb * 2**30
        assert f"of {gb:.3g} GB" in decision(r, "training.patch_size").evidence
    assert "to fit 1 GB" in decision(small, "training.patch_size").reason


def test_activation_memory_formula_matches_saved_tensors():
    """The 44 B per channel-voxel of the memory formula against the tensors autograd really saves."""
    import torch

    from medseg.models import build_model

    topo = topology.make_topology([64, 48], [1.0, 1.0], 8, 64)
    net = build_model("unet", 2, 1, 3, **topo.unet_params())
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(torch.randn(2, 1, 64, 48))
    fv = sum(c * math.prod(s) for c, s in zip(topo.features, topo.level_shapes()))
    assert sum(seen.values()) == pytest.approx(2 * topology.ACTIVATION_BYTES["fp32"] * fv, rel=0.15)


def test_budget_shrinks_the_network_until_enough_steps():
    calls = []

    def step_seconds(cfg):  # synthetic device: time ~ voxels x width^2 x batch
        t = cfg["training"]
        w = cfg["model"]["params"]["features"][0]
        calls.append(t["patch_size"])
        return 2e-7 * math.prod(t["patch_size"]) * t["batch_size"] * (w / 16) ** 2

    long = valid(plan_pipeline(aniso_ct(), 600, step_seconds=step_seconds))
    n_long = len(calls)
    short = valid(plan_pipeline(aniso_ct(), 10, step_seconds=step_seconds))
    assert n_long <= 4 and len(calls) - n_long <= 4, "few probes"
    pl, ps = long.config["training"]["patch_size"], short.config["training"]["patch_size"]
    wl, ws = (r.config["model"]["params"]["features"][0] for r in (long, short))
    assert math.prod(ps) * ws**2 < math.prod(pl) * wl**2
    steps = TRAIN_SHARE * 600 / step_seconds(short.config)
    assert steps >= MIN_STEPS and "probed on the device" in decision(short, "training.patch_size").evidence
    assert not [w for w in short.warnings if "training steps" in w]
    slow = valid(plan_pipeline(aniso_ct(), 1, step_seconds=lambda cfg: 100.0))
    assert any("allows only about" in w and "--budget" in w for w in slow.warnings)


def test_budget_sets_max_minutes_and_a_schedule_that_outlasts_it():
    r = valid(plan_pipeline(hippo(), 42, step_seconds=lambda cfg: 0.3))
    t = r.config["training"]
    steps = TRAIN_SHARE * 42 * 60 / 0.3
    assert t["max_minutes"] == 42
    assert t["iterations_per_epoch"] == 100  # epochs of about 30 s at 0.3 s/step
    assert t["epochs"] * t["iterations_per_epoch"] >= 4 * steps * 0.99
    assert t["val_every"] >= 1 and steps / t["iterations_per_epoch"] / t["val_every"] <= 20
    assert "stretched" in decision(r, "training.epochs").reason


# -- mirroring ------------------------------------------------------------------------------
def test_lateralised_classes_are_never_mirrored_left_right():
    fp = make_fingerprint(
        modality="CT",
        channels=(("ct", "ct"),),
        shape=(256, 256, 128),
        spacing=(1.5, 1.5, 2.0),
        classes={
            "1": {"name": "kidney_right", "volume_mm3": 1.5e5, "centroid": [0.32, 0.45, 0.5]},
            "2": {"name": "kidney_left", "volume_mm3": 1.5e5, "centroid": [0.68, 0.45, 0.5]},
        },
    )
    r = valid(plan_pipeline(fp, 30))
    d = decision(r, "augmentation.flip_axes")
    assert d.value == [] and r.config["inference"]["tta"] is False
    assert "lateralised" in d.reason and "kidney_right" in d.evidence and "kidney_left" in d.evidence


def test_lateralisation_threshold():
    def fp(share):
        return make_fingerprint(
            classes={"1": {"name": "x", "volume_mm3": 10.0, "centroid": side(0.3, 0.5, share)}}
        )

    assert rules.lateralised(fp(1.0), 0) and rules.lateralised(fp(0.9), 0)
    assert not rules.lateralised(fp(0.8), 0)
    assert not rules.lateralised(fp(1.0), 1), "centred along axis 1"
    # hippocampus-like: posterior sits 0.05-0.11 left of centre, at most half beyond the margin
    assert decision(valid(plan_pipeline(hippo(), 10)), "augmentation.flip_axes").value == [0]


def test_2d_em_pictures_mirror_every_axis_with_a_2d_model():
    r = valid(plan_pipeline(em2d(), 18))
    c = r.config
    assert r.kind == "2d" and r.alternatives == []
    assert c["model"]["spatial_dims"] == 2 and len(c["training"]["patch_size"]) == 2
    assert c["augmentation"]["flip_axes"] == [0, 1] and c["inference"]["tta"] is True
    assert "no anatomical orientation" in decision(r, "augmentation.flip_axes").reason
    assert c["augmentation"]["rotation_degrees"] == 180
    assert c["preprocessing"]["normalization"] == "percentile"
    assert c["preprocessing"]["target_spacing"] is None and c["preprocessing"]["crop_foreground"] is False
    assert c["preprocessing"]["slice_axis"] == 2
    assert c["training"]["batch_size"] >= 2


def test_isotropic_3d_mr_mirrors_left_right_only():
    fp = make_fingerprint(
        modality="MRI",
        shape=(160, 192, 160),
        classes={"1": {"name": "tumour", "volume_mm3": 3e4, "centroid": side(0.35, 0.65, 0.5)}},
    )
    r = valid(plan_pipeline(fp, 30))
    assert r.config["augmentation"]["flip_axes"] == [0] and r.alternatives == []
    assert "no class lateralised" in decision(r, "augmentation.flip_axes").evidence


# -- intensities ----------------------------------------------------------------------------
def test_mixed_modalities_get_one_scheme_per_channel():
    fp = make_fingerprint(
        modality=None,
        channels=(("ct", "ct"), ("t2", "mr"), ("us", "8bit"), ("pet", "other")),
        shape=(128, 128, 96),
        spacing=(1.5, 1.5, 2.0),
    )
    d = decision(valid(plan_pipeline(fp, 20)), "preprocessing.normalization")
    assert d.value == ["ct", "zscore", "percentile", "zscore"]
    assert "one scheme per channel" in d.reason and "CT:" in d.reason and "8-bit" in d.reason
    assert "ct: looks like ct" in d.evidence and "t2: looks like mr" in d.evidence


def test_ct_crops_are_z_scored_per_case_and_ct_scans_are_not():
    """CT crops a few cm wide around their lesions (LIDC: 31 x 31 x 7.5 mm) get per-case z-scores;
    a CT scan of a body region (here 192 x 192 x 150 mm) keeps nnU-Net's CT scheme."""
    crops = make_fingerprint(
        modality="CT", channels=(("ct", "ct"),), shape=(44, 44, 6), spacing=(0.7, 0.7, 1.25)
    )
    d = decision(valid(plan_pipeline(crops, 30)), "preprocessing.normalization")
    assert d.value == "zscore" and "CT crops" in d.reason and "30.8 x 30.8 x 7.5 mm" in d.reason
    scan = make_fingerprint(
        modality="CT", channels=(("ct", "ct"),), shape=(128, 128, 60), spacing=(1.5, 1.5, 2.5)
    )
    d = decision(valid(plan_pipeline(scan, 30)), "preprocessing.normalization")
    assert d.value == "ct" and "CT crops" not in d.reason
    r = valid(plan_pipeline(make_fingerprint(channels=(("t1", "mr"), ("t2", "mr"))), 20))
    assert decision(r, "preprocessing.normalization").value == "zscore"
    assert r.config["data"]["channels"] == ["t1", "t2"]


# -- sampling and loss ----------------------------------------------------------------------
@pytest.mark.parametrize(("volume", "expected"), [(5e4, 0.33), (500.0, 0.5), (20.0, 0.66)])
def test_foreground_oversampling_grows_as_the_foreground_shrinks(volume, expected):
    fp = make_fingerprint(
        shape=(64, 64, 64), classes={"1": {"name": "x", "volume_mm3": volume, "centroid": [0.5] * 3}}
    )
    r = valid(plan_pipeline(fp, 20))
    share = volume / math.prod(r.config["training"]["patch_size"])
    d = decision(r, "training.foreground_oversample")
    assert d.value == expected and f"{100 * share:.3g} %" in d.evidence


def test_rare_classes_get_enet_weights_and_many_small_lesions_lesion_sampling():
    fp = make_fingerprint(
        shape=(96, 96, 96),
        classes={
            "1": {"name": "organ", "volume_mm3": 2e5, "centroid": [0.5] * 3},
            "2": {"name": "lesion", "volume_mm3": 600.0, "components": 4, "centroid": [0.5] * 3},
        },
    )
    r = valid(plan_pipeline(fp, 20))
    w = decision(r, "loss.class_weighting")
    assert w.value == "enet" and "lesion 0.299 %" in w.evidence and "rare" in w.reason
    s = decision(r, "training.foreground_sampling")
    assert s.value == "lesion" and "lesion: 4 components" in s.evidence
    plain = valid(plan_pipeline(hippo(), 20))
    assert plain.config["loss"]["class_weighting"] == "none"
    assert plain.config["training"]["foreground_sampling"] == "voxel"


# -- data the rules cannot serve well -------------------------------------------------------
def test_tiny_images_and_few_cases_are_said_not_hidden():
    fp = make_fingerprint(shape=(6, 40, 40), n_cases=3)
    r = valid(plan_pipeline(fp, 10))
    assert any("axis 0" in w and "smaller than one pooling step" in w for w in r.warnings)
    assert any("fewer than the 5 folds" in w for w in r.warnings) and r.config["data"]["folds"] == 3
    assert r.config["training"]["patch_size"][0] >= 6
    one = valid(plan_pipeline(make_fingerprint(shape=(4, 5, 6), n_cases=1), 10))
    assert any("only 1 labelled case" in w for w in one.warnings)
    assert len(one.config["model"]["params"]["features"]) >= 2


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="budget"):
        plan_pipeline(hippo(), 0)
    with pytest.raises(ConfigError, match="summary"):
        plan_pipeline({"dataset": {}}, 10)
    with pytest.raises(ConfigError, match="device"):
        plan_pipeline(hippo(), 10, device="tpu")


def test_manifest_path_and_probe_on_the_cpu():
    r = valid(plan_pipeline(hippo(), 10, manifest_path="/abs/m.json"))
    assert r.config["data"]["manifest"] == "/abs/m.json"
    cfg = {
        "model": {"name": "unet", "spatial_dims": 2, "params": {"features": [4, 8]}},
        "labels": {0: "b", 1: "x"},
        "data": {},
        "loss": {"name": "dice_focal"},
        "training": {"batch_size": 2, "patch_size": [16, 16]},
    }
    t = topology.probe_step_seconds(cfg, "cpu", steps=2)
    assert 0 < t < 5


def test_cases_under_half_the_patch_are_warned_about():
    """The patch is fitted to the median case; a tail of much smaller cases gets a warning."""
    fp = {
        "cases": [{"shape": [40, 40, 40], "spacing": [1.0, 1.0, 1.0]}] * 8
        + [{"shape": [40, 40, 12], "spacing": [1.0, 1.0, 2.0]}] * 2,  # 24 mm along z after resampling
    }

    def warn(patch_z):
        return problems.smaller_than_patch(fp, [1.0, 1.0, 1.0], [0, 1, 2], [40, 40, patch_z])

    tail = "after resampling: the network sees mostly padding there"
    assert warn(64) == [f"axis 2: 2 of 10 cases are under half the patch (64 voxels) {tail}"]
    assert warn(96) == [f"axis 2: 10 of 10 cases are under half the patch (96 voxels) {tail}"]
    assert warn(48) == []  # 24 voxels is half of 48, not under it


def test_undeclared_voxel_size_on_flat_volumes_plans_2d_first_then_3d():
    """LGG-like: 256 x 256 x 25 slices restacked from TIFF, NIfTI units unknown and 1 x 1 x 1. The
    anisotropy reads 1, but the shape says thick slices: 2D across the axis with the fewest voxels
    first (a 3D network would take the unknown slice spacing for isotropic), 3D as the
    alternative, and a warning that the plan's mm are voxels."""
    fp = make_fingerprint(shape=(256, 256, 25), spacing_declared=False, channels=(("flair", "8bit"),))
    r = valid(plan_pipeline(fp, 30))
    assert [c.kind for c in r.configurations] == ["2d", "3d"]
    assert "voxel size is not recorded" in decision(r, "model.spatial_dims").reason
    assert r.config["preprocessing"]["slice_axis"] == 2 and r.config["model"]["spatial_dims"] == 2
    assert r.alternatives[0].config["model"]["spatial_dims"] == 3
    assert any("declare no voxel size" in w and "in voxels, not mm" in w for w in r.warnings)
    # the same shape with a declared isotropic voxel size is a plain 3D volume; a cube with no
    # declared size gives no reason for 2D either
    assert [c.kind for c in plan_pipeline(make_fingerprint(shape=(256, 256, 25)), 30).configurations] == [
        "3d"
    ]
    cube = make_fingerprint(shape=(64, 64, 60), spacing_declared=False)
    assert [c.kind for c in plan_pipeline(cube, 30).configurations] == ["3d"]
    # spacing declared on an anisotropic grid: the slice axis is the coarsest, not the shortest
    assert rules.slice_axis(make_fingerprint(shape=(40, 300, 300), spacing=(1.0, 1.0, 5.0))) == 2


def test_small_3d_patches_get_a_larger_batch_on_a_cpu():
    """LIDC-like crops (43 x 43 x 7 voxels): batch 2 of a 48 x 48 x 7 patch would be 16k voxels a step;
    the batch grows to the hippocampus recipe's voxels per step (2 x 40 x 56 x 40), while the
    hippocampus itself keeps 2 (test above)."""
    fp = make_fingerprint(shape=(43, 43, 7), spacing=(0.7, 0.7, 1.25), n_cases=400, modality="CT")
    r = valid(plan_pipeline(fp, 30))
    patch, batch = r.config["training"]["patch_size"], r.config["training"]["batch_size"]
    cap = topology.CPU_BATCH_VOXELS[3]
    assert batch == cap // math.prod(patch) and batch > 2
    assert "voxels per step on a CPU" in decision(r, "training.batch_size").reason
    # on few cases nnU-Net's 5 % of the dataset binds instead
    few = valid(plan_pipeline(make_fingerprint(shape=(43, 43, 7), spacing=(0.7, 0.7, 1.25), n_cases=20), 30))
    assert few.config["training"]["batch_size"] == 2


def test_the_cpu_voxel_cap_keeps_the_hippocampus_batch_and_a_gpu_keeps_2_in_3d():
    """At the real case count (260) nnU-Net's 5 % cap allows 9 patches; the CPU cap of the recipe's
    voxels per step binds at 2. On a GPU 3D keeps nnU-Net's batch 2 (the patch grows instead)."""
    many = hippo(n_cases=260)
    cpu = valid(plan_pipeline(many, 28))
    assert cpu.config["training"]["batch_size"] == 2
    assert "voxels per step on a CPU" in decision(cpu, "training.batch_size").reason
    lidc = make_fingerprint(shape=(43, 43, 7), spacing=(0.7, 0.7, 1.25), n_cases=400, modality="CT")
    gpu = valid(plan_pipeline(lidc, 30, device="cuda"))
    assert (
        gpu.config["training"]["batch_size"] == 2
        and "on a GPU" in decision(gpu, "training.batch_size").reason
    )


def test_channels_filled_with_copies_train_with_the_same_copies():
    """Some cases fill missing sequences with FLAIR (TCGA-LGG): the plan trains with those copies on
    a fifth of the patches, naming the channels and the counts; a dataset without copies gets no
    such decision, and the default config has none."""
    fp = make_fingerprint(channels=(("pre", "mr"), ("FLAIR", "mr"), ("post", "mr")), n_cases=20)
    fp["summary"]["channel_substitutions"] = [
        {"source": 1, "replaced": [0, 2], "cases": 1, "case_ids": ["case_004"]},
        {"source": 1, "replaced": [2], "cases": 2, "case_ids": ["case_005", "case_009"]},
    ]
    r = valid(plan_pipeline(fp, 30))
    d = decision(r, "augmentation.channel_substitutions")
    assert d.value == [{"source": 1, "replaced": [0, 2]}, {"source": 1, "replaced": [2]}]
    assert d.evidence == "pre, post = copy of FLAIR in 1 of 20 cases; post = copy of FLAIR in 2 of 20 cases"
    assert r.config["augmentation"]["channel_substitution_p"] == rules.SUBSTITUTION_P
    plain = valid(plan_pipeline(make_fingerprint(channels=(("pre", "mr"), ("FLAIR", "mr"))), 30))
    assert not [d for d in plain.decisions if "substitution" in d.key]
    assert "channel_substitutions" not in plain.config.get("augmentation", {})


def test_resampling_withdrawn_when_the_label_round_trip_costs_too_much():
    """LIDC-like crops at varying spacing: the target spacing stays only when resampling the labels
    to it and back keeps over 0.98 Dice (measured by the callable); otherwise every case keeps its
    grid, in the 3D and the 2D configuration alike. Data with one spacing is never measured."""
    spacings = [(0.6, 0.6, 1.0), (0.7, 0.7, 1.25), (0.9, 0.9, 2.5), (0.7, 0.7, 1.25), (0.5, 0.5, 0.8)]
    fp = make_fingerprint(shape=(44, 44, 6), spacings=spacings, modality="CT", channels=(("ct", "ct"),))
    asked = []

    def costly(target):
        asked.append(list(target))
        return {"dice_mean": 0.975, "dice_min": 0.83, "cases": 32}

    r = valid(plan_pipeline(fp, 30, round_trip=costly))
    d = decision(r, "preprocessing.target_spacing")
    assert d.value is None and "no resampling" in d.reason
    assert "keep Dice 0.975 (mean of 32 cases, lowest 0.830)" in d.evidence
    assert asked == [[0.7, 0.7, 1.25]]  # the median, measured once
    kept = valid(plan_pipeline(fp, 30, round_trip=lambda t: {"dice_mean": 0.99, "dice_min": 0.9, "cases": 5}))
    assert decision(kept, "preprocessing.target_spacing").value == [0.7, 0.7, 1.25]
    assert "keep Dice 0.990" in decision(kept, "preprocessing.target_spacing").evidence
    assert decision(valid(plan_pipeline(fp, 30)), "preprocessing.target_spacing").value == [0.7, 0.7, 1.25]
    # anisotropic data plans 3D and 2D: a withdrawn resampling holds for both (measured once)
    asked.clear()
    aniso = valid(plan_pipeline(aniso_ct(), 30, round_trip=costly))
    assert [c.config["preprocessing"]["target_spacing"] for c in aniso.configurations] == [None, None]
    assert len(asked) == 1

    def never(target):
        raise AssertionError("one spacing everywhere: nothing to measure")

    one_grid = valid(plan_pipeline(hippo(), 30, round_trip=never))
    assert decision(one_grid, "preprocessing.target_spacing").value == [1.0, 1.0, 1.0]
