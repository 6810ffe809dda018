"""Transfer learning: start a run from another run's weights, and keep the encoder frozen for a while.

**Initialising from a run** (``medseg train --init-from RUN_OR_CHECKPOINT``,
``Trainer(..., init_from=...)``). The source is a run folder (its
``checkpoints/best.pt``, else ``last.pt``, as :meth:`Predictor.from_run` picks
them), a training checkpoint or a model file of :func:`medseg.models.save_model`;
it is read with ``torch.load(weights_only=True)``. Every tensor of the new
model's ``state_dict`` (parameters and buffers) is matched by name:

- **loaded**: same name and shape, copied bit for bit;
- **reshaped**: same name, different shape. A convolution over the input whose
  shapes differ only in the input-channel axis (the source had ``C_src``, the new
  model ``C_new`` input channels) gets input channels ``0 .. min(C_src, C_new) - 1``
  copied by position, and the new model's other channels keep their initialisation
  (put the modality both models share first in the manifest's channel order).
  Any other reshaped tensor, such as the output head of a model with another
  number of classes, keeps its initialisation;
- **missing in source**: only the new model has it (kept at initialisation);
- **extra in source**: only the source has it (ignored).

The outcome is logged (one summary line with the counts) and written to
``init_from.json`` in the run folder. A source of which no parameter matches
(another family) is refused with a :class:`~medseg.errors.ConfigError` naming
both models, as is a source of another dimensionality (2D into 3D). On
``--resume`` the weights are not loaded again: the run's checkpoint holds them.

**Freezing the encoder** (``training.freeze_encoder_epochs: N``). The encoder is
what the model's registry row names in ``encoder_prefixes``. During epochs
``0 .. N-1`` its parameters do not move at all: their gradients are dropped
(set to ``None``) after every backward pass and before clipping and the
optimiser step, and PyTorch's SGD and AdamW skip parameters without a gradient
entirely (no momentum, no weight decay), so no stale momentum or decay moves
them. In a single process they also get ``requires_grad=False``, which saves
their backward pass. Under torchrun (DDP) ``requires_grad`` stays ``True``:
DDP registers its gradient hooks when it wraps the model, and parameters that
stop producing gradients would stall its reduction; the gradients are reduced
as usual and then dropped on every rank alike. The frozen state follows from
the epoch number alone, so resumed runs and all ranks agree. Normalisation
statistics (batch-norm running means) of the encoder still adapt to the new
data; only parameters are frozen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.errors import ConfigError, CorruptFileError, InputNotFoundError
from medseg.io.atomic import write_text_atomic

log = logging.getLogger(__name__)

#: The file written into the run folder.
REPORT_NAME = "init_from.json"

_FIND_HINT = "give a run folder made by 'medseg train' (checkpoints/best.pt or last.pt) or a checkpoint file"


@dataclass(frozen=True)
class SourceWeights:
    """The weights a run starts from.

    Attributes:
        path: The file they were read from.
        model_config: The source model's ``medseg_config`` (name, spatial_dims, channels, params).
        state_dict: Its tensors by name (on the CPU).
        epoch: The epoch (0-based) of a training checkpoint; None for a model file.
    """

    path: Path
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    epoch: int | None = None

    @property
    def model_name(self) -> str:
        return str(self.model_config.get("name", "?"))


@dataclass
class TransferReport:
    """What :func:`apply_init` did, tensor by tensor (written as ``init_from.json``)."""

    source: str
    source_model: str
    model: str
    source_epoch: int | None = None
    loaded: list[str] = field(default_factory=list)
    reshaped: list[dict[str, Any]] = field(default_factory=list)
    missing_in_source: list[str] = field(default_factory=list)
    extra_in_source: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line with the counts."""
        copied = sum(1 for r in self.reshaped if r["action"] != "kept at init")
        epoch = f" epoch {self.source_epoch + 1}" if self.source_epoch is not None else ""
        return (
            f"init-from {self.source} ({self.source_model}{epoch} -> {self.model}): "
            f"{len(self.loaded)} loaded, "
            f"{len(self.reshaped)} reshaped ({copied} input channels copied, "
            f"{len(self.reshaped) - copied} kept at init), {len(self.missing_in_source)} missing in source, "
            f"{len(self.extra_in_source)} extra in source"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), **asdict(self)}


