"""Label files: what each class of a mask is called, its colour and its coded meaning.

A labels file (JSON or YAML) names each label value of a mask. Two forms are accepted:

* the short form, a mapping from label value to name, e.g. ``{"1": "liver", "2": "tumour"}``
  (TotalSegmentator's ``class_map`` files have this form);
* the full form, ``{"labels": [{"index": 1, "name": "liver", "color": [221, 130, 101],
  "category": {...}, "type": {...}, "modifier": {...}}]}`` (or just the list), where a
  code is ``{"value": "10200004", "scheme": "SCT", "meaning": "Liver"}``.

Anything left out is filled from medseg's built-in table of SNOMED CT codes
(``medseg/data/snomed_labels.json``), found by name: ``"kidney_left"`` becomes
*Anatomical Structure* / *Kidney* with the laterality modifier *Left*. A name the
table does not know is coded as the generic category and type *Tissue*, and the
label carries a note saying so (viewers then still show its name and colour).

The same :class:`LabelSet` reads every other way medseg is told about labels
(``--labels`` of ``medseg evaluate`` and ``medseg export``, manifests):

* ``"1:liver,2:spleen"`` (values with names) or ``"1,2"`` (values only, named ``label_1``...);
* a list of label values;
* a dataset description holding a mapping under ``"labels"``, in either direction:
  MSD's ``{"0": "background", "1": "Anterior"}`` or nnU-Net v2's ``{"background": 0, "liver": 1}``
  (its other keys are ignored).

Value 0 is background and is dropped wherever it is listed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import ConfigError, InputNotFoundError

log = logging.getLogger(__name__)

TABLE_PATH = Path(__file__).resolve().parent / "data" / "snomed_labels.json"


class RTROIInterpretedType(str, Enum):
    """RT ROI Interpreted Type (DICOM PS3.3 C.8.8.8, RT ROI Observations) accepted in labels files."""

    EXTERNAL = "EXTERNAL"
    PTV = "PTV"
    CTV = "CTV"
    GTV = "GTV"
    AVOIDANCE = "AVOIDANCE"
    ORGAN = "ORGAN"
    MARKER = "MARKER"
    CAVITY = "CAVITY"
    CONTROL = "CONTROL"
    SUPPORT = "SUPPORT"
    FIXATION = "FIXATION"
    BOLUS = "BOLUS"
    TREATED_VOLUME = "TREATED_VOLUME"
    IRRAD_VOLUME = "IRRAD_VOLUME"
    CONTRAST_AGENT = "CONTRAST_AGENT"
    REGISTRATION = "REGISTRATION"
    ISOCENTER = "ISOCENTER"
    DOSE_REGION = "DOSE_REGION"
    BRACHY_CHANNEL = "BRACHY_CHANNEL"
    BRACHY_ACCESSORY = "BRACHY_ACCESSORY"
    BRACHY_SRC_APP = "BRACHY_SRC_APP"
    BRACHY_CHNL_SHLD = "BRACHY_CHNL_SHLD"
    DOSE_MEASUREMENT = "DOSE_MEASUREMENT"


#: RT ROI Interpreted Type values accepted in labels files ("" = unset).
RT_TYPES: tuple[str, ...] = ("", *(t.value for t in RTROIInterpretedType))

#: Colours for labels that neither the user nor the built-in table colour (cycled by index).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)


class CodeSpec(BaseModel):
    """A coded concept: ``value`` in coding ``scheme`` (SCT = SNOMED CT), with its meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(default="SCT", min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)
    scheme_version: str | None = None

    def to_highdicom(self):  # -> highdicom.sr.CodedConcept
        """This code as a ``highdicom.sr.CodedConcept``."""
        from highdicom.sr import CodedConcept

        return CodedConcept(self.value, self.scheme, self.meaning, self.scheme_version)


