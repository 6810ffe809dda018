"""PACS settings and addresses: files, environment, precedence, secrets, refused credentials."""

from __future__ import annotations

import pytest

from medseg.errors import ConfigError, InputNotFoundError
from medseg.pacs.address import PacsQuery, is_pacs_address, parse_address
from medseg.pacs.settings import load_settings

SECRET = "pw-never-shown-91"


def test_file_then_environment_then_overrides(tmp_path):
    cfg = tmp_path / "pacs.yaml"
    cfg.write_text("pacs:\n  url: http://a/dicom-web\n  user: alice\n  retries: 5\n  timeout: 7\n")
    s = load_settings(cfg, environ={})
    assert (s.url, s.user, s.retries, s.timeout, s.auth_mode) == (
        "http://a/dicom-web",
        "alice",
        5,
        7.0,
        "basic",
    )
    env = {
        "MEDSEG_PACS_URL": "http://b/dicom-web",
        "MEDSEG_PACS_PASSWORD": SECRET,
        "MEDSEG_PACS_VERIFY": "false",
    }
    s = load_settings(cfg, environ=env)
    assert s.url == "http://b/dicom-web" and s.password.get_secret_value() == SECRET and s.verify is False
    s = load_settings(cfg, overrides={"url": "http://c/x", "port": None}, environ=env)
    assert s.url == "http://c/x"
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    assert load_settings(environ={"MEDSEG_PACS_TOKEN": "t"}).auth_mode == "bearer"


def test_unknown_keys_and_bad_values_are_one_line_errors(tmp_path):
    cfg = tmp_path / "pacs.json"
    cfg.write_text(f'{{"url": "http://a", "pasword": "{SECRET}"}}')
    with pytest.raises(ConfigError, match="pasword") as err:
        load_settings(cfg, environ={})
    assert SECRET not in str(err.value)  # the value of a bad key is never quoted back
    with pytest.raises(ConfigError, match="retries"):
        load_settings(environ={"MEDSEG_PACS_RETRIES": "many"})
    with pytest.raises(InputNotFoundError):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_addresses():
    a = parse_address(
        "dicomweb://pacs.local:8042/dicom-web/?PatientID=P1&Modality=CT&StudyDate=20200101-20201231"
    )
    assert a.protocol == "dicomweb" and a.overrides == {"url": "http://pacs.local:8042/dicom-web"}
    assert a.query.study_keys() == {
        "PatientID": "P1",
        "StudyDate": "20200101-20201231",
        "ModalitiesInStudy": "CT",
    }
    assert parse_address("dicomwebs://h/x").overrides["url"] == "https://h/x"
    d = parse_address("dimse://ORTHANC@127.0.0.1:4242?StudyInstanceUID=1.2.3")
    assert d.overrides == {"host": "127.0.0.1", "port": 4242, "called_aet": "ORTHANC"}
    assert d.query.keys == {"StudyInstanceUID": "1.2.3"}
    assert is_pacs_address("dimse://A@h:1") and not is_pacs_address("/data/scan.nii.gz")


@pytest.mark.parametrize(
    ("address", "match"),
    [
        (f"dicomweb://bob:{SECRET}@h:80/x", "credentials"),
        ("dicomweb://bob@h:80/x", "credentials"),
        ("dimse://A@h?PatientID=1", "port"),
        ("dicomweb://h/x?PatientName=X", "unknown PACS query key"),
        ("dicomweb://h/x?StudyDate=2020", "StudyDate"),
        ("dicomweb://h/x?StudyInstanceUID=abc", "UID"),
        ("ftp://h/x", "not a PACS address"),
    ],
)
def test_bad_addresses(address, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse_address(address)
    assert SECRET not in str(err.value)


def test_query_date_forms():
    for value in ("20200101", "20200101-20201231", "-20201231", "20200101-"):
        PacsQuery({"StudyDate": value})
