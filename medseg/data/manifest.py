"""Dataset manifests: the Medical Segmentation Decathlon layout and medseg's own format.

A medseg manifest (JSON or YAML) lists cases::

    name: isbi2012
    labels: {0: background, 1: membrane}
    channels: [em]
    label_map: {0: 1, 255: 0}        # optional: raw label value -> class index
    cases:
      - {id: slice00, images: [isbi2012_em/train/image/0.png], label: isbi2012_em/train/label/0.png,
         split: train}

A case may name its ``group`` (the patient, when a patient has several cases): validation splits
and cross-validation folds then keep every case of a group on one side.

Relative paths start from the data root: the ``data_root`` argument (CLI
``--data-root``), else ``$MEDSEG_DATA_ROOT``, else the manifest's own folder.
An MSD ``dataset.json`` is read as it is (paths relative to its folder). Its ``labels`` may map
values to names (MSD) or names to values (nnU-Net v2); names mapped to lists of values declare
regions, painted with the values of ``regions_class_order`` as nnU-Net does
(:mod:`medseg.data.regions`). A medseg manifest declares them as
``regions: [{name: core, labels: [1, 4], value: 1}, ...]``.
A label may be a DICOM SEG or RTSTRUCT file; its reference series is then the
case's (single) image, a DICOM folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.config.schema import RegionConfig, check_region_list
from medseg.errors import ConfigError, InputNotFoundError
from medseg.io.formats import case_id
from medseg.io.guard import guarded_reader

DATA_ROOT_ENV = "MEDSEG_DATA_ROOT"


class CaseEntry(BaseModel):
    """One case: its image file(s) (one per channel) and optional label.

    ``id`` and ``group`` may be written as whole numbers (patient numbers often are): they are read as
    their decimal text, so ``group: 1007`` and ``group: "1007"`` are the same patient. Other numbers
    (``1007.0``, NaN from a spreadsheet's empty cell) and booleans are refused, as they would name
    patients ambiguously; quote ids with leading zeros (YAML reads ``0012`` as octal).
    """

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    images: list[str] = Field(min_length=1)
    label: str | None = None
    split: Literal["train", "val", "test"] | None = None
    group: str | None = Field(
        None,
        min_length=1,
        description="the patient (or other unit) the case belongs to: validation splits and folds keep "
        "a group's cases together, so no patient is on both sides",
    )

    @field_validator("id", "group", mode="before")
    @classmethod
    def _whole_number_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class Manifest(BaseModel):
    """A validated manifest with absolute paths (see the module docstring for the format)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "dataset"
    labels: dict[int, str] = Field(description="class index -> name, 0 = background")
    channels: list[str] = Field(default_factory=lambda: ["image"])
    label_map: dict[int, int] | None = None
    modality: str | None = None
    channels_in_one_file: bool = Field(
        False, description="all channels of a case are the 4th axis of one file (MSD multi-modal)"
    )
    regions: list[RegionConfig] | None = Field(
        None, min_length=1, description="regions for region-based training, in paint order"
    )
    cases: list[CaseEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self) -> Manifest:
        if 0 not in self.labels:
            raise ValueError("labels must include 0 (background)")
        if self.regions is not None:
            check_region_list(self.regions, self.labels)
        ids = [c.id for c in self.cases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate case ids: {', '.join(dupes[:10])}")
        for c in self.cases:
            if len(c.images) != (1 if self.channels_in_one_file else len(self.channels)):
                raise ValueError(
                    f"case {c.id} has {len(c.images)} image(s) but {len(self.channels)} channel(s) "
                    f"are declared ({', '.join(self.channels)})"
                )
        return self

    @property
    def n_classes(self) -> int:
        return max(self.labels) + 1

    def split(self, name: str) -> list[CaseEntry]:
        return [c for c in self.cases if c.split == name]


def resolve_data_root(manifest_path: Path, data_root: str | Path | None) -> Path:
    """The folder relative manifest paths start from."""
    if data_root:
        return Path(data_root).expanduser().resolve()
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return manifest_path.resolve().parent


def _msd_labels(data: dict[str, Any], source: str) -> tuple[Any, list[RegionConfig] | None]:
    """Labels (value -> name) and regions of a dataset.json: MSD's ``{"1": "edema"}``, nnU-Net v2's
    ``{"edema": 1}``, or nnU-Net v2 regions ``{"core": [1, 4]}`` with ``regions_class_order``."""
    from medseg.data.regions import as_label_value, regions_from_nnunet

    raw = data.get("labels", {})
    if not isinstance(raw, dict) or all(str(k).strip().isdigit() for k in raw):
        return ({int(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else raw), None
    if not any(isinstance(v, (list, tuple)) and len(v) > 1 for v in raw.values()):  # as nnU-Net
        flat = {n: (v[0] if isinstance(v, (list, tuple)) and v else v) for n, v in raw.items()}
        return {as_label_value(v, source): str(n) for n, v in flat.items()}, None
    regions = regions_from_nnunet(raw, data.get("regions_class_order"), source)
    labels = {0: "background"}
    for value in sorted({v for r in regions for v in r.labels}):
        labels[value] = next((r.name for r in regions if r.labels == [value]), f"label_{value}")
    return labels, regions


def _from_msd(data: dict[str, Any], source: str = "dataset.json") -> dict[str, Any]:
    labels, regions = _msd_labels(data, source)
    modality = data.get("modality") or data.get("channel_names") or {"0": "image"}  # MSD, nnU-Net v2
    channels = [str(modality[k]) for k in sorted(modality, key=int)]
    cases = []
    for entry in data.get("training", []):
        image = str(entry["image"])
        cases.append({"id": case_id(image), "images": [image], "label": entry.get("label")})
    return {
        "name": str(data.get("name", "msd")),
        "labels": labels,
        "channels": channels,
        "modality": channels[0] if len(channels) == 1 else None,
        "channels_in_one_file": len(channels) > 1,
        "regions": [r.model_dump() for r in regions] if regions else None,
        "cases": cases,
    }


@guarded_reader("manifest", ConfigError)
def load_manifest(path: str | Path, data_root: str | Path | None = None) -> Manifest:
    """Read an MSD ``dataset.json`` or a medseg manifest and make its paths absolute.

    Raises:
        InputNotFoundError: the manifest file is missing.
        ConfigError: the manifest is malformed (every problem named).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"no such manifest: {p}", hint="give a dataset.json or a medseg manifest")
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} is not valid JSON/YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping with 'labels' and 'cases'")
    is_msd = "training" in data and "cases" not in data
    root = (
        resolve_data_root(p, data_root)
        if not is_msd
        else (Path(data_root).resolve() if data_root else p.resolve().parent)
    )
    if is_msd:
        data = _from_msd(data, str(p))
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid manifest {p}: {problems}") from None

    def absolute(rel: str) -> str:
        q = Path(rel).expanduser()
        return str(q if q.is_absolute() else (root / q).resolve())

    for case in manifest.cases:
        case.images = [absolute(i) for i in case.images]
        if case.label:
            case.label = absolute(case.label)
    return manifest
