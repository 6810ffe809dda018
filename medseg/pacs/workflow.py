"""Predict studies straight from a PACS and store the results back, one study at a time.

For each study matching the query (QIDO-RS / C-FIND, DICOM PS3.18 §10.6, PS3.4 §C.4.1):

1. its image series (SEG, RTSTRUCT and other derived objects are left out) are retrieved into a
   temporary folder (WADO-RS / C-GET);
2. :func:`medseg.inference.batch.predict_folder` writes the masks and the requested exports
   (``dicom-seg``, ``rtstruct``…) into ``OUTPUT/<StudyInstanceUID>/``;
3. every SEG is validated before it leaves: read back with medseg's own reader against the
   retrieved source series it must equal the predicted mask, and dciodvfy (dicom3tools), when
   installed, must report no error; an RTSTRUCT must read back on its series;
4. with ``push``, the SEG/RTSTRUCT files are stored (STOW-RS / C-STORE) and
   ``OUTPUT/<StudyInstanceUID>/pushed.json`` records them.

A study whose push is recorded is skipped by a rerun. A failed study (PACS unreachable after the
retries, a bad series, a SEG that fails validation) is named in the summary and the batch goes
on; nothing already written is removed.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import EXIT_SOME_FAILED, CorruptFileError, MedsegError
from medseg.io.atomic import write_text_atomic
from medseg.pacs.address import PacsQuery, check_uid
from medseg.pacs.client import PacsClient, SeriesInfo, StudyInfo
from medseg.pacs.errors import PacsNotFoundError, PacsValidationError

log = logging.getLogger(__name__)

#: Export formats that are stored back to the PACS (DICOM objects).
PUSHABLE_SUFFIXES = (".seg.dcm", ".rtstruct.dcm")
PUSH_RECORD = "pushed.json"


@dataclass
class StudyResult:
    """What happened to one study."""

    study_uid: str
    patient_id: str
    status: str  # ok | skipped (pushed by an earlier run) | failed
    series: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


@dataclass
class PacsBatchResult:
    """All studies of one ``medseg predict --input dicomweb://…`` run."""

    studies: list[StudyResult]

    @property
    def failed(self) -> list[StudyResult]:
        return [s for s in self.studies if s.status == "failed"]

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else 0

    def table(self) -> str:
        """Markdown summary: study, patient, series, seconds, status (a failure with its reason)."""
        lines = ["| study | patient | series | seconds | status |", "|---|---|---|---|---|"]
        for s in self.studies:
            secs = f"{s.seconds:.1f}" if s.seconds is not None else ""
            status = f"failed: {s.error}" if s.status == "failed" else s.status
            lines.append(f"| {s.study_uid} | {s.patient_id} | {len(s.series)} | {secs} | {status} |")
        ok = sum(s.status == "ok" for s in self.studies)
        skipped = sum(s.status == "skipped" for s in self.studies)
        lines.append(f"\n{ok} studies done, {skipped} already done, {len(self.failed)} failed")
        return "\n".join(lines)


def image_series(client: PacsClient, study_uid: str, query: PacsQuery) -> list[SeriesInfo]:
    """The image series of a study that the query selects (never SEG/RTSTRUCT/SR…)."""
    found = [s for s in client.find_series(study_uid, query.modality) if s.is_image]
    if query.series_uid:
        found = [s for s in found if s.series_uid == query.series_uid]
    return found


def pull_study(client: PacsClient, study_uid: str, query: PacsQuery, folder: Path) -> list[Path]:
    """Retrieve the selected image series of a study into ``folder/<SeriesInstanceUID>/``.

    A series folder that already exists is complete (series are written whole, then renamed)
    and is not retrieved again.

    Raises:
        PacsNotFoundError: the study has no matching image series.
    """
    series = image_series(client, study_uid, query)
    if not series:
        raise PacsNotFoundError(f"study {study_uid} has no image series matching {query.describe()}")
    out = []
    for s in series:
        target = folder / check_uid(s.series_uid, "SeriesInstanceUID")
        if not target.is_dir():
            files = client.retrieve_series(study_uid, s.series_uid, target)
            log.info("retrieved series %s (%s, %d files)", s.series_uid, s.modality, len(files))
        out.append(target)
    return out


def validate_outputs(outputs: list[Path], series_dir: Path, mask_path: Path) -> None:
    """Check the DICOM results of one case before they are stored on a PACS.

    Raises:
        PacsValidationError: a SEG that does not read back to the predicted mask on its source
            series, one that dciodvfy reports errors for, or an RTSTRUCT that cannot be read.
    """
    import numpy as np

    from medseg.export.reference import place_on_grid
    from medseg.io import read_volume
    from medseg.io.dicom.label_objects import read_label_object

    mask = read_volume(mask_path)
    for path in outputs:
        try:
            back = read_label_object(path, series_dir)
        except MedsegError as exc:
            raise PacsValidationError(f"{path.name} cannot be read back: {exc}") from None
        if path.name.endswith(".seg.dcm"):
            on_grid = place_on_grid(back, mask.affine, mask.array.shape, path.name, mask_path.name)
            if not np.array_equal(on_grid, mask.array):
                raise PacsValidationError(
                    f"{path.name} does not read back to the predicted mask {mask_path.name}",
                    hint="this is a bug in the SEG writer: please report it; nothing was pushed",
                )
            _dciodvfy(path)


