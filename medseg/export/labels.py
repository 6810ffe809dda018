"""Label files for export: re-exported from the core module :mod:`medseg.labels`.

Kept so that ``from medseg.export.labels import LabelSet, load_labels`` keeps working;
the labels model lives in core because readers (``medseg.io``), evaluation and
export all use it.
"""

from medseg.labels import (
    PALETTE,
    RT_TYPES,
    TABLE_PATH,
    CodeSpec,
    LabelSet,
    LabelSource,
    LabelSpec,
    RTROIInterpretedType,
    load_labels,
    lookup_builtin,
    normalize_name,
)

__all__ = [
    "PALETTE",
    "RT_TYPES",
    "TABLE_PATH",
    "CodeSpec",
    "LabelSet",
    "LabelSource",
    "LabelSpec",
    "RTROIInterpretedType",
    "load_labels",
    "lookup_builtin",
    "normalize_name",
]
