"""INT8 post-training static quantisation: fidelity to fp32, a really quantised graph, the cache,
and the calibration patches read from a run's training data.

The network is a small U-Net trained for a few dozen SGD steps on 16^3 windows holding one or two
bright ellipsoids in Gaussian noise (label 1 inside), so its logits are those of a working
segmenter rather than of random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, InputNotFoundError
from medseg.inference.backends import BACKENDS, BackendRequest, Precision, build_runner
from medseg.inference.backends.quantize import QUANTIZED_OPS, _centre, quantized_onnx, training_patches

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SIZE = 16
WINDOW = (1, SIZE, SIZE, SIZE)
CPU = torch.device("cpu")


def _blobs(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows ``[n, 1, 16, 16, 16]`` with 1-2 ellipsoids (+1.5) in noise (sigma 0.6), and labels."""
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij"), -1).astype(np.float32)
    images, labels = [], []
    for _ in range(n):
        label = np.zeros((SIZE,) * 3, dtype=bool)
        for _ in range(rng.integers(1, 3)):
            centre, radii = rng.uniform(4, SIZE - 4, 3), rng.uniform(3, 5, 3)
            label |= (((grid - centre) / radii) ** 2).sum(-1) <= 1
        images.append(1.5 * label + rng.normal(0, 0.6, label.shape))
        labels.append(label)
    x = torch.from_numpy(np.stack(images)[:, None].astype(np.float32))
    return x, torch.from_numpy(np.stack(labels).astype(np.int64))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from medseg.models import build_model

    torch.manual_seed(0)
    net = build_model("unet", 3, 1, 2, features=[8, 16])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    net.train()
    for _ in range(40):
        x, y = _blobs(rng, 4)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def held_out(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows from another seed and the fp32 network's logits on them."""
    x, y = _blobs(np.random.default_rng(99), 8)
    with torch.no_grad():
        logits = model(x)
    pred = logits.argmax(1).bool()
    dice = 2 * (pred & y.bool()).sum() / (pred.sum() + y.sum())
    assert dice > 0.8, f"the test network did not learn the task (Dice {dice:.2f})"
    return x, logits


def _calibration(seed: int = 5, scale: float = 1.0, calls: list | None = None):
    def patches() -> list[torch.Tensor]:
        if calls is not None:
            calls.append(1)
        rng = np.random.default_rng(seed)
        return [scale * _blobs(rng, 4)[0] for _ in range(4)]  # 16 patches in batches of 4

    return patches


def _request(model, folder: Path, calibration=None, key: str = "net") -> BackendRequest:
    return BackendRequest(
        model=model,
        device=CPU,
        precision=Precision.INT8,
        window=WINDOW,
        batch_size=4,
        cache_dir=folder,
        model_key=key,
        calibration=calibration,
    )


@pytest.fixture(scope="module")
def int8_file(model, tmp_path_factory) -> Path:
    return quantized_onnx(_request(model, tmp_path_factory.mktemp("int8"), _calibration()))


def _agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Share of equal labels, and the Dice of the foreground of ``a`` against ``b``'s."""
    la, lb = a.argmax(1), b.argmax(1)
    fa, fb = la.bool(), lb.bool()
    return float((la == lb).float().mean()), float(2 * (fa & fb).sum() / (fa.sum() + fb.sum()))


def test_int8_onnxruntime_follows_fp32_and_beats_a_miscalibrated_model(model, held_out, int8_file, tmp_path):
    x, ref = held_out
    runner = build_runner(BACKENDS["onnxruntime"], _request(model, int8_file.parent, _calibration()))
    assert runner.path == int8_file and runner.precision is Precision.INT8
    out = runner(x)
    agree, dice = _agreement(out, ref)
    assert agree >= 0.97 and dice >= 0.9, (agree, dice)
    # ranges calibrated on inputs 50 times too dark clip every activation: far worse logits
    broken = build_runner(
        BACKENDS["onnxruntime"], _request(model, tmp_path, _calibration(scale=0.02), key="broken")
    )(x)
    err, err_broken = (out - ref).abs().mean(), (broken - ref).abs().mean()
    assert err < 0.25 * err_broken, (float(err), float(err_broken))
    assert err < 0.05 * ref.abs().mean()


def test_the_graph_runs_its_convolutions_in_int8(int8_file, tmp_path):
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(int8_file)).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in graph.initializer}
    all_convs = [n for n in graph.node if n.op_type == "Conv"]
    head = [n for n in all_convs if any(o.name in n.output for o in graph.output)]
    convs = [n for n in all_convs if n not in head]
    assert len(all_convs) == 7 and len(convs) == 6  # a two-level U-Net; its 1x1 head stays float
    assert head[0].input[1] not in producer  # float head weights: an initializer, not dequantised
    assert all(
        producer.get(n.input[1]) is None or producer[n.input[1]].op_type != "DequantizeLinear"
        for n in graph.node
        if n.op_type == "ConvTranspose"
    )  # float: no engine runs it in int8
    for conv in convs:
        act, weight = producer[conv.input[0]], producer[conv.input[1]]
        assert act.op_type == weight.op_type == "DequantizeLinear", conv.name
        assert producer[act.input[0]].op_type == "QuantizeLinear"
        assert inits[act.input[2]].data_type == onnx.TensorProto.UINT8  # uint8 activations
        assert inits[weight.input[0]].data_type == onnx.TensorProto.INT8  # int8 weights
        n_out = inits[weight.input[0]].dims[0 if conv.op_type == "Conv" else 1]
        assert len(onnx.numpy_helper.to_array(inits[weight.input[1]])) == n_out  # one scale a channel
        assert [c.op_type for c in consumers[conv.output[0]]] == ["QuantizeLinear"]
    # nothing else is quantised: every QuantizeLinear reads a conv output or feeds a conv input
    for q in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        from_conv = q.input[0] in producer and producer[q.input[0]].op_type in QUANTIZED_OPS
        to_conv = any(
            c.op_type in QUANTIZED_OPS for d in consumers[q.output[0]] for c in consumers.get(d.output[0], [])
        )
        assert from_conv or to_conv, q.name
    # ONNX Runtime fuses every DQ -> Conv -> Q into an integer convolution
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(int8_file), options, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert fused.count("QLinearConv") == len(convs) == 6


