"""Which labels to evaluate and what they are called.

``--labels`` accepts every form :func:`medseg.labels.load_labels` reads (one parser for
the whole package):

* ``"1:liver,2:spleen"`` (ids with names) or ``"1,2"`` (ids only, named ``label_1``...);
* a JSON or YAML labels file (``{"1": "liver", "2": "spleen"}``, or the full export form),
  or a dataset description holding such a mapping under ``"labels"`` in either direction
  (MSD's ``{"0": "background", "1": "Anterior"}`` or nnU-Net v2's ``{"background": 0, "liver": 1}``).

Label 0 is background and is never evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from medseg.labels import LabelSource, default_name, load_labels

__all__ = ["default_name", "labels_present", "parse_labels"]


def parse_labels(spec: LabelSource | Iterable[int] | None) -> dict[int, str] | None:
    """Parse a label specification into ``{id: name}`` without background (0).

    Args:
        spec: Anything :func:`medseg.labels.load_labels` reads, a sequence of ids, or None
            (meaning: all labels found in the references).

    Returns:
        The labels sorted by id, or None when ``spec`` is None.

    Raises:
        ConfigError: a malformed specification or labels file.
        InputNotFoundError: a labels file that does not exist.
    """
    if spec is None:
        return None
    if not isinstance(spec, (str, bytes)) and isinstance(spec, Iterable) and not hasattr(spec, "keys"):
        spec = list(spec)
    labels = load_labels(spec, note_codes=False)
    return {label.index: label.name for label in labels.labels}


def labels_present(arrays: Iterable[np.ndarray]) -> list[int]:
    """Sorted foreground labels (> 0) occurring in any of ``arrays``."""
    found: set[int] = set()
    for a in arrays:
        found.update(int(v) for v in np.unique(a) if v > 0)
    return sorted(found)
