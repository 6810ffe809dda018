"""Lesion-wise results inside an evaluation folder (``medseg evaluate --lesions``).

:class:`~medseg.evaluation.workflow.Evaluator` measures each case and class with
:func:`~medseg.evaluation.lesions.evaluate_lesions` (and, given probability maps,
:func:`~medseg.evaluation.froc.lesion_candidates`); this module turns those results into the
files of the evaluation folder:

* ``metrics.csv`` gains, after the usual columns, one value per row (case and class):
  ``lesion_dice``, ``lesion_hd95`` (mm), ``n_ref_lesions``, ``n_pred_lesions``, ``n_fp`` and,
  per IoU threshold t, ``lesion_sensitivity@t`` and ``lesion_f1@t`` (:func:`lesion_columns`);
* ``summary.json`` gains ``lesions``: per class, :meth:`LesionSummary.to_dict` (pooled
  detection, size strata, FROC) with the class name;
* ``lesions.json`` holds every case's per-lesion table (:meth:`LesionCaseResult.to_dict`)
  and FROC candidates.

:func:`read_lesion_values` reads the per-row values back (``medseg compare`` and the report use it).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import ConfigError, CorruptFileError, InputNotFoundError
from medseg.evaluation.lesions import LesionCaseResult, LesionSettings, LesionSummary
from medseg.evaluation.results import CSV_COLUMNS, EvaluationResult, MetricRow, format_value

if TYPE_CHECKING:  # pragma: no cover
    from medseg.evaluation.froc import FrocCase
    from medseg.volume import Volume

__all__ = [
    "LESION_BASE_COLUMNS",
    "PROBABILITY_SUFFIX",
    "LesionEvaluationResult",
    "as_lesion_settings",
    "lesion_columns",
    "lesion_markdown",
    "lesion_settings_dict",
    "lesion_table_markdown",
    "probability_files",
    "read_lesion_values",
    "read_probabilities",
    "summarise_lesions",
]

#: Lesion columns of metrics.csv present whatever the thresholds.
LESION_BASE_COLUMNS = ("lesion_dice", "lesion_hd95", "n_ref_lesions", "n_pred_lesions", "n_fp")
#: Name suffix of the probability maps ``medseg predict --probabilities`` writes (``<case>_probabilities``).
PROBABILITY_SUFFIX = "_probabilities"


def lesion_columns(settings: LesionSettings) -> tuple[str, ...]:
    """The lesion columns of metrics.csv: :data:`LESION_BASE_COLUMNS`, then per IoU threshold t
    ``lesion_sensitivity@t`` and ``lesion_f1@t`` (t written with ``:g``: 0, 0.1, 0.5)."""
    per_t = [(f"lesion_sensitivity@{t:g}", f"lesion_f1@{t:g}") for t in settings.iou_thresholds]
    return LESION_BASE_COLUMNS + tuple(c for pair in per_t for c in pair)


def lesion_case_values(result: LesionCaseResult) -> dict[str, float]:
    """The metrics.csv lesion values of one case and class (or region): lesion-wise Dice and HD95,
    lesion counts, and sensitivity and F1 per IoU threshold."""
    out: dict[str, float] = {
        "lesion_dice": result.lesion_dice,
        "lesion_hd95": result.lesion_hd95,
        "n_ref_lesions": result.n_ref,
        "n_pred_lesions": result.n_pred,
        "n_fp": result.n_fp,
    }
    for d in result.detection():
        out[f"lesion_sensitivity@{d.threshold:g}"] = d.sensitivity
        out[f"lesion_f1@{d.threshold:g}"] = d.f1
    return out


def as_lesion_settings(lesions: LesionSettings | bool | None) -> LesionSettings | None:
    """``lesions`` as settings: True gives the defaults, False and None no lesion-wise evaluation.

    Raises:
        ConfigError: anything else.
    """
    if lesions is None or lesions is False:
        return None
    if lesions is True:
        return LesionSettings()
    if not isinstance(lesions, LesionSettings):
        raise ConfigError(
            f"lesions must be a LesionSettings or True, got {lesions!r}", hint="e.g. LesionSettings()"
        )
    return lesions


def lesion_settings_dict(settings: LesionSettings) -> dict[str, Any]:
    """The settings as a JSON-able dictionary (tuples as lists)."""
    return {f.name: _listed(getattr(settings, f.name)) for f in fields(settings)}


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def summarise_lesions(
    cases: Mapping[str, Mapping[int, LesionCaseResult]],
    labels: Mapping[int, str],
    froc_cases: Mapping[str, Mapping[int, FrocCase]] | None = None,
) -> dict[str, Any]:
    """``summary.json``'s ``lesions``: per class id (as text) the class name and the pooled
    :class:`LesionSummary` of every case (with the FROC when ``froc_cases`` is given).

    Args:
        cases: ``{case: {label: LesionCaseResult}}``, every label of ``labels`` in every case.
        labels: ``{label: name}`` of the evaluated classes.
        froc_cases: ``{case: {label: FrocCase}}`` from the probability maps, or None.
    """
    from medseg.evaluation.froc import froc

    out: dict[str, Any] = {}
    for label, name in labels.items():
        per_case = [c[label] for c in cases.values()]
        curve = froc([f[label] for f in froc_cases.values()]) if froc_cases is not None else None
        out[str(label)] = {"name": name, **LesionSummary.from_cases(per_case, froc=curve).to_dict()}
    return out


@dataclass
class LesionEvaluationResult(EvaluationResult):
    """An :class:`EvaluationResult` with lesion-wise results (``medseg evaluate --lesions``).

    Attributes:
        lesion_settings: How lesions were found and counted.
        lesion_cases: ``{case: {label: LesionCaseResult}}``.
        froc_cases: ``{case: {label: FrocCase}}`` from probability maps, or None.
    """

    lesion_settings: LesionSettings = field(default_factory=LesionSettings)
    lesion_cases: dict[str, dict[int, LesionCaseResult]] = field(default_factory=dict)
    froc_cases: dict[str, dict[int, FrocCase]] | None = None

    def lesion_values(self, row: MetricRow) -> dict[str, float]:
        """The lesion columns of one row of metrics.csv."""
        return lesion_case_values(self.lesion_cases[row.case][row.class_id])

    def metrics_csv(self) -> str:
        """The text of metrics.csv: the usual columns followed by :func:`lesion_columns`."""
        extra = lesion_columns(self.lesion_settings)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS + extra)
        for row in self.rows:
            values = self.lesion_values(row)
            writer.writerow(
                [format_value(getattr(row, c)) for c in CSV_COLUMNS]
                + [format_value(values[c]) for c in extra]
            )
        return buf.getvalue()

    def lesions_json(self) -> dict[str, Any]:
        """The content of lesions.json: settings, then per case and class id the per-lesion table
        (:meth:`LesionCaseResult.to_dict`) and, with probability maps, the FROC candidates."""
        cases: dict[str, Any] = {}
        for case, per_label in self.lesion_cases.items():
            cases[case] = {}
            for label, result in per_label.items():
                entry = result.to_dict()
                if self.froc_cases is not None:
                    entry["froc_candidates"] = self.froc_cases[case][label].to_dict()
                cases[case][str(label)] = entry
        return {
            "settings": lesion_settings_dict(self.lesion_settings),
            "labels": {str(k): v for k, v in self.labels.items()},
            "cases": cases,
        }

    def to_markdown(self) -> str:
        """The usual Markdown, then a table of the lesion-wise results per class."""
        unit = {"ml": "mm³", "mm2": "mm²", "px2": "px²"}.get(self.volume_unit, "mm³")
        return (
            super().to_markdown() + "\n" + lesion_markdown(self.summary.get("lesions", {}), self.labels, unit)
        )

    def write(self, folder: str | Path) -> Path:
        """Write the usual files (metrics.csv with the lesion columns) and lesions.json atomically."""
        from medseg.io.atomic import write_text_atomic

        out = super().write(folder)
        write_text_atomic(out / "lesions.json", json.dumps(self.lesions_json(), indent=2) + "\n")
        return out


def lesion_markdown(lesions: Mapping[str, Any], labels: Mapping[int, str], volume_unit: str = "mm³") -> str:
    """Markdown table of ``summary["lesions"]``: lesion-wise Dice and HD95 (mean ± sd over cases),
    lesions, false positives per case, pooled sensitivity and F1 per threshold, FROC score
    (``volume_unit``: of the lesion volumes, mm³ in 3D)."""
    if not lesions:
        return ""
    entries = [(f"{name} ({label})", lesions[str(label)]) for label, name in labels.items()]
    return lesion_table_markdown(entries, volume_unit)


def lesion_table_markdown(
    entries: Sequence[tuple[str, Mapping[str, Any]]], volume_unit: str = "mm³", key: str = "class"
) -> str:
    """Markdown table of pooled lesion results, one row per ``(title, LesionSummary.to_dict())`` entry
    (classes, or regions with ``key="region"``), and a note on the settings ("" without entries).

    Columns: lesion-wise Dice and HD95 (mm; mean ± sd over cases), lesions, false positives per
    case, pooled sensitivity / F1 per IoU threshold and, when an entry has one, the FROC score.
    """
    from medseg.evaluation.markdown import markdown_table, mean_sd

    if not entries:
        return ""
    first = entries[0][1]
    thresholds = [d["threshold"] for d in first["detection"]]
    has_froc = any(s.get("froc") for _, s in entries)
    header = [key, "lesion Dice", "lesion HD95 (mm)", "lesions", "FP per case"]
    header += [f"sens / F1 @IoU>{t:g}" for t in thresholds] + (["FROC"] if has_froc else [])
    body = []
    for title, s in entries:
        cells: list[Any] = [title, mean_sd(s["lesion_dice"]), mean_sd(s["lesion_hd95"], 2)]
        cells += [s["n_ref_lesions"], _num(s["fp_per_case"], 2)]
        cells += [f"{_num(d['sensitivity'])} / {_num(d['f1'])}" for d in s["detection"]]
        if has_froc:
            cells.append(_num((s.get("froc") or {}).get("score")))
        body.append(cells)
    settings = first["settings"]
    froc = ""
    if key == "class" or has_froc:
        froc = "; FROC: mean sensitivity at 1/8 to 8 false positives per case"
    note = (
        f"- Lesion-wise (BraTS 2023): reference dilation {settings['dilation']} voxels, lesions of at most "
        f"{settings['min_volume']:g} {volume_unit} left out; detection counts pooled over cases{froc}.\n"
    )
    return markdown_table(header, body) + "\n" + note


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


# -- probability maps --------------------------------------------------------------------------
def probability_files(folder: str | Path, cases: list[str]) -> dict[str, Path]:
    """The probability map of each of ``cases`` in ``folder``, keyed by case id.

    Files named ``<case>_probabilities.<ext>`` (what ``medseg predict --probabilities`` writes)
    give case ``<case>``; a folder without any such file is taken as one map per case, named
    like the references.

    Raises:
        InputNotFoundError: the folder does not exist, or a case has no probability map.
        NoImageDataError: it holds no image file.
    """
    from medseg.evaluation.matching import list_cases

    files = list_cases(folder, "probability folder")
    suffixed = {c[: -len(PROBABILITY_SUFFIX)]: p for c, p in files.items() if c.endswith(PROBABILITY_SUFFIX)}
    found = suffixed or files
    missing = [c for c in cases if c not in found]
    if missing:
        listed = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputNotFoundError(
            f"{len(missing)} cases have no probability map in {folder}: {listed}",
            hint=f"name them <case>{PROBABILITY_SUFFIX}.nii.gz, as medseg predict --probabilities does",
        )
    return {c: found[c] for c in cases}


def read_probabilities(path: Path, labels: list[int]) -> Volume:
    """Read a probability map: 4D ``[X, Y, Z, K]`` with channel k the probability of label k
    (channel 0: background), as ``medseg predict --probabilities`` writes.

    Raises:
        ConfigError: not a 4D map, or no channel for one of ``labels``.
        MedsegError: an unreadable file.
    """
    from medseg.io import read_volume

    volume = read_volume(path)
    shape = volume.array.shape
    if volume.array.ndim != 4:
        raise ConfigError(
            f"{path} is not a probability map with one channel per label (shape {shape})",
            hint="give the <case>_probabilities files of medseg predict --probabilities (channel k: label k)",
        )
    missing = [k for k in labels if k >= shape[3]]
    if missing:
        raise ConfigError(
            f"{path} has {shape[3]} channels, so no probability of label {missing[0]}",
            hint="channel k holds label k (channel 0: background); evaluate the labels the model predicts",
        )
    return volume


# -- reading back ------------------------------------------------------------------------------
def read_lesion_values(folder: str | Path) -> dict[str, dict[tuple[str, int], float]]:
    """The lesion columns of an evaluation folder's metrics.csv: ``{column: {(case, class_id): value}}``
    (empty when the evaluation has no lesion results).

    Raises:
        CorruptFileError: a metrics.csv that cannot be read.
    """
    path = Path(folder) / "metrics.csv"
    out: dict[str, dict[tuple[str, int], float]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = [
                c for c in reader.fieldnames or [] if c in LESION_BASE_COLUMNS or c.startswith("lesion_")
            ]
            for rec in reader:
                key = (rec["case"], int(rec["class_id"]))
                for c in columns:
                    out.setdefault(c, {})[key] = float(rec[c]) if rec[c] != "" else math.nan
    except (OSError, UnicodeDecodeError, ValueError, KeyError, csv.Error) as exc:
        raise CorruptFileError(f"cannot read {path}: {exc}", hint="re-run medseg evaluate") from exc
    return out