def test_the_int8_model_is_cached_and_reused(model, tmp_path):
    calls: list = []
    request = _request(model, tmp_path, _calibration(calls=calls), key="abc123")
    first = quantized_onnx(request)
    assert first.name == "abc123-1x16x16x16-int8s2-16p.onnx" and first.parent == tmp_path
    assert calls == [1]
    stamp = first.stat().st_mtime_ns
    assert quantized_onnx(request) == first and calls == [1]  # not calibrated again
    assert first.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    other = quantized_onnx(_request(model, tmp_path, _calibration(calls=calls), key="def456"))
    assert other != first and calls == [1, 1]  # other weights: their own file


def test_int8_without_calibration_data_is_a_config_error(model, tmp_path):
    with pytest.raises(ConfigError, match="training data") as info:
        quantized_onnx(_request(model, tmp_path, None))
    assert "--precision fp32" in info.value.hint
    with pytest.raises(ConfigError, match="no training patches"):
        quantized_onnx(_request(model, tmp_path, lambda: []))
    with pytest.raises(ConfigError, match="calibration batch has shape"):
        quantized_onnx(_request(model, tmp_path, lambda: [torch.zeros(2, 1, 8, 8, 8)]))
    assert not list(tmp_path.glob("*int8*"))


def test_openvino_runs_the_same_int8_file(model, held_out, int8_file):
    pytest.importorskip("openvino", reason="the openvino backend is not installed")
    x, ref = held_out
    runner = build_runner(BACKENDS["openvino"], _request(model, int8_file.parent, None))  # cached: no data
    assert runner.path == int8_file
    agree, dice = _agreement(runner(x), ref)
    assert agree >= 0.97 and dice >= 0.9, (agree, dice)
    compiled = runner.compiled
    precisions = [
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    ]
    # the six quantised convolutions run in int8; the float head does not
    assert sum(p in ("u8", "i8") for p in precisions) == 6 and len(precisions) == 7, precisions


