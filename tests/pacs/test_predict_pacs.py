"""``medseg predict`` from a live Orthanc and back, over DICOMweb and over DIMSE.

The model is a fixed threshold (a learned one is not needed to test the transport); the PACS,
its protocols, the SEG/RTSTRUCT writers and readers are all real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.cli.main import main
from medseg.errors import EXIT_SOME_FAILED
from medseg.pacs.address import PacsQuery
from medseg.pacs.workflow import PacsPredictJob
from tests.pacs.data import CT_PATIENT, MR_PATIENT
from tests.pacs.helpers import PROTOCOLS, address_for, client_for, seg_frames


@pytest.fixture
def cli_env(orthanc, predictor, monkeypatch):
    """Credentials in the environment only; ``--model`` resolves to the threshold predictor."""
    from medseg.inference import Predictor

    for key, value in orthanc.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEDSEG_PACS_RETRIES", "1")
    monkeypatch.setattr(Predictor, "from_run", classmethod(lambda cls, *a, **k: predictor))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_predict_pulls_by_query_and_pushes_validated_seg_and_rtstruct(
    orthanc, studies, cli_env, protocol, tmp_path, capsys
):
    out = tmp_path / "out"
    address = address_for(orthanc, protocol, "StudyDate=20200101-20221231")  # both studies
    argv = [
        "predict",
        "-m",
        "unused",
        "-i",
        address,
        "-o",
        str(out),
        "--format",
        "dicom-seg,rtstruct",
        "--push",
    ]
    assert main(argv) == 0, capsys.readouterr()
    record = json.loads((out / "pacs.json").read_text())["studies"]
    assert sorted(s["patient_id"] for s in record) == [CT_PATIENT, MR_PATIENT]
    client = client_for(orthanc, protocol)
    for study in record:
        assert study["status"] == "ok" and len(study["pushed"]) == 2
        (source_series,) = study["series"]
        local_seg = out / study["study_uid"] / f"{source_series}.seg.dcm"
        local_rt = out / study["study_uid"] / f"{source_series}.rtstruct.dcm"
        # query the results back from the PACS and compare them with the local files
        stored = {}
        for modality, local in (("SEG", local_seg), ("RTSTRUCT", local_rt)):
            uid = pydicom.dcmread(local, stop_before_pixels=True).SOPInstanceUID
            for series in client.find_series(study["study_uid"], modality):
                folder = tmp_path / "back" / series.series_uid
                for f in client.retrieve_series(study["study_uid"], series.series_uid, folder):
                    if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == uid:
                        stored[modality] = f
        assert set(stored) == {"SEG", "RTSTRUCT"}, f"results of {study['study_uid']} not found on the PACS"
        pixels, segments, referenced = seg_frames(stored["SEG"])
        local_pixels, local_segments, _ = seg_frames(local_seg)
        assert np.array_equal(pixels, local_pixels) and pixels.any()
        assert segments == local_segments == [(1, "bright")]
        assert referenced == source_series
        rt = pydicom.dcmread(stored["RTSTRUCT"])
        rt_series = (
            rt.ReferencedFrameOfReferenceSequence[0]
            .RTReferencedStudySequence[0]
            .RTReferencedSeriesSequence[0]
        )
        assert rt_series.SeriesInstanceUID == source_series
    # a rerun finds everything pushed and redoes nothing
    assert main(argv) == 0
    assert "0 studies done, 2 already done, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pacs_stopped_mid_batch_loses_nothing_and_a_rerun_finishes(
    fresh_orthanc, predictor, protocol, tmp_path
):
    """Orthanc is killed right after the first study is pushed; the second fails by name."""
    from tests.pacs.data import ct_series, mr_series
    from tests.pacs.helpers import settings_for

    for f in ct_series(tmp_path / "ct") + mr_series(tmp_path / "mr"):
        fresh_orthanc.upload(f)
    settings = settings_for(fresh_orthanc, retries=2, backoff=0.05)
    from medseg.pacs.connect import connect

    def job(on_study=None) -> PacsPredictJob:
        return PacsPredictJob(
            predictor,
            connect(settings, protocol),
            PacsQuery({"StudyDate": "20200101-20221231"}),
            tmp_path / "out",
            formats=("dicom-seg",),
            push=True,
            on_study=on_study,
        )

    def kill_after_first(result) -> None:
        if result.status == "ok":
            fresh_orthanc.kill()

    first = job(kill_after_first).run()
    assert [s.status for s in first.studies] == ["ok", "failed"]
    assert first.exit_code == EXIT_SOME_FAILED
    failed = first.studies[1]
    assert "after 3 tries" in failed.error and failed.study_uid in first.table()
    done = first.studies[0]
    assert (tmp_path / "out" / done.study_uid / "pushed.json").is_file()
    seg = tmp_path / "out" / done.study_uid / f"{done.series[0]}.seg.dcm"
    assert seg.is_file()
    recorded = json.loads((tmp_path / "out" / "pacs.json").read_text())["studies"]
    assert [s["status"] for s in recorded] == ["ok", "failed"]

    fresh_orthanc.start()  # same storage folder: what was stored before the crash is still there
    assert len(fresh_orthanc.series_of_modality("SEG")) == 1
    second = job().run()
    assert [s.status for s in second.studies] == ["skipped", "ok"]
    assert second.exit_code == 0
    assert len(fresh_orthanc.series_of_modality("SEG")) == 2
    assert Path(seg).is_file()


def test_a_seg_that_does_not_match_its_mask_is_not_pushed(orthanc, studies, predictor, tmp_path, monkeypatch):
    """Validation is real: a mask changed after the SEG was written fails the check, nothing is stored."""
    from medseg.io import read_volume, write_volume
    from medseg.pacs import workflow
    from medseg.pacs.connect import connect
    from medseg.pacs.errors import PacsValidationError
    from tests.pacs.helpers import settings_for

    real = workflow.validate_outputs

    def tampered(outputs, series_dir, mask_path):
        mask = read_volume(mask_path)
        mask.array[...] = 0
        mask.array[0, 0, 0] = 1
        write_volume(mask, mask_path)
        real(outputs, series_dir, mask_path)

    monkeypatch.setattr(workflow, "validate_outputs", tampered)
    before = len(orthanc.series_of_modality("SEG"))
    job = PacsPredictJob(
        predictor,
        connect(settings_for(orthanc), "dicomweb"),
        PacsQuery({"PatientID": MR_PATIENT}),
        tmp_path / "out",
        formats=("dicom-seg",),
        push=True,
    )
    result = job.run()
    assert result.studies[0].status == "failed" and "does not read back" in result.studies[0].error
    assert len(orthanc.series_of_modality("SEG")) == before
    assert PacsValidationError.exit_code == 24
