"""The PACS password never shows: not in logs at DEBUG (every library's), stdout or stderr."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from medseg.cli.main import main
from tests.pacs.helpers import address_for


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_password_absent_from_debug_logs_and_output(
    orthanc, studies, protocol, tmp_path, monkeypatch, capsys, caplog
):
    secret = orthanc.password
    for key, value in orthanc.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEDSEG_PACS_RETRIES", "0")
    caplog.set_level(logging.DEBUG)  # root: urllib3, requests, dicomweb_client, pynetdicom, medseg
    address = address_for(orthanc, protocol, "Modality=CT")
    assert main(["-vv", "pacs", "query", address, "--series"]) == 0
    assert main(["-vv", "pacs", "pull", address, "-o", str(tmp_path / "pulled")]) == 0
    # a refused password, and an unreachable server: their errors must not quote it either
    monkeypatch.setenv("MEDSEG_PACS_PASSWORD", secret + "-wrong")
    main(["-vv", "pacs", "query", address_for(orthanc, "dicomweb", "Modality=CT")])
    main(["-vv", "pacs", "query", "dicomweb://127.0.0.1:9/dicom-web?Modality=CT"])
    out, err = capsys.readouterr()
    assert "CT" in out and caplog.records
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    for text in (out, err, logged, caplog.text):
        assert secret not in text


def test_password_absent_from_a_real_process_at_debug(orthanc, studies):
    env = {**os.environ, **orthanc.env(), "MEDSEG_PACS_RETRIES": "0"}
    cmd = [
        sys.executable,
        "-m",
        "medseg",
        "-vv",
        "pacs",
        "query",
        address_for(orthanc, "dicomweb", "Modality=MR"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "MR" in proc.stdout
    assert orthanc.password not in proc.stdout + proc.stderr


def test_bearer_token_is_sent_but_never_logged(orthanc, monkeypatch, capsys, caplog):
    """Orthanc knows no bearer tokens: the request is refused (401), and the token shows nowhere."""
    token = "tok-en-never-logged-55"
    for key in ("MEDSEG_PACS_USER", "MEDSEG_PACS_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MEDSEG_PACS_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    assert main(["-vv", "pacs", "query", address_for(orthanc, "dicomweb", "Modality=CT")]) == 22
    out, err = capsys.readouterr()
    assert "refused the credentials" in err
    assert token not in out + err + caplog.text