def find_source(path: str | Path) -> Path:
    """The checkpoint file of a run folder (``best.pt``, else ``last.pt``) or ``path`` itself.

    Raises:
        InputNotFoundError: no such path, or a folder without a checkpoint.
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            for candidate in (p / "checkpoints" / name, p / name):
                if candidate.is_file():
                    return candidate
        raise InputNotFoundError(
            f"cannot initialise from {p}: the folder holds no checkpoint", hint=_FIND_HINT
        )
    raise InputNotFoundError(f"cannot initialise from {p}: no such run folder or checkpoint", hint=_FIND_HINT)


def load_source(path: str | Path) -> SourceWeights:
    """Read the weights to start from (see the module docstring for what ``path`` may be).

    Raises:
        InputNotFoundError: no such path, or a folder without a checkpoint.
        CorruptFileError: a file torch cannot read safely, or not a medseg checkpoint or model file.
    """
    from medseg.models.serialization import MODEL_FORMAT, safe_torch_load
    from medseg.training.checkpoint import FORMAT as CHECKPOINT_FORMAT

    file = find_source(path)
    payload = safe_torch_load(
        file,
        "cpu",
        f"cannot initialise from {file}: unreadable checkpoint",
        "it is damaged or not a medseg checkpoint",
    )
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt == CHECKPOINT_FORMAT:
        config, weights = payload.get("model_config"), payload.get("model")
    elif fmt == MODEL_FORMAT:
        config, weights = payload.get("config"), payload.get("state_dict")
    else:
        raise CorruptFileError(
            f"cannot initialise from {file}: not a medseg checkpoint or model file",
            hint="give a run folder, a checkpoint of 'medseg train' or a file of medseg.models.save_model",
        )
    if not (
        isinstance(config, dict)
        and isinstance(weights, dict)
        and all(isinstance(v, torch.Tensor) for v in weights.values())
    ):
        raise CorruptFileError(f"cannot initialise from {file}: it holds no model config and weights")
    epoch = payload.get("epoch") if fmt == CHECKPOINT_FORMAT else None
    return SourceWeights(file, dict(config), dict(weights), int(epoch) if epoch is not None else None)


def source_for(init_from: str | Path | None, resume: bool) -> SourceWeights | None:
    """The trainer's entry point: :func:`load_source`, or None when there is nothing to load
    (no ``init_from``, or a resumed run, whose checkpoint already holds the weights)."""
    if init_from is None:
        return None
    if resume:
        log.info(
            "init-from %s is not applied again on resume: the run's checkpoint holds the weights", init_from
        )
        return None
    return load_source(init_from)


def _input_channel_copy(src: torch.Tensor, new: torch.Tensor, src_in: Any, new_in: Any) -> bool:
    """Whether ``src`` -> ``new`` is a convolution over the input with another channel count."""
    return (
        src.ndim == new.ndim >= 3
        and src.shape[0] == new.shape[0]
        and src.shape[2:] == new.shape[2:]
        and (src.shape[1], new.shape[1]) == (src_in, new_in)
        and src_in != new_in
    )


def match_state(model: nn.Module, source: SourceWeights) -> tuple[dict[str, torch.Tensor], TransferReport]:
    """The tensors to load into ``model`` from ``source`` and the report (nothing is changed).

    Raises:
        ConfigError: another dimensionality, or no parameter matches (another family).
    """
    cfg_new = getattr(model, "medseg_config", {}) or {}
    cfg_src = source.model_config
    name_new, name_src = str(cfg_new.get("name", "?")), source.model_name
    if cfg_src.get("spatial_dims") != cfg_new.get("spatial_dims"):
        raise ConfigError(
            f"cannot initialise the {cfg_new.get('spatial_dims')}D model {name_new!r} from the "
            f"{cfg_src.get('spatial_dims')}D model {name_src!r} of {source.path}",
            hint="initialise from a run of the same dimensionality",
        )
    report = TransferReport(str(source.path), name_src, name_new, source.epoch)
    target = model.state_dict()
    src_in, new_in = cfg_src.get("in_channels"), cfg_new.get("in_channels")
    chosen: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        s = source.state_dict.get(name)
        if s is None:
            report.missing_in_source.append(name)
        elif s.shape == tensor.shape:
            chosen[name] = s
            report.loaded.append(name)
        else:
            entry = {"name": name, "source_shape": list(s.shape), "shape": list(tensor.shape)}
            if _input_channel_copy(s, tensor, src_in, new_in):
                k = min(src_in, new_in)
                merged = tensor.detach().clone()
                merged[:, :k] = s[:, :k].to(merged.dtype)
                chosen[name] = merged
                entry["action"] = f"copied input channels 0..{k - 1}"
            else:
                entry["action"] = "kept at init"
            report.reshaped.append(entry)
    report.extra_in_source = [n for n in source.state_dict if n not in target]
    params = {n for n, _ in model.named_parameters()}
    if not params.intersection(chosen):
        raise ConfigError(
            f"cannot initialise model {name_new!r} from {source.path}: none of the parameters of its "
            f"model {name_src!r} matches by name and shape",
            hint=f"initialise from a run of {name_new!r} (or a related model), or drop --init-from",
        )
    return chosen, report


def apply_init(model: nn.Module, source: SourceWeights, run_dir: str | Path | None = None) -> TransferReport:
    """Load the matching tensors of ``source`` into ``model`` (in place, see the module docstring);
    log the outcome and, with ``run_dir``, write it to ``run_dir/init_from.json``.

    Raises:
        ConfigError: another dimensionality, or no parameter matches (another family).
    """
    chosen, report = match_state(model, source)
    model.load_state_dict(chosen, strict=False)
    log.info("%s", report.summary())
    for r in report.reshaped:
        log.info("init-from: %s %s -> %s: %s", r["name"], r["source_shape"], r["shape"], r["action"])
    for what, names in (
        ("missing in source", report.missing_in_source),
        ("extra in source", report.extra_in_source),
    ):
        if names:
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            log.info("init-from: %s: %s%s", what, ", ".join(names[:10]), more)
    if run_dir is not None:
        write_text_atomic(Path(run_dir) / REPORT_NAME, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def encoder_parameters(model: nn.Module, model_name: str) -> list[tuple[str, nn.Parameter]]:
    """The parameters under the encoder prefixes of registry model ``model_name`` (module paths
    inside :attr:`SegmentationModel.net <medseg.models._wrapper.SegmentationModel>`).

    Raises:
        ConfigError: an unknown model name.
    """
    from medseg.models.factory import get_spec

    prefixes = tuple(f"net.{p}" for p in get_spec(model_name).encoder_prefixes)
    return [
        (n, p) for n, p in model.named_parameters() if any(n == q or n.startswith(q + ".") for q in prefixes)
    ]


class EncoderFreezer:
    """Keeps a model's encoder frozen during its first ``epochs`` epochs (see the module docstring).

    Call :meth:`set_epoch` at the start of every epoch and :meth:`drop_grads` after every backward
    pass (before gradient clipping and the optimiser step).

    Args:
        model: A model of :func:`medseg.models.build_model` (not the DDP wrapper).
        model_name: Its registry name (whose row gives the encoder prefixes).
        epochs: ``training.freeze_encoder_epochs``; 0 freezes nothing.
        distributed: Whether the model is wrapped in DDP (``requires_grad`` then stays on).
        pretrained: Whether the weights come from ``--init-from`` (or a resumed run); freezing a
            randomly initialised encoder is allowed but warned about.

    Raises:
        ConfigError: ``epochs > 0`` for a model whose registry row names no encoder parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        model_name: str,
        epochs: int,
        distributed: bool = False,
        pretrained: bool = True,
    ) -> None:
        self.epochs = int(epochs)
        if self.epochs and not pretrained:
            log.warning(
                "training.freeze_encoder_epochs: %d without --init-from freezes a randomly initialised "
                "encoder for those epochs",
                self.epochs,
            )
        self.distributed = distributed
        self.frozen = False
        self.params = [p for _, p in encoder_parameters(model, model_name)] if self.epochs else []
        if self.epochs and not self.params:
            raise ConfigError(
                f"training.freeze_encoder_epochs: the model {model_name!r} declares no encoder to freeze",
                hint="set training.freeze_encoder_epochs: 0",
            )

    def set_epoch(self, epoch: int) -> None:
        """Freeze (epoch < ``epochs``) or unfreeze the encoder for 0-based ``epoch``."""
        frozen = epoch < self.epochs
        if frozen != self.frozen:
            n = sum(p.numel() for p in self.params)
            if frozen:
                log.info(
                    "encoder frozen for epochs 1-%d (%d tensors, %d parameters)",
                    self.epochs,
                    len(self.params),
                    n,
                )
            else:
                log.info("encoder unfrozen from epoch %d", epoch + 1)
        self.frozen = frozen
        if not self.distributed:
            for p in self.params:
                p.requires_grad_(not frozen)

    def drop_grads(self) -> None:
        """While frozen: remove the encoder's gradients, so the optimiser skips those parameters."""
        if self.frozen:
            for p in self.params:
                p.grad = None