# -- calibration patches from a run folder ------------------------------------------------------------
@pytest.fixture
def run(tmp_path) -> tuple[Path, dict, object]:
    """A run folder recording a synthetic 3D dataset: its config dict, splits.json and plan."""
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest
    from medseg.transforms.preprocess import Plan
    from tests.fixtures.synthetic_dataset import write_3d_dataset

    manifest = write_3d_dataset(tmp_path / "data", n=6)
    cases = load_manifest(manifest).cases
    loaded = [load_case(c, load_manifest(manifest)) for c in cases[:5]]
    plan = Plan.from_dataset([(c.image, c.label) for c in loaded], {0: "bg", 1: "left", 2: "right"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "splits.json").write_text(
        json.dumps({"train": [f"case{i}" for i in range(5)], "val": ["case5"]})
    )
    config = {
        "data": {"manifest": str(manifest), "data_root": None, "cache_dir": str(tmp_path / "cache")},
        "model": {"name": "unet", "spatial_dims": 3},
        "training": {"patch_size": [16, 16, 12]},
    }
    return run_dir, config, plan


def test_training_patches_are_preprocessed_seeded_and_half_on_foreground(run):
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest

    run_dir, config, plan = run
    batches = training_patches(run_dir, config, plan, n_patches=10, seed=3, batch_size=4)
    assert [tuple(b.shape) for b in batches] == [(4, 1, 16, 16, 12)] * 2 + [(2, 1, 16, 16, 12)]
    assert all(b.dtype == torch.float32 for b in batches)
    again = training_patches(run_dir, config, plan, n_patches=10, seed=3, batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    other = training_patches(run_dir, config, plan, n_patches=10, seed=4, batch_size=4)
    assert not torch.equal(batches[0], other[0])
    # patch i comes from training case i % 4; even ones are centred on a labelled voxel of it
    manifest = load_manifest(config["data"]["manifest"])
    pcs = [plan.apply(load_case(c, manifest).image, load_case(c, manifest).label) for c in manifest.cases[:4]]
    patches = torch.cat(batches)
    for i in range(0, 10, 2):
        pc = pcs[i % 4]
        centre_value = float(patches[i, 0, 8, 8, 6])
        assert np.isclose(pc.image[0][pc.label > 0], centre_value, rtol=0, atol=1e-6).any(), i
    assert abs(float(patches.mean())) < 1.0  # z-scored like training, not raw intensities


def test_centres_on_foreground_or_anywhere():
    label = np.zeros((10, 12, 8), np.uint8)
    label[2:4, 5:7, 1:3] = 2
    voxels, rng = np.flatnonzero(label), np.random.default_rng(0)
    assert all(label[tuple(_centre(label.shape, voxels, True, rng))] == 2 for _ in range(20))
    anywhere = [_centre(label.shape, voxels, False, rng) for _ in range(50)]
    assert sum(label[tuple(c)] == 0 for c in anywhere) > 40
    assert all(((c >= 0) & (c < label.shape)).all() for c in anywhere)
    empty = [_centre(label.shape, voxels[:0], True, rng) for _ in range(50)]  # no foreground: anywhere
    assert len({tuple(c) for c in empty}) > 40


def test_missing_training_data_names_the_path(run, tmp_path):
    run_dir, config, plan = run
    gone = dict(config, data={**config["data"], "manifest": str(tmp_path / "nowhere.json")})
    with pytest.raises(InputNotFoundError, match=r"nowhere\.json") as info:
        training_patches(run_dir, gone, plan)
    assert "--precision fp32" in info.value.hint
    (Path(config["data"]["manifest"]).parent / "case2.nii.gz").unlink()
    with pytest.raises(InputNotFoundError, match=r"case2\.nii\.gz") as info:
        training_patches(run_dir, config, plan)
    assert "MEDSEG_DATA_ROOT" in info.value.hint


def test_predictor_int8_reads_the_runs_recorded_manifest(tmp_path):
    from medseg.inference.predictor import Predictor
    from tests.fixtures.models import make_run

    predictor = Predictor.from_run(make_run(tmp_path / "run"), "cpu", backend="onnxruntime", precision="int8")
    with pytest.raises(InputNotFoundError, match=r"unused\.json"):
        predictor.runner  # noqa: B018 - building the runner calibrates


def test_2d_models_get_slices_of_their_patch_size(tmp_path):
    pytest.importorskip("skimage")
    from medseg.data.cases import load_case
    from medseg.data.manifest import load_manifest
    from medseg.transforms.preprocess import Plan
    from tests.fixtures.synthetic_dataset import write_2d_dataset

    manifest = write_2d_dataset(tmp_path / "data", n=4)
    cases = load_manifest(manifest).cases
    loaded = [load_case(c, load_manifest(manifest)) for c in cases]
    plan = Plan.from_dataset([(c.image, c.label) for c in loaded], {0: "bg", 1: "disc"}, target_spacing=None)
    config = {
        "data": {"manifest": str(manifest)},
        "model": {"spatial_dims": 2},
        "training": {"patch_size": [32, 24]},
    }
    batches = training_patches(
        tmp_path, config, plan, n_patches=6, batch_size=6
    )  # no splits.json: manifest's
    assert [tuple(b.shape) for b in batches] == [(6, 1, 32, 24)]
    pc = plan.apply(loaded[0].image, loaded[0].label)  # patch 0: case s0, centred on the disc
    assert np.isclose(
        pc.image[0, ..., 0][pc.label[..., 0] > 0], float(batches[0][0, 0, 16, 12]), atol=1e-6
    ).any()


def test_a_trained_run_calibrates_on_its_own_data(tmp_path):
    from medseg.config.load import config_from_dict
    from medseg.inference.predictor import Predictor
    from medseg.io import read_volume
    from medseg.training import Trainer
    from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset

    manifest = write_3d_dataset(tmp_path / "data", n=4)
    params = {"features": [4, 8]}
    cfg = pipeline_dict(manifest, tmp_path / "cache", "unet", 3, params, epochs=1, iterations_per_epoch=2)
    cfg["training"]["patch_size"] = [16, 16, 16]
    Trainer(config_from_dict(cfg), tmp_path / "run", device="cpu").fit()
    scan = read_volume(tmp_path / "data" / "case3.nii.gz")
    int8 = Predictor.from_run(tmp_path / "run", "cpu", backend="onnxruntime", precision="int8").predict(scan)
    fp32 = Predictor.from_run(tmp_path / "run", "cpu", backend="onnxruntime", precision="fp32").predict(scan)
    assert int8.info["precision"] == "int8"
    assert [p.name.split("-", 2)[2] for p in (tmp_path / "run" / "export").glob("*int8*")] == [
        "int8s2-32p.onnx"
    ]
    assert (int8.labels.array == fp32.labels.array).mean() >= 0.9  # barely trained: many near-ties
