"""Export a network to ONNX once and cache it beside its run folder.

The file name carries the weights' digest, the window shape and the torch version, so a
retrained model or another window size never picks up a stale export. Exports are written
atomically (a killed export leaves no half file). The batch axis is dynamic.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from medseg.inference.backends.registry import BackendRequest

log = logging.getLogger(__name__)

__all__ = ["OPSET", "cache_folder", "exported_onnx", "weights_digest"]

#: The ONNX opset of the exports.
OPSET = 17


#: Attribute types of a module that shape its graph besides its weights (e.g. a threshold).
_PLAIN = (bool, int, float, str, type(None))


def _plain(value: object) -> bool:
    """A number, string, None, or a tuple of them (not a cache holding tensors)."""
    return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(_plain(v) for v in value))


def weights_digest(model: torch.nn.Module) -> str:
    """A 16-hex digest of what identifies an export: the model's config, each submodule's class
    and public plain attributes (numbers, strings, tuples of them: constants of the graph that are
    not weights; not private caches) and its weights and buffers."""
    h = hashlib.sha256(repr(getattr(model, "medseg_config", {})).encode())
    for name, module in model.named_modules():
        plain = sorted(
            (k, v) for k, v in vars(module).items() if k != "training" and not k.startswith("_") and _plain(v)
        )
        h.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}:{plain!r}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_folder(request: BackendRequest) -> Path:
    """The folder exports of ``request`` live in (created): the run folder's ``export/``, or,
    where that cannot be written (a read-only run folder), a folder of this user's own under the
    temporary folder."""
    if request.cache_dir is not None:
        try:
            request.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=request.cache_dir, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
            return request.cache_dir
        except OSError:
            log.warning("cannot write to %s: exporting to a temporary folder instead", request.cache_dir)
    folder = Path(tempfile.gettempdir()) / f"medseg-export-{getattr(os, 'getuid', lambda: 0)()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def exported_onnx(request: BackendRequest) -> Path:
    """The float32 ONNX file of ``request.model`` for windows ``request.window`` (exported if absent).

    Raises:
        MedsegError: the network does not export to ONNX.
    """
    from medseg import __version__
    from medseg.errors import MedsegError
    from medseg.io.atomic import atomic_output

    window = "x".join(str(s) for s in request.window)
    tv = torch.__version__.split("+")[0]
    name = f"{request.model_key}-{window}-torch{tv}-opset{OPSET}-medseg{__version__}.onnx"
    path = cache_folder(request) / name
    if path.is_file():
        return path
    model = request.model
    if next(model.parameters(), torch.zeros(0)).device.type != "cpu":
        import copy

        model = copy.deepcopy(model).to("cpu")  # the caller's model stays where it is
    model.eval()
    example = torch.zeros((request.batch_size, *request.window))
    log.info("exporting the network to ONNX once: %s", path)
    try:
        with atomic_output(path) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["windows"],
                output_names=["logits"],
                dynamic_axes={"windows": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except MedsegError:
        raise
    except Exception as exc:  # the exporter raises many kinds
        raise MedsegError(
            f"the network {getattr(model, 'medseg_config', {}).get('name', '')!r} does not export to ONNX: "
            f"{str(exc).splitlines()[0][:200]}",
            hint="use --backend torch",
        ) from None
    _verify(path, model, request.window)
    return path


def _verify(path: Path, model: torch.nn.Module, window: tuple[int, ...]) -> None:
    """Check a fresh export against the network on one random window (ONNX Runtime, float32).

    Tracing bakes in one branch of any data-dependent ``if``; such an export computes something
    else than the network, and must not be used.

    Raises:
        MedsegError: the export differs from the network (the file is removed).
    """
    import importlib.util

    from medseg.errors import MedsegError

    if importlib.util.find_spec("onnxruntime") is None:
        log.warning("onnxruntime is not installed: the ONNX export is not checked against the network")
        return
    import onnxruntime as ort

    x = torch.randn((1, *window), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    ref = (ref[0] if isinstance(ref, list | tuple) else ref).float().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    diff = float(abs(out - ref).max())
    if diff > 1e-3 * max(1.0, float(abs(ref).max())):
        path.unlink(missing_ok=True)
        raise MedsegError(
            f"the ONNX export of the network does not reproduce it (largest difference {diff:.3g})",
            hint="use --backend torch (the network's output depends on its input in a way tracing misses)",
        )
