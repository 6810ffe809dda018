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
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import ConfigError, InputNotFoundError

log = logging.getLogger(__name__)

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "snomed_labels.json"

#: RT ROI Interpreted Type values (DICOM PS3.3 C.8.8.8) accepted in labels files.
RT_TYPES = (
    "",
    "EXTERNAL",
    "PTV",
    "CTV",
    "GTV",
    "AVOIDANCE",
    "ORGAN",
    "MARKER",
    "CAVITY",
    "CONTROL",
    "SUPPORT",
    "FIXATION",
    "BOLUS",
    "TREATED_VOLUME",
    "IRRAD_VOLUME",
    "CONTRAST_AGENT",
    "REGISTRATION",
    "ISOCENTER",
    "DOSE_REGION",
    "BRACHY_CHANNEL",
    "BRACHY_ACCESSORY",
    "BRACHY_SRC_APP",
    "BRACHY_CHNL_SHLD",
    "DOSE_MEASUREMENT",
)

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


def _parse(data: Any, origin: str) -> LabelSet:
    if isinstance(data, LabelSet):
        return data
    if isinstance(data, dict) and "labels" in data:
        items = data["labels"]
        extra = sorted(set(data) - {"labels"})
        if extra:
            raise ConfigError(f"{origin}: unknown key(s) {', '.join(extra)}", hint="only 'labels' is allowed")
    elif isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        items = []
        for key, value in data.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{origin}: key {key!r} is not a label value",
                    hint='use {"1": "liver", ...} or {"labels": [{"index": 1, "name": "liver"}]}',
                ) from None
            if index == 0:
                continue  # background, often listed in class maps
            entry = {"name": value} if isinstance(value, str) else dict(value or {})
            entry.setdefault("index", index)
            items.append(entry)
    else:
        raise ConfigError(f"{origin}: expected a mapping or a list of labels, got {type(data).__name__}")
    try:
        return LabelSet(labels=items)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{origin}: invalid labels ({where}: {first['msg']})",
            hint="see docs/export.md for the labels file format",
        ) from None


def load_labels(source: str | Path | dict | list | LabelSet) -> LabelSet:
    """Load and validate a labels file (JSON or YAML) or an equivalent dict/list.

    Raises:
        InputNotFoundError: the file does not exist.
        ConfigError: the content is not a valid labels description.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InputNotFoundError(f"no such labels file: {path}", hint="check the --labels path")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:
            raise ConfigError(f"cannot parse labels file {path}: {exc}") from None
        labels = _parse(data, str(path))
    else:
        labels = _parse(source, "labels")
    for label in labels.labels:
        if label.note:
            log.info("label %d: %s", label.index, label.note)
    return labels
