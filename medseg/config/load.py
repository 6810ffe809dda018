"""Load pipeline YAML into a validated :class:`PipelineConfig` (``yaml.safe_load``, never eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.config.schema import PipelineConfig
from medseg.errors import ConfigError, InputNotFoundError
from medseg.io.guard import guarded_reader


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a section")
    node[keys[-1]] = value


def _format_errors(exc: Any, source: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}: {msg}")
    return f"invalid pipeline config {source}: " + "; ".join(parts)


def config_from_dict(data: dict[str, Any], source: str = "(dict)") -> PipelineConfig:
    """Validate a plain dictionary as a pipeline config (the schema; model and loss names and
    parameters are checked against their registries by
    :func:`medseg.training.config_check.check_registries`, which the trainer and ``medseg train``
    call before any data work).

    Raises:
        ConfigError: naming every invalid or unknown key; an unknown model or loss name or
            parameter names the key and suggests the closest valid one.
    """
    from pydantic import ValidationError

    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _format_errors(exc, source),
            hint="see docs/configuration.md for every key and its meaning",
        ) from None
    return config


@guarded_reader("pipeline config", ConfigError)
def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML file.

    Args:
        path: The YAML file.
        overrides: ``key.sub=value`` strings applied before validation (values parsed as YAML),
            e.g. ``["training.epochs=5", "model.params.features=[8,16,32]"]``.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"no such pipeline config: {p}", hint="give the path of a YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p} is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8 YAML") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{p} is not valid YAML: {message}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of sections (data, model, training...)")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"bad override {item!r}", hint="write overrides as section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.strip(), value)
    data_section = data.get("data")
    if isinstance(data_section, dict):  # relative paths in a pipeline are relative to its folder
        for key in ("manifest", "data_root", "cache_dir"):
            value = data_section.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                data_section[key] = str((p.resolve().parent / value).resolve())
    return config_from_dict(data, str(p))


def dump_config(config: PipelineConfig) -> str:
    """The config as YAML text (what a run folder records)."""
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
