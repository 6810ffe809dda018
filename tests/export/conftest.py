"""Fixtures for the export tests: a synthetic oblique series with a known label map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.io import read_volume
from medseg.volume import Volume
from tests.export.helpers import LABELS, Synthetic, make_synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Synthetic:
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "ct")


@pytest.fixture(scope="module")
def synthetic_mask(synthetic) -> Volume:
    """The label map as a Volume on the series grid (grid from medseg, voxels built independently)."""
    ct = read_volume(synthetic.folder)
    return ct.with_array(synthetic.label_volume_array())


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.json"
    path.write_text(json.dumps(LABELS))
    return path
