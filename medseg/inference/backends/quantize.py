"""INT8 post-training static quantisation of an exported network (QDQ ONNX, for ONNX Runtime and OpenVINO).

The float32 export (:mod:`.onnx_export`) is calibrated on preprocessed training patches of the
run and rewritten with ONNX Runtime's own tooling (``onnxruntime.quantization.quantize_static``)
into the QDQ format: every convolution (``Conv``, ``ConvTranspose``) reads its input through a
``QuantizeLinear``/``DequantizeLinear`` pair and its weights from int8 initialisers, and its
output goes through another pair; normalisation, activations, pooling and reductions stay in
float. ONNX Runtime fuses each ``DQ -> Conv -> Q`` into an integer convolution (``QLinearConv``)
and OpenVINO turns the pairs into ``FakeQuantize`` and runs those layers in int8; both read the
same file.

Scheme (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018; ONNX ``QuantizeLinear`` / ``DequantizeLinear``):

* weights: int8, symmetric, one scale per output channel;
* activations: uint8, asymmetric (a scale and a zero point per tensor), ranges from MinMax
  calibration over the training patches;
* biases: int32 with scale ``input scale x weight scale``.

The quantised file is cached beside the fp32 export, named after the weights' digest, the window
and the number of calibration patches, and reused by later runs (and by both engines).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import ConfigError, InputNotFoundError
from medseg.inference.backends.onnx_export import cache_folder, exported_onnx
from medseg.inference.backends.registry import BackendRequest

log = logging.getLogger(__name__)

__all__ = ["QUANTIZED_OPS", "quantized_onnx", "training_patches"]

#: The operators quantised; everything else (InstanceNorm, activations, pooling, Concat,
#: Resize, reductions) stays float, where int8 would cost accuracy for little speed. Neither
#: ONNX Runtime nor OpenVINO runs a quantised ConvTranspose in int8 (both dequantise around a
#: float one), so quantising it would only add rounding. The network's last convolution (the
#: head that writes the logits) stays float too: quantising the logits would flip near-tied labels
#: for the cost of one 1x1 convolution.
QUANTIZED_OPS = ("Conv",)
#: Names the quantisation scheme in cached file names: change it whenever what is quantised, or
#: how, changes, so that no file made by another scheme is reused.
SCHEME = "int8s2"

#: Training cases calibration patches are drawn from (the first ones of the run's split).
CALIBRATION_CASES = 4

_NO_DATA_HINT = (
    "int8 calibrates on the run's training patches: predict from a run folder whose recorded "
    "data.manifest still points at its training data, or use --precision fp32 / bf16"
)
_MISSING_FILE_HINT = (
    "restore the run's training data where its manifest points (relative paths start from data.data_root, "
    "else $MEDSEG_DATA_ROOT, else the manifest's folder), or use --precision fp32 / bf16"
)


# -- quantisation -----------------------------------------------------------------------------------------
def _window_tag(window: Iterable[int]) -> str:
    return "x".join(str(int(s)) for s in window)


def _cached(folder: Path, model_key: str, window: str) -> Path | None:
    """The cached int8 file of this model and window (the one with most patches), if any."""
    pattern = re.compile(rf"^{re.escape(model_key)}-{re.escape(window)}-{SCHEME}-(\d+)p\.onnx$")
    found = [(int(m.group(1)), p) for p in folder.glob("*.onnx") if (m := pattern.match(p.name))]
    return max(found)[1] if found else None


class _PatchReader:
    """ONNX Runtime calibration reader: the calibration batches, split to at most ``chunk`` windows.

    Implements ``onnxruntime.quantization.CalibrationDataReader`` (``get_next``); counts the
    patches it hands out in :attr:`patches`.
    """

    def __init__(self, batches: Iterable[Any], input_name: str, window: tuple[int, ...], chunk: int) -> None:
        self._batches: Iterator[Any] = iter(batches)
        self._pending: list[np.ndarray] = []
        self.input_name = input_name
        self.window = tuple(int(s) for s in window)
        self.chunk = max(int(chunk), 1)
        self.patches = 0

    def _next_batch(self) -> np.ndarray | None:
        for batch in self._batches:
            arr = torch.as_tensor(batch).detach().to("cpu", torch.float32).numpy()
            if arr.ndim == len(self.window):  # one patch without its batch axis
                arr = arr[None]
            if tuple(arr.shape[1:]) != self.window:
                raise ConfigError(
                    f"a calibration batch has shape {list(arr.shape)}, not [n, {_window_tag(self.window)}]",
                    hint="calibration patches must have the inference window's channels and size",
                )
            if arr.shape[0]:
                return np.ascontiguousarray(arr)
        return None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if not self._pending:
            arr = self._next_batch()
            if arr is None:
                return None
            self._pending = [arr[i : i + self.chunk] for i in range(0, arr.shape[0], self.chunk)]
        part = self._pending.pop(0)
        self.patches += part.shape[0]
        return {self.input_name: part}


def _prepare(fp32: Path, out: Path) -> Path:
    """Shape inference and graph clean-up before quantisation (``quant_pre_process``); ``fp32``
    itself when that fails (quantisation still works, at worst on fewer tensors)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False, auto_merge=True)
        return out
    except Exception as exc:  # symbolic shape inference rejects some graphs
        log.warning("ONNX pre-processing failed (%s); quantising the export as it is", str(exc)[:200])
        return fp32


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _head_convolutions(path: Path) -> list[str]:
    """The convolutions whose output reaches the graph output without passing another convolution
    (the head: it writes the logits)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    heads, todo, seen = [], [o.name for o in graph.output], set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("Conv", "ConvTranspose"):
            heads.append(node.name)
        else:
            todo.extend(node.input)
    return heads


def _quantize(source: Path, out: Path, reader: _PatchReader) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(source),
        str(out),
        reader,  # type: ignore[arg-type]  # duck-typed CalibrationDataReader
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_exclude=_head_convolutions(source),
        per_channel=True,
        # VPDPBUSD (AVX512-VNNI / AVX-VNNI) multiplies unsigned 8-bit by signed 8-bit values: uint8
        # activations x int8 weights is the native int8 convolution of both ONNX Runtime's MLAS
        # (QLinearConv U8S8) and OpenVINO's oneDNN kernels; int8 activations cost them a +128
        # shift and a compensation term. Asymmetric uint8 also spends all 256 levels on a
        # post-LeakyReLU tensor, which symmetric int8 would halve. With VNNI the int32
        # accumulation does not saturate, so reduce_range (7-bit weights, for pre-VNNI
        # VPMADDUBSW) is off.
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=False,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "ActivationSymmetric": False,
            "WeightSymmetric": True,
            # no CalibMaxIntermediateOutputs: ONNX Runtime 1.32 drops (does not merge) the ranges it
            # clears; the calibrator keeps only each batch's minima and maxima anyway
        },
    )


def quantized_onnx(request: BackendRequest) -> Path:
    """The int8 QDQ ONNX file of ``request.model`` for windows ``request.window`` (built if absent).

    The file (``{model_key}-{C}x{roi}-{SCHEME}-{patches}p.onnx`` in :func:`.onnx_export.cache_folder`)
    takes float32 windows ``[N, C, *roi]`` and returns float32 logits ``[N, K, *roi]``, like the
    fp32 export. A file of the same weights and window already there is reused without reading
    the calibration data. Otherwise the fp32 export is calibrated on the batches
    ``request.calibration()`` yields (float32 ``[n, C, *roi]``, fed ``request.batch_size`` windows at
    a time) and quantised as the module docstring describes; the file is written atomically.

    Raises:
        ConfigError: ``request.calibration`` is None (no training data to calibrate on), it yields
            nothing, or its batches do not have the window's shape.
        InputNotFoundError: the calibration source cannot find the run's training data.
        MissingDependencyError / MedsegError: the network does not export to ONNX.
    """
    from medseg.io.atomic import atomic_output

    folder = cache_folder(request)
    window = _window_tag(request.window)
    cached = _cached(folder, request.model_key, window)
    if cached is not None:
        return cached
    if request.calibration is None:
        raise ConfigError(
            "int8 needs the run's training data to calibrate on, and none was given", hint=_NO_DATA_HINT
        )
    fp32 = exported_onnx(request)
    log.info("quantising the network to int8 once (calibrating on training patches)")
    with tempfile.TemporaryDirectory(prefix="medseg-int8-") as scratch:
        source = _prepare(fp32, Path(scratch) / "prepared.onnx")
        reader = _PatchReader(request.calibration(), _input_name(source), request.window, request.batch_size)
        out = Path(scratch) / "int8.onnx"
        try:
            _quantize(source, out, reader)
        except ValueError:
            if reader.patches == 0:  # ONNX Runtime: "No data is collected."
                raise ConfigError(
                    "the int8 calibration source yielded no training patches", hint=_NO_DATA_HINT
                ) from None
            raise
        log.info("int8 calibration used %d training patches of %s", reader.patches, window)
        path = folder / f"{request.model_key}-{window}-{SCHEME}-{reader.patches}p.onnx"
        with atomic_output(path) as tmp:
            shutil.move(str(out), str(tmp))
    log.info("int8 model written: %s", path)
    return path


# -- calibration patches ----------------------------------------------------------------------------------
def _manifest_path(run_dir: Path, config: dict[str, Any]) -> Path:
    data = config.get("data") or {}
    manifest = data.get("manifest")
    if not manifest:
        raise InputNotFoundError(f"the config of {run_dir} records no data.manifest", hint=_NO_DATA_HINT)
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise InputNotFoundError(f"the run's training manifest is missing: {path}", hint=_MISSING_FILE_HINT)
    return path


def _training_entries(run_dir: Path, manifest: Any) -> list[Any]:
    """The run's training cases (its ``splits.json``, else the manifest's), labelled ones first."""
    splits = run_dir / "splits.json"
    by_id = {c.id: c for c in manifest.cases}
    if splits.is_file():
        ids = [i for i in json.loads(splits.read_text()).get("train", []) if i in by_id]
    else:
        ids = [c.id for c in manifest.cases if c.split in (None, "train")]
    entries = sorted((by_id[i] for i in ids), key=lambda c: c.label is None)
    if not entries:
        raise InputNotFoundError(
            f"no training case of {run_dir} is in the manifest it records", hint=_NO_DATA_HINT
        )
    for entry in entries[:CALIBRATION_CASES]:
        for f in [*entry.images, *([entry.label] if entry.label else [])]:
            if not Path(f).exists():
                raise InputNotFoundError(
                    f"a training file of the run is missing: {f}", hint=_MISSING_FILE_HINT
                )
    return entries[:CALIBRATION_CASES]


def _preprocessed(entry: Any, manifest: Any, plan: Any, cache_dir: str | None) -> Any:
    """The case through ``plan`` (from the training run's preprocessing cache when it is there)."""
    from medseg.data.cache import PreprocessedCache, case_key
    from medseg.data.cases import load_case

    cache = PreprocessedCache(cache_dir)
    key = case_key(entry, plan.settings_key() + json.dumps(manifest.label_map or {}, sort_keys=True))
    pc = cache.load(key)
    if pc is None:
        loaded = load_case(entry, manifest)
        pc = plan.apply(loaded.image, loaded.label)
    return pc


def _slice_axis(config: dict[str, Any], pc: Any) -> int:
    """The axis 2D models take slices along (as training chose it, from this case's geometry)."""
    from medseg import geometry

    axis = (config.get("preprocessing") or {}).get("slice_axis")
    if axis is not None:
        return int(axis)
    if pc.image.shape[3] == 1:
        return 2
    return int(np.argmax(geometry.spacing(np.array(pc.record.affine))))


def _centre(
    shape: tuple[int, ...], voxels: np.ndarray, foreground: bool, rng: np.random.Generator
) -> np.ndarray:
    """A patch centre (voxel indices on a grid of ``shape``): one of the labelled ``voxels`` (flat
    indices) when ``foreground`` and there are some, else uniform over the grid."""
    if foreground and voxels.size:
        return np.array(np.unravel_index(int(voxels[rng.integers(voxels.size)]), shape))
    return np.array([int(rng.integers(s)) for s in shape])


def _patch(pc: Any, centre: np.ndarray, patch: list[int], slice_axis: int | None) -> torch.Tensor:
    """The window ``[C, *patch]`` of the case centred on ``centre`` (zero outside the case)."""
    from medseg.transforms.augmentation.spatial import SpatialParams, sample_patch

    image = torch.from_numpy(pc.image)
    if slice_axis is not None:  # a 2D model: the slice through the centre
        image = image.select(slice_axis + 1, int(centre[slice_axis]))
        centre = np.delete(centre, slice_axis)
    out, _ = sample_patch(image, None, centre.astype(float), patch, SpatialParams())
    return out


def training_patches(
    run_dir: Path, config: dict[str, Any], plan: Any, n_patches: int = 32, seed: int = 0, batch_size: int = 4
) -> list[torch.Tensor]:
    """Preprocessed training patches of a run, to calibrate int8 quantisation on.

    Reads the first :data:`CALIBRATION_CASES` training cases of the run (its ``splits.json``, from
    the manifest and data root its config records; relative manifest paths resolve against
    ``data.data_root``, else ``$MEDSEG_DATA_ROOT``, else the manifest's folder), puts them through
    ``plan`` (the run's preprocessing, so intensities match what the network saw) and cuts
    ``n_patches`` windows of the training patch size, cycling over the cases: even-numbered
    patches are centred on a labelled voxel (foreground), odd ones anywhere in the case. The
    draw is seeded: the same run, plan and seed give the same patches. Patches are plain crops
    (no augmentation), zero outside the case, as the sliding window pads.

    Args:
        run_dir: The run folder (``splits.json`` names its training cases).
        config: The run's pipeline config as a dict (``PipelineConfig.model_dump(mode="json")``,
            what a checkpoint records under ``config``).
        plan: The :class:`~medseg.transforms.preprocess.Plan` the model was trained with.
        n_patches: How many patches.
        seed: Seed of the centres.
        batch_size: Patches per returned batch.

    Returns:
        float32 batches ``[n, C, *patch]`` (``n <= batch_size``), ``n_patches`` patches in all.

    Raises:
        InputNotFoundError: the manifest or a training file it lists is missing, or no training
            case of the run is in it.
        ConfigError: the manifest is malformed.
    """
    from medseg.data.manifest import load_manifest

    run_dir = Path(run_dir)
    data = config.get("data") or {}
    manifest = load_manifest(_manifest_path(run_dir, config), data.get("data_root"))
    entries = _training_entries(run_dir, manifest)
    patch = [int(p) for p in config["training"]["patch_size"]]
    two_d = int((config.get("model") or {}).get("spatial_dims", len(patch))) == 2
    cases = [_preprocessed(e, manifest, plan, data.get("cache_dir")) for e in entries]
    axes = [_slice_axis(config, pc) if two_d else None for pc in cases]
    labelled = [np.flatnonzero(pc.label > 0) if pc.label is not None else np.zeros(0, int) for pc in cases]
    rng = np.random.default_rng(seed)
    patches = []
    for i in range(int(n_patches)):
        k = i % len(cases)
        centre = _centre(cases[k].image.shape[1:], labelled[k], i % 2 == 0, rng)
        patches.append(_patch(cases[k], centre, patch, axes[k]))
    log.info("%d calibration patches %s from %d training case(s)", len(patches), patch, len(cases))
    step = max(int(batch_size), 1)
    return [torch.stack(patches[i : i + step]).float() for i in range(0, len(patches), step)]
