"""Which labels to evaluate and what they are called.

``--labels`` accepts:

* ``"1:liver,2:spleen"`` (ids with names) or ``"1,2"`` (ids only, named ``label_1``...);
* a JSON file mapping ids to names (``{"1": "liver", "2": "spleen"}``), or a dataset
  description holding such a mapping under ``"labels"`` in either direction (MSD's
  ``{"0": "background", "1": "Anterior"}`` or nnU-Net v2's ``{"background": 0, "liver": 1}``).

Label 0 is background and is never evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError, InputNotFoundError

__all__ = ["default_name", "labels_present", "parse_labels"]

_HINT = 'use "1:liver,2:spleen", "1,2", or a JSON file mapping ids to names ({"1": "liver"})'


def default_name(label: int) -> str:
    """Name given to a label that has none: ``label_<id>``."""
    return f"label_{label}"


def _as_id(value: Any, source: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"label id {value!r} in {source} is not an integer", hint=_HINT) from None
    if not number.is_integer() or number < 0:
        raise ConfigError(f"label id {value!r} in {source} is not a non-negative integer", hint=_HINT)
    return int(number)


def _from_mapping(mapping: Mapping[Any, Any], source: str) -> dict[int, str]:
    if "labels" in mapping and isinstance(mapping["labels"], Mapping):
        mapping = mapping["labels"]
    out: dict[int, str] = {}
    for key, value in mapping.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not str(key).strip().isdigit():
            label, name = _as_id(value, source), str(key)  # nnU-Net v2: name -> id
        elif isinstance(value, (list, tuple)):  # nnU-Net region labels: not plain labels
            raise ConfigError(f"label {key!r} in {source} is a region (list of ids)", hint=_HINT)
        else:
            label, name = _as_id(key, source), str(value)
        out[label] = name
    return out


def parse_labels(spec: str | Path | Mapping[Any, Any] | Iterable[int] | None) -> dict[int, str] | None:
    """Parse a label specification into ``{id: name}`` without background (0).

    Args:
        spec: A ``"1:liver,2:spleen"`` or ``"1,2"`` string, a path to a JSON file, a mapping,
            a sequence of ids, or None (meaning: all labels found in the references).

    Returns:
        The labels sorted by id, or None when ``spec`` is None.

    Raises:
        ConfigError: a malformed specification or JSON file.
        InputNotFoundError: a ``.json`` path that does not exist.
    """
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        labels = _from_mapping(spec, "the label mapping")
    elif isinstance(spec, (str, Path)):
        text = str(spec).strip()
        path = Path(text)
        if text.lower().endswith(".json") or path.is_file():
            if not path.is_file():
                raise InputNotFoundError(f"label file {path} does not exist", hint=_HINT)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"cannot read labels from {path}: {exc}", hint=_HINT) from exc
            if not isinstance(data, Mapping):
                raise ConfigError(f"{path} does not hold a JSON object of labels", hint=_HINT)
            labels = _from_mapping(data, str(path))
        else:
            labels = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, _, name = part.partition(":")
                label = _as_id(key.strip(), f"--labels {text!r}")
                labels[label] = name.strip() or default_name(label)
    else:
        labels = {_as_id(v, "the label list"): default_name(_as_id(v, "the label list")) for v in spec}
    labels.pop(0, None)
    if not labels:
        raise ConfigError(f"no foreground label in {spec!r}", hint=_HINT)
    return dict(sorted(labels.items()))


def labels_present(arrays: Iterable[np.ndarray]) -> list[int]:
    """Sorted foreground labels (> 0) occurring in any of ``arrays``."""
    found: set[int] = set()
    for a in arrays:
        found.update(int(v) for v in np.unique(a) if v > 0)
    return sorted(found)
