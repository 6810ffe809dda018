"""Fixtures of the PACS tests: a live Orthanc (DICOMweb + DIMSE), skipped when not installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.orthanc import OrthancServer, start_or_skip


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """One Orthanc for the session (HTTP basic auth on, DICOMweb at ``/dicom-web/``)."""
    server = start_or_skip(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An Orthanc of the test's own (for tests that stop or kill it)."""
    server = start_or_skip(tmp_path_factory.mktemp("orthanc-own"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def studies(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CT and MR source series, stored on the session's Orthanc; name -> local folder."""
    from tests.pacs.data import ct_series, mr_series

    root = tmp_path_factory.mktemp("sources")
    folders = {"ct": root / "ct", "mr": root / "mr"}
    for f in ct_series(folders["ct"]) + mr_series(folders["mr"]):
        orthanc.upload(f)
    return folders


@pytest.fixture(scope="session")
def predictor() -> Any:
    """A fixed function (voxel > 200) as a model: non-empty masks on both the CT and the MR."""
    from medseg.inference import Predictor
    from medseg.transforms.preprocess import Plan
    from medseg.volume import Volume
    from tests.fixtures.models import Threshold

    dummy = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4))
    plan = Plan.from_dataset(
        [(dummy, None)],
        {0: "background", 1: "bright"},
        target_spacing=None,
        normalization="none",
        crop_foreground=False,
    )
    return Predictor(Threshold(200.0), plan, (64, 64, 16), model_name="threshold 200")