def _dciodvfy(path: Path) -> None:
    """dicom3tools' dciodvfy must report no ``Error`` line (skipped when it is not installed)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        return
    try:
        proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise PacsValidationError(
            f"dciodvfy did not finish checking {path.name} within 300 s", hint="nothing was pushed"
        ) from None
    except OSError as exc:
        raise PacsValidationError(
            f"dciodvfy could not be run on {path.name}: {exc.strerror or exc}", hint="nothing was pushed"
        ) from None
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    if errors:
        raise PacsValidationError(f"{path.name} fails dciodvfy: {errors[0]}", hint="nothing was pushed")


def _pushed(out_dir: Path) -> dict[str, Any] | None:
    """The push record of an earlier run, or None.

    Raises:
        CorruptFileError: the record is not the JSON object a push writes.
    """
    record = out_dir / PUSH_RECORD
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(
            f"cannot read the push record {record}: {type(exc).__name__}",
            hint="delete it to predict and push this study again (or rerun with --overwrite)",
        ) from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("series"), list)
        or not isinstance(data.get("sop_instances"), list)
    ):
        raise CorruptFileError(
            f"the push record {record} lacks its series/sop_instances lists",
            hint="delete it to predict and push this study again (or rerun with --overwrite)",
        )
    return data


@dataclass
class PacsPredictJob:
    """One run: a predictor, a client, the query, where to write, and what to push."""

    predictor: Any
    client: PacsClient
    query: PacsQuery
    output: Path
    formats: tuple[str, ...] = ("nifti", "dicom-seg")
    push: bool = False
    overwrite: bool = False
    predict_options: dict[str, Any] = field(default_factory=dict)
    #: Called after each study (the fault tests use it to stop the PACS in the middle).
    on_study: Callable[[StudyResult], None] | None = None

    def run(self) -> PacsBatchResult:
        """Query, then each study in turn; writes ``OUTPUT/pacs.json``."""
        self.output.mkdir(parents=True, exist_ok=True)
        studies = self.client.find_studies(self.query)
        log.info("%d studies match %s on %s", len(studies), self.query.describe(), self.client.describe())
        if not studies:
            raise PacsNotFoundError(f"no study matches {self.query.describe()} on {self.client.describe()}")
        results = []
        for study in studies:
            result = self._one(study)
            results.append(result)
            write_text_atomic(
                self.output / "pacs.json",
                json.dumps(
                    {"pacs": self.client.describe(), "studies": [r.to_dict() for r in results]}, indent=2
                ),
            )
            if self.on_study is not None:
                self.on_study(result)
        return PacsBatchResult(results)

    def _one(self, study: StudyInfo) -> StudyResult:
        """One study; any failure is recorded in its result and the batch goes on."""
        t0 = time.monotonic()
        result = StudyResult(study.study_uid, study.patient_id, "failed")
        try:
            out_dir = self.output / check_uid(study.study_uid, "StudyInstanceUID")
            done = _pushed(out_dir) if self.push and not self.overwrite else None
            if done:
                return StudyResult(
                    study.study_uid, study.patient_id, "skipped", done["series"], pushed=done["sop_instances"]
                )
            with tempfile.TemporaryDirectory(prefix="medseg-pacs-") as tmp:
                self._pull_predict_push(study, Path(tmp), out_dir, result)
            result.status = "ok"
        except MedsegError as exc:
            result.error = str(exc)
            log.warning("study %s failed: %s", study.study_uid, exc)
        except Exception as exc:  # a bug or an unforeseen library error: this study only
            result.error = f"unexpected {type(exc).__name__}: {exc}".splitlines()[0]
            log.warning("study %s failed: %s (a bug: please report it)", study.study_uid, result.error)
            log.debug("traceback of study %s", study.study_uid, exc_info=True)
        result.seconds = round(time.monotonic() - t0, 2)
        return result

    def _pull_predict_push(self, study: StudyInfo, tmp: Path, out_dir: Path, result: StudyResult) -> None:
        from medseg.inference.batch import predict_folder

        series_dirs = pull_study(self.client, study.study_uid, self.query, tmp)
        result.series = [p.name for p in series_dirs]
        batch = predict_folder(
            self.predictor,
            tmp,
            out_dir,
            overwrite=self.overwrite,
            formats=self.formats,
            **self.predict_options,
        )
        if batch.failed:
            raise MedsegError("; ".join(f"{c.id}: {c.error}" for c in batch.failed))
        to_push: list[Path] = []
        for series_dir in series_dirs:
            dicom = [out_dir / f"{series_dir.name}{suffix}" for suffix in PUSHABLE_SUFFIXES]
            dicom = [p for p in dicom if p.is_file()]
            result.outputs.extend(str(p) for p in dicom)
            validate_outputs(dicom, series_dir, out_dir / f"{series_dir.name}.nii.gz")
            to_push.extend(dicom)
        if self.push and to_push:
            result.pushed = self.client.store(to_push)
            log.info(
                "stored %d object(s) of study %s on %s", len(to_push), study.study_uid, self.client.describe()
            )
            record = {
                "series": result.series,
                "files": [p.name for p in to_push],
                "sop_instances": result.pushed,
            }
            write_text_atomic(out_dir / PUSH_RECORD, json.dumps(record, indent=2))
