"""Both clients against a live Orthanc: search, retrieve, store, refused credentials, no server."""

from __future__ import annotations

import time

import pydicom
import pytest

from medseg.pacs.address import PacsQuery
from medseg.pacs.errors import PacsAuthError, PacsUnreachableError
from tests.fixtures.orthanc import free_port
from tests.pacs.data import CT_PATIENT, MR_PATIENT
from tests.pacs.helpers import PROTOCOLS, client_for


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_search_by_patient_modality_and_date_range(orthanc, studies, protocol):
    client = client_for(orthanc, protocol)
    ct = client.find_studies(PacsQuery({"PatientID": CT_PATIENT}))
    assert [s.patient_id for s in ct] == [CT_PATIENT]
    assert [s.patient_id for s in client.find_studies(PacsQuery({"Modality": "MR"}))] == [MR_PATIENT]
    in_2021 = client.find_studies(PacsQuery({"StudyDate": "20210101-20211231"}))
    assert [s.patient_id for s in in_2021] == [MR_PATIENT]
    by_uid = client.find_studies(PacsQuery({"StudyInstanceUID": ct[0].study_uid}))
    assert [s.study_uid for s in by_uid] == [ct[0].study_uid]
    assert client.find_studies(PacsQuery({"PatientID": "NOBODY"})) == []
    series = client.find_series(ct[0].study_uid, "CT")
    assert len(series) == 1 and series[0].modality == "CT"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retrieve_gives_the_stored_instances_unchanged(orthanc, studies, protocol, tmp_path):
    """The CT is JPEG 2000: the retrieved files keep their transfer syntax and pixel bytes."""
    client = client_for(orthanc, protocol)
    study = client.find_studies(PacsQuery({"PatientID": CT_PATIENT}))[0]
    series = client.find_series(study.study_uid)[0]
    files = client.retrieve_series(study.study_uid, series.series_uid, tmp_path / "ct")
    sources = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in studies["ct"].iterdir()}
    assert len(files) == len(sources) == 20
    for f in files:
        got = pydicom.dcmread(f)
        src = sources[got.SOPInstanceUID]
        assert got.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
        assert got.PixelData == src.PixelData
    assert not (tmp_path / "ct.partial").exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_credentials_are_refused(orthanc, protocol):
    if protocol == "dicomweb":
        client = client_for(orthanc, protocol, password="wrong-password")
    else:  # DIMSE has no password: an AE title the PACS does not know is refused
        client = client_for(orthanc, protocol, aet="STRANGER")
    t0 = time.monotonic()
    with pytest.raises(PacsAuthError) as err:
        client.find_studies(PacsQuery({"PatientID": CT_PATIENT}))
    assert time.monotonic() - t0 < 5  # not retried
    assert "wrong-password" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_server_is_retried_with_backoff_then_unreachable(orthanc, protocol):
    port = free_port()  # nothing listens there
    client = client_for(
        orthanc, protocol, url=f"http://127.0.0.1:{port}/dicom-web", port=port, retries=2, backoff=0.2
    )
    t0 = time.monotonic()
    with pytest.raises(PacsUnreachableError, match="after 3 tries") as err:
        client.find_studies(PacsQuery({}))
    assert time.monotonic() - t0 >= 0.2 + 0.4  # two waits: 0.2 s, then 0.4 s
    assert orthanc.password not in str(err.value)
