"""Review fixes: an untrusted or broken PACS, bad local files and settings fail one study, one
file or one command with a one-line error, never with a traceback or a write outside the output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg.cli.main import main
from medseg.errors import EXIT_SOME_FAILED, ConfigError
from medseg.pacs.address import PacsQuery, check_uid
from medseg.pacs.client import SeriesInfo, StudyInfo
from medseg.pacs.errors import PacsError, PacsUnreachableError
from medseg.pacs.settings import load_settings
from medseg.pacs.workflow import PUSH_RECORD, PacsPredictJob
from tests.pacs.data import CT_PATIENT, MR_PATIENT
from tests.pacs.helpers import client_for

SECRET = "s3cretPW-never-shown"


@pytest.fixture(autouse=True)
def _medseg_logs_reach_caplog(monkeypatch):
    """``medseg.cli.main`` stops the ``medseg`` logger propagating (an earlier test may have run it)."""
    monkeypatch.setattr(logging.getLogger("medseg"), "propagate", True)


# --- UIDs from the server -------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0", "1.0.3"])
def test_check_uid_accepts_uids(uid):
    assert check_uid(uid, "SOPInstanceUID") == uid


@pytest.mark.parametrize(
    "uid", ["", None, "../../etc/x", "1.2/3", "1..2", "1.02", ".1", "1.2.", "1" * 65, "1.2\n3"]
)
def test_check_uid_refuses_bad_uids_in_one_line(uid):
    with pytest.raises(PacsError, match="bad SOPInstanceUID") as err:
        check_uid(uid, "SOPInstanceUID")
    assert "\n" not in str(err.value)


def _instance(sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
    ds.PatientID, ds.PatientName, ds.Modality = "P", "PUSH^TEST", "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.9.1", "1.2.826.0.1.3680043.10.9.2"
    return ds


def test_a_retrieved_instance_with_a_bad_uid_is_not_written(tmp_path):
    from medseg.pacs.dicomweb import _save_all

    target = tmp_path / "a" / "b" / "series"
    with pytest.raises(PacsError, match="bad SOPInstanceUID"):
        _save_all([_instance(generate_uid()), _instance("../../../evil")], target)
    assert not list(tmp_path.rglob("evil*")) and not target.exists()


class _FakeClient:
    """Studies whose series searches fail in the ways an untrusted or broken PACS makes them."""

    settings = None
    protocol = "fake"

    def __init__(self, studies: list[StudyInfo], series: dict[str, object]) -> None:
        self._studies, self._series = studies, series

    def describe(self) -> str:
        return "fake"

    def find_studies(self, query):
        return self._studies

    def find_series(self, study_uid, modality=None):
        answer = self._series[study_uid]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def retrieve_series(self, study_uid, series_uid, folder):  # pragma: no cover - never reached
        raise AssertionError("a bad series UID must not be retrieved")

    def store(self, files):  # pragma: no cover
        raise AssertionError


def test_one_study_failing_unexpectedly_or_with_bad_uids_does_not_stop_the_batch(tmp_path, caplog):
    studies = [
        StudyInfo("1.2.3", "P1"),
        StudyInfo("../../outside", "P2"),
        StudyInfo("1.2.4", "P3"),
        StudyInfo("", "P4"),
    ]
    series = {
        "1.2.3": ValueError("No presentation context for 'CT Image Storage' has been accepted"),
        "../../outside": [],
        "1.2.4": [SeriesInfo("1.2.4", "../../../series", "CT")],
        "": [],
    }
    out = tmp_path / "deep" / "out"
    job = PacsPredictJob(None, _FakeClient(studies, series), PacsQuery({}), out)
    with caplog.at_level(logging.DEBUG, logger="medseg.pacs.workflow"):
        result = job.run()
    assert [s.status for s in result.studies] == ["failed"] * 4
    assert result.exit_code == EXIT_SOME_FAILED
    errors = [s.error for s in result.studies]
    assert "unexpected ValueError" in errors[0] and "presentation context" in errors[0]
    assert "bad StudyInstanceUID" in errors[1] and "bad StudyInstanceUID" in errors[3]
    assert "bad SeriesInstanceUID" in errors[2]
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)  # at DEBUG only
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "out", "pacs.json"]
    assert len(json.loads((out / "pacs.json").read_text())["studies"]) == 4


def test_a_corrupt_push_record_fails_its_study_and_the_batch_goes_on(orthanc, studies, predictor, tmp_path):
    client = client_for(orthanc, "dicomweb", retries=0)
    (ct,) = client.find_studies(PacsQuery({"PatientID": CT_PATIENT}))
    out = tmp_path / "out"
    (out / ct.study_uid).mkdir(parents=True)
    (out / ct.study_uid / PUSH_RECORD).write_text('{"series": ["1.2"], "sop_in')  # cut off
    job = PacsPredictJob(
        predictor,
        client,
        PacsQuery({"StudyDate": "20200101-20221231"}),
        out,
        formats=("dicom-seg",),
        push=True,
    )
    result = job.run()
    by_patient = {s.patient_id: s for s in result.studies}
    assert by_patient[CT_PATIENT].status == "failed"
    assert PUSH_RECORD in by_patient[CT_PATIENT].error and "\n" not in by_patient[CT_PATIENT].error
    assert by_patient[MR_PATIENT].status == "ok" and by_patient[MR_PATIENT].pushed
    assert result.exit_code == EXIT_SOME_FAILED


# --- DIMSE presentation contexts ------------------------------------------------------------


def test_a_refused_presentation_context_is_a_pacs_error_not_a_value_error():
    from medseg.pacs.dimse import DimseClient

    client = DimseClient(load_settings(environ={}, overrides={"host": "h", "port": 104}))
    ct = "1.2.840.10008.5.1.4.1.1.2"
    accepted = SimpleNamespace(abstract_syntax=ct, transfer_syntax=["1.2.840.10008.1.2.1"])
    assoc = SimpleNamespace(accepted_contexts=[accepted])
    client._require_context(assoc, "C-STORE", ct, "1.2.840.10008.1.2.1")
    with pytest.raises(PacsError, match=r"no presentation context for .*JPEG") as err:
        client._require_context(assoc, "C-STORE", ct, "1.2.840.10008.1.2.4.50")
    assert err.value.hint
    with pytest.raises(PacsError, match="Segmentation Storage"):
        client._require_context(assoc, "C-STORE", "1.2.840.10008.5.1.4.1.1.66.4")


# --- DICOMweb transport errors --------------------------------------------------------------


def _dicomweb(**overrides):
    from medseg.pacs.dicomweb import DicomwebClient

    values = {"url": "http://127.0.0.1:9/dicom-web", "retries": 2, "backoff": 0, **overrides}
    return DicomwebClient(load_settings(environ={}, overrides=values))


def test_a_garbled_answer_is_retried_then_unreachable():
    import requests

    calls = []

    def call():
        calls.append(1)
        raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")

    with pytest.raises(PacsUnreachableError, match="ChunkedEncodingError"):
        _dicomweb()._call("WADO-RS retrieve", call)
    assert len(calls) == 3


def test_a_tls_failure_is_not_retried_and_names_verify():
    import requests

    calls = []

    def call():
        calls.append(1)
        raise requests.exceptions.SSLError("certificate verify failed")

    with pytest.raises(PacsError, match="TLS") as err:
        _dicomweb()._call("QIDO-RS study search", call)
    assert len(calls) == 1 and "verify" in err.value.hint
    assert not isinstance(err.value, PacsUnreachableError)


def test_basic_auth_repr_masks_the_password_and_plain_http_is_warned_once(caplog, monkeypatch):
    from medseg.pacs import dicomweb

    monkeypatch.setattr(dicomweb, "_WARNED_PLAIN_HTTP", set())
    remote = {"url": "http://pacs.example.org:8042/dicom-web", "user": "bob", "password": SECRET}
    with caplog.at_level(logging.WARNING, logger="medseg.pacs.dicomweb"):
        client = _dicomweb(**remote)
        _dicomweb(**remote)
        _dicomweb(url="http://127.0.0.1:8042/dicom-web", user="bob", password=SECRET)
        _dicomweb(url="http://pacs.example.org:8042/dicom-web")  # no credentials
    auth = client._client._session.auth
    assert SECRET not in repr(auth) and "bob" in repr(auth)
    warnings = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warnings) == 1 and "pacs.example.org" in warnings[0].getMessage()


# --- settings -------------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_the_place_not_the_line(tmp_path):
    cfg = tmp_path / "pacs.yaml"
    cfg.write_text(f'url: http://a/dicom-web\nuser: bob\npassword: "{SECRET}\nretries: 2\n')
    with pytest.raises(ConfigError, match="line") as err:
        load_settings(cfg, environ={})
    assert SECRET not in str(err.value) and "\n" not in str(err.value)
    cfg = tmp_path / "pacs.json"
    cfg.write_text(f'{{"user": "bob", "password": "{SECRET}",}}')
    with pytest.raises(ConfigError, match="line 1") as err:
        load_settings(cfg, environ={})
    assert SECRET not in str(err.value)


def test_verify_string_in_a_file_and_a_password_without_user(tmp_path):
    cfg = tmp_path / "pacs.yaml"
    cfg.write_text('url: https://a/dicom-web\nverify: "false"\n')
    assert load_settings(cfg, environ={}).verify is False
    cfg.write_text("url: https://a/dicom-web\nverify: 'True'\n")
    assert load_settings(cfg, environ={}).verify is True
    with pytest.raises(ConfigError, match="password is set but no user") as err:
        load_settings(environ={"MEDSEG_PACS_PASSWORD": SECRET})
    assert SECRET not in str(err.value) and err.value.hint


# --- the command line -----------------------------------------------------------------------


def test_predict_checks_push_and_the_address_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from medseg.inference import Predictor

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the PACS arguments were checked")

    monkeypatch.setattr(Predictor, "from_run", classmethod(no_model))
    base = ["predict", "-m", str(tmp_path / "no-model"), "-o", str(tmp_path / "out")]
    assert main([*base, "-i", "dicomweb://127.0.0.1:9/x", "--push", "--format", "nifti"]) == 10
    assert "--push" in capsys.readouterr().err
    assert main([*base, "-i", "dicomweb://127.0.0.1:9/x?PatientName=X"]) == 10
    assert "unknown PACS query key" in capsys.readouterr().err


def test_push_without_an_address_takes_every_positional_as_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDSEG_PACS_URL", "http://127.0.0.1:9/dicom-web")
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    assert main(["pacs", "push", str(a), str(b)]) == 3  # a missing file, not "not a PACS address"
    assert "a.dcm" in capsys.readouterr().err


def test_push_refuses_a_folder_without_dicom_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDSEG_PACS_URL", "http://127.0.0.1:9/dicom-web")
    (tmp_path / "empty").mkdir()
    assert main(["pacs", "push", str(tmp_path / "empty")]) == 3
    assert "no DICOM file" in capsys.readouterr().err
    (tmp_path / "r" / "pushed.json").parent.mkdir()
    (tmp_path / "r" / "pushed.json").write_text("{}")
    (tmp_path / "r" / "mask.nii.gz").write_bytes(b"\x1f\x8b not really")
    bare = _instance(generate_uid())
    del bare.file_meta
    bare.save_as(tmp_path / "r" / "bare.dcm", implicit_vr=True, little_endian=True)  # no file meta
    assert main(["pacs", "push", str(tmp_path / "r")]) == 3
    err = capsys.readouterr().err
    assert "no DICOM file" in err and "Traceback" not in err


def test_push_of_a_folder_skips_other_files_with_one_warning(orthanc, tmp_path, capsys, monkeypatch):
    for key, value in orthanc.env().items():
        monkeypatch.setenv(key, value)
    folder = tmp_path / "results"
    folder.mkdir()
    good = [folder / "one.dcm", folder / "two.dcm"]
    for path in good:
        _instance(generate_uid()).save_as(path, enforce_file_format=True)
    (folder / "pushed.json").write_text("{}")
    (folder / "mask.nii.gz").write_bytes(b"\x1f\x8b not really")
    assert main(["pacs", "push", str(good[0]), str(folder / "two.dcm")]) == 0  # two files, no address
    assert main(["pacs", "push", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.count("stored 2 instance(s)") == 2
    skipped = [line for line in err.splitlines() if "left out" in line]
    assert len(skipped) == 1 and "left out 2 file(s)" in skipped[0] and "Traceback" not in err
    assert pydicom.dcmread(good[0]).PatientID == "P"


def test_pacs_config_help_lists_every_settings_key(capsys):
    from medseg.pacs.settings import PacsSettings

    with pytest.raises(SystemExit):
        main(["pacs", "query", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("YAML/JSON PACS settings (")[1].split(")")[0].replace(" ", "").split(",")
    assert listed == list(PacsSettings.model_fields)


def test_no_path_is_built_from_an_unchecked_server_value():
    """Guard: every place that names a file after a server's UID goes through check_uid."""
    root = Path(__file__).resolve().parents[2] / "medseg"
    for rel in ("pacs/dicomweb.py", "pacs/dimse.py"):
        assert "{ds.SOPInstanceUID}.dcm" not in (root / rel).read_text()
