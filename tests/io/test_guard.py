"""Parser failures while reading an outside file become one medseg error line."""

from __future__ import annotations

import json
import struct

import pytest

from medseg.config import load_pipeline
from medseg.data.manifest import load_manifest
from medseg.errors import ConfigError, CorruptFileError, InputNotFoundError
from medseg.io.guard import guarded_reader, reading


@pytest.mark.parametrize(
    "exc", [ValueError("bad\nvalue"), KeyError("Rows"), struct.error("unpack"), IndexError()]
)
def test_parser_failures_become_one_corrupt_file_line(exc):
    with pytest.raises(CorruptFileError) as err, reading("scan.dcm", "DICOM file"):
        raise exc
    text = str(err.value)
    assert text.startswith(f"cannot read DICOM file scan.dcm: {type(exc).__name__}")
    assert "\n" not in text


def test_medseg_errors_and_missing_files_pass_unchanged():
    with pytest.raises(InputNotFoundError), reading("x", "file"):
        raise InputNotFoundError("no such file")
    with pytest.raises(FileNotFoundError), reading("x", "file"):
        raise FileNotFoundError("x")


def test_bugs_outside_parsing_are_not_hidden():
    with pytest.raises(SystemExit), reading("x", "file"):
        raise SystemExit(3)


def test_decorator_names_the_path_and_error_class(tmp_path):
    @guarded_reader("manifest", ConfigError)
    def reader(path):
        return {"a": 1}["b"]

    with pytest.raises(ConfigError, match=r"cannot read manifest .*m\.json: KeyError: 'b'"):
        reader(tmp_path / "m.json")


# found by benchmarks/fuzz_readers.py: structurally wrong manifests and non-UTF-8 pipelines
@pytest.mark.parametrize(
    "document",
    [
        {"name": "x", "labels": {"0": "bg"}, "training": [{"label": "l.nii.gz"}]},  # no "image"
        {"name": "x", "labels": {"0": "bg"}, "training": "abc"},
        {"name": "x", "labels": {"0": "bg"}, "training": [3]},
        {"name": "x", "labels": {"0": "bg"}, "cases": [{"id": "a", "images": 5}]},
    ],
)
def test_malformed_manifests_are_config_errors(tmp_path, document):
    p = tmp_path / "dataset.json"
    p.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as err:
        load_manifest(p)
    assert "\n" not in str(err.value)


def test_pipeline_that_is_not_utf8_is_a_config_error(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_bytes(b"name: x\nmodel: {name: unet}\n# caf\xe9\xf9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_pipeline(p)
