"""Helpers of the PACS tests: settings and clients for a live Orthanc, comparisons of SEGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.pacs.client import PacsClient
from medseg.pacs.connect import connect
from medseg.pacs.settings import PacsSettings, load_settings
from tests.fixtures.orthanc import OrthancServer

PROTOCOLS = ("dicomweb", "dimse")


def settings_for(server: OrthancServer, **overrides: Any) -> PacsSettings:
    """Settings from the server's MEDSEG_PACS_* variables plus its DIMSE address."""
    values = {"host": "127.0.0.1", "port": server.dicom_port, "called_aet": server.aet, "timeout": 10}
    values.update(overrides)
    return load_settings(environ=server.env(), overrides=values)


def client_for(server: OrthancServer, protocol: str, **overrides: Any) -> PacsClient:
    return connect(settings_for(server, **overrides), protocol)


def address_for(server: OrthancServer, protocol: str, query: str) -> str:
    """``dicomweb://127.0.0.1:PORT/dicom-web?…`` or ``dimse://ORTHANC@127.0.0.1:PORT?…``."""
    if protocol == "dicomweb":
        return f"dicomweb://127.0.0.1:{server.http_port}/dicom-web?{query}"
    return f"dimse://{server.aet}@127.0.0.1:{server.dicom_port}?{query}"


def seg_frames(path: Path) -> tuple[np.ndarray, list[tuple[int, str]], str]:
    """(pixel array, [(segment number, label)], referenced SeriesInstanceUID) of a SEG file."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    segments = [(int(s.SegmentNumber), str(s.SegmentLabel)) for s in ds.SegmentSequence]
    referenced = str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    return ds.pixel_array, segments, referenced