class LabelSpec(BaseModel):
    """One class of a label map.

    Attributes:
        index: Label value in the mask (1..65535; 0 is background).
        name: Display name (segment label / ROI name), at most 64 characters.
        color: Display colour (r, g, b), 0-255 each.
        category: Segmented property category (e.g. SCT 91723000 *Anatomical Structure*).
        type: Segmented property type (e.g. SCT 10200004 *Liver*).
        modifier: Optional type modifier (e.g. SCT 7771000 *Left*).
        rt_type: RT ROI Interpreted Type for RTSTRUCT (``ORGAN``, ``GTV``...; empty = unset).
        description: Optional free-text description.
        note: Set by medseg when codes could not be found (generic *Tissue* coding).
    """

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=1, le=65535)
    name: str = Field(min_length=1, max_length=64)
    color: tuple[int, int, int] | None = None
    category: CodeSpec | None = None
    type: CodeSpec | None = None
    modifier: CodeSpec | None = None
    rt_type: str | None = None
    description: str | None = Field(default=None, max_length=64)
    note: str | None = None

    @field_validator("color")
    @classmethod
    def _check_color(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and not all(0 <= c <= 255 for c in value):
            raise ValueError(f"colour components must be within 0-255, got {list(value)}")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        value = value.strip()
        if not value or "\\" in value:
            raise ValueError("a label name must be non-empty and must not contain a backslash")
        return value

    @field_validator("rt_type")
    @classmethod
    def _check_rt_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        if value not in RT_TYPES:
            raise ValueError(f"rt_type must be one of {', '.join(t for t in RT_TYPES if t)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _fill_from_table(self) -> LabelSpec:
        if self.type is not None and self.category is None:
            raise ValueError(f"label {self.index} ({self.name}) gives a type code but no category code")
        known = lookup_builtin(self.name)
        if self.type is None:
            if known is not None:
                self.category, self.type = known["category"], known["type"]
                if self.modifier is None:
                    self.modifier = known.get("modifier")
            else:
                table = _table()
                self.category = table["categories"]["tissue"]
                self.type = table["generic_type"]
                self.note = (
                    f"no SNOMED CT code is known for {self.name!r}: coded as generic Tissue "
                    "(give category and type codes in the labels file to code it)"
                )
        if self.color is None:
            self.color = tuple(known["color"]) if known else PALETTE[(self.index - 1) % len(PALETTE)]
        if self.rt_type is None:
            self.rt_type = known.get("rt_type", "") if known else ""
        return self


class LabelSet(BaseModel):
    """The classes of a label map, by index."""

    model_config = ConfigDict(extra="forbid")

    labels: list[LabelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> LabelSet:
        seen: dict[int, str] = {}
        names: dict[str, int] = {}
        for label in self.labels:
            if label.index in seen:
                raise ValueError(
                    f"label value {label.index} is named twice ({seen[label.index]}, {label.name})"
                )
            seen[label.index] = label.name
            key = normalize_name(label.name)
            if key in names:
                raise ValueError(f"labels {names[key]} and {label.index} share the name {label.name!r}")
            names[key] = label.index
        self.labels.sort(key=lambda x: x.index)
        return self

    @property
    def indices(self) -> list[int]:
        """Label values, ascending."""
        return [label.index for label in self.labels]

    def get(self, index: int) -> LabelSpec | None:
        """The label with value ``index``, or None."""
        for label in self.labels:
            if label.index == index:
                return label
        return None

    def find(self, name: str) -> LabelSpec | None:
        """The label whose name matches ``name`` (case, spaces and underscores ignored), or None."""
        key = normalize_name(name)
        for label in self.labels:
            if normalize_name(label.name) == key:
                return label
        return None

    @classmethod
    def generic(cls, indices: list[int]) -> LabelSet:
        """Labels named ``Segment N`` for the given values (used when no labels file is given)."""
        return cls(labels=[LabelSpec(index=i, name=f"Segment {i}") for i in indices])


def normalize_name(name: str) -> str:
    """Lower case, ``_``/``-``/``.`` as spaces, single spaces: ``"Kidney_Left"`` -> ``"kidney left"``."""
    return " ".join(re.sub(r"[_\-./]+", " ", name.lower()).split())


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    raw = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    categories = {k: CodeSpec(**v) for k, v in raw["categories"].items()}
    by_name: dict[str, dict[str, Any]] = {}
    for entry in raw["entries"]:
        record = {
            "category": categories[entry["category"]],
            "type": CodeSpec(**entry["type"]),
            "color": entry["color"],
            "rt_type": entry.get("rt_type", ""),
        }
        for name in [entry["name"], *entry.get("synonyms", [])]:
            by_name[normalize_name(name)] = record
    return {
        "categories": categories,
        "generic_type": CodeSpec(**raw["generic_type"]),
        "modifiers": {k: CodeSpec(**v) for k, v in raw["modifiers"].items()},
        "by_name": by_name,
    }


def lookup_builtin(name: str) -> dict[str, Any] | None:
    """Codes, colour and RT type for ``name`` from the built-in table, or None.

    The name is normalised (case, ``_`` and ``-`` ignored); a ``left``/``right`` word
    becomes a laterality modifier and a trailing number (``rib_left_6``) is dropped
    when the full name is not in the table.
    """
    table = _table()
    by_name = table["by_name"]
    key = normalize_name(name)
    if key in by_name:
        return dict(by_name[key])
    words = key.split()
    side = next((w for w in words if w in ("left", "right")), None)
    rest = [w for w in words if w not in ("left", "right")]
    candidates = [" ".join(rest)]
    if rest and rest[-1].isdigit():
        candidates.append(" ".join(rest[:-1]))
    for candidate in candidates:
        if candidate in by_name:
            record = dict(by_name[candidate])
            if side:
                record["modifier"] = table["modifiers"][side]
            return record
    return None


#: What a labels argument may be: a file, an inline ``"1:liver,2:spleen"``, a mapping, a list.
LabelSource: TypeAlias = "str | Path | Mapping[Any, Any] | Sequence[Any] | LabelSet"

_HINT = (
    'use "1:liver,2:spleen", "1,2", or a JSON/YAML file such as {"1": "liver"} '
    "(see docs/export.md for the full form)"
)


def _as_index(value: Any, origin: str) -> int:
    """A label value from a key, a value or an inline item (``"2"``, ``2``, ``2.0``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: {value!r} is not a label value (not an integer)", hint=_HINT) from None
    if not number.is_integer() or number < 0:
        raise ConfigError(f"{origin}: {value!r} is not a label value (not an integer >= 0)", hint=_HINT)
    return int(number)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mapping_items(mapping: Mapping[Any, Any], origin: str) -> list[Any]:
    """Label entries of a mapping: ``{"1": "liver"}``, ``{"1": {...}}`` or nnU-Net's ``{"liver": 1}``."""
    items: list[Any] = []
    for key, value in mapping.items():
        if _is_number(value) and not str(key).strip().isdigit():
            index, entry = _as_index(value, origin), {"name": str(key)}  # nnU-Net v2: name -> value
        elif isinstance(value, (list, tuple)):
            raise ConfigError(f"{origin}: label {key!r} is a region (a list of values)", hint=_HINT)
        else:
            index = _as_index(key, origin)
            entry = {"name": value} if isinstance(value, str) else dict(value or {})
        entry.setdefault("index", index)
        if index:  # value 0 is background, often listed in class maps
            items.append(entry)
    return items


def _inline_items(text: str) -> list[Any]:
    """Entries of ``"1:liver,2:spleen"`` or ``"1,2"`` (unnamed values are called ``label_N``)."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, name = part.partition(":")
        index = _as_index(key.strip(), f"labels {text!r}")
        if index:
            items.append({"index": index, "name": name.strip() or default_name(index)})
    return items


def default_name(index: int) -> str:
    """Name given to a label value that has none: ``label_<value>``."""
    return f"label_{index}"


def _items(data: Any, origin: str) -> list[Any]:
    if isinstance(data, Mapping) and "labels" in data:
        inner = data["labels"]
        if isinstance(inner, Mapping):  # a dataset description (MSD, nnU-Net): other keys ignored
            return _mapping_items(inner, origin)
        extra = sorted(set(data) - {"labels"})
        if extra:
            raise ConfigError(f"{origin}: unknown key(s) {', '.join(extra)}", hint="only 'labels' is allowed")
        return list(inner) if isinstance(inner, (list, tuple)) else [inner]
    if isinstance(data, Mapping):
        return _mapping_items(data, origin)
    if isinstance(data, (list, tuple)) and data and all(_is_number(v) for v in data):
        indices = [i for i in (_as_index(v, origin) for v in data) if i]
        return [{"index": i, "name": default_name(i)} for i in indices]
    if isinstance(data, (list, tuple)):
        return list(data)
    raise ConfigError(
        f"{origin}: expected a mapping or a list of labels, got {type(data).__name__}", hint=_HINT
    )


def _parse(data: Any, origin: str) -> LabelSet:
    """A validated LabelSet from parsed data (background entries dropped)."""
    if isinstance(data, LabelSet):
        return data
    items = _items(data, origin)
    if not items:
        raise ConfigError(f"{origin}: no foreground label (value 0 is background)", hint=_HINT)
    try:
        return LabelSet(labels=items)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{origin}: invalid labels ({where}: {first['msg']})",
            hint="see docs/export.md for the labels file format",
        ) from None


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise InputNotFoundError(f"no such labels file: {path}", hint="check the --labels path")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:
        raise ConfigError(f"cannot read labels from {path}: cannot parse it ({exc})", hint=_HINT) from None


_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def load_labels(source: LabelSource, note_codes: bool = True) -> LabelSet:
    """Load and validate labels from any of the forms the module docstring lists.

    A :class:`~pathlib.Path`, or a string naming an existing file or ending in
    ``.json``/``.yaml``/``.yml``, is read as a labels file; another string is the inline
    ``"1:liver,2:spleen"`` form.

    Args:
        source: The labels.
        note_codes: Log (info) each label whose name has no known SNOMED CT code.

    Raises:
        InputNotFoundError: a labels file that does not exist.
        ConfigError: the content is not a valid labels description.
    """
    if isinstance(source, Path) or (
        isinstance(source, str)
        and (source.strip().lower().endswith(_FILE_SUFFIXES) or Path(source.strip()).is_file())
    ):
        path = Path(str(source).strip())
        labels = _parse(_read_file(path), str(path))
    elif isinstance(source, str):
        labels = _parse(_inline_items(source), f"labels {source!r}")
    else:
        labels = _parse(source, "labels")
    if note_codes:
        for label in labels.labels:
            if label.note:
                log.info("label %d: %s", label.index, label.note)
    return labels
