"""The export-format registry: every row round-trips, capabilities hold, nothing else keeps a list."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import build_parser, main
from medseg.errors import MedsegError, UnsupportedFormatError
from medseg.export import (
    EXPORTS,
    ExportFormat,
    ExportOptions,
    MaskExporter,
    export_mask,
    get_export,
    label_object_kind,
    parse_formats,
    read_label_object,
    registry,
)
from medseg.io import read_volume, write_volume
from medseg.volume import Volume
from tests.fixtures.models import make_run


def _read_back(path: Path, reference: Path) -> Volume:
    """Any export read back as a label map: DICOM objects on their reference series, else as images."""
    if label_object_kind(path) is not None:
        return read_label_object(path, reference)
    return read_volume(path)


class RecordingWriter:
    """A throwaway format's writer: records each call and writes the labelled voxel count."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, mask, reference, labels, output: Path, options: ExportOptions) -> Path:
        volume = mask if isinstance(mask, Volume) else read_volume(mask)
        self.calls.append({"mask": volume, "reference": reference, "labels": labels, "options": options})
        output.write_text(str(int(np.count_nonzero(volume.array))))
        return output


@pytest.fixture
def throwaway(monkeypatch) -> tuple[ExportFormat, RecordingWriter]:
    """A format registered only in the table (monkeypatched), with no reference needed."""
    writer = RecordingWriter()
    row = ExportFormat("countvox", ".count.txt", writer, "labelled voxel count", needs_dicom_reference=False)
    monkeypatch.setattr(registry, "EXPORTS", (*EXPORTS, row))
    return row, writer


@pytest.mark.parametrize("fmt", EXPORTS, ids=lambda f: f.name)
def test_every_format_round_trips_through_its_writer(fmt, synthetic, synthetic_mask, labels_file, tmp_path):
    out = export_mask(synthetic_mask, synthetic.folder, fmt.name, labels_file, tmp_path / f"case{fmt.suffix}")
    assert out.is_file() and out.name == f"case{fmt.suffix}"
    back = _read_back(out, synthetic.folder)
    assert np.allclose(back.affine, synthetic_mask.affine, atol=1e-4)
    assert np.array_equal(back.array, synthetic_mask.array), fmt.name
    # aliases name the same row
    for alias in fmt.aliases:
        assert get_export(alias.upper()) is fmt


def test_mask_exporter_writes_every_registered_format(synthetic, synthetic_mask, labels_file, tmp_path):
    written = MaskExporter(list(EXPORTS), labels_file, ExportOptions(model_name="m1"))(
        synthetic_mask, synthetic.folder, tmp_path, stem="case01"
    )
    assert list(written) == [f.name for f in EXPORTS]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"case01{f.suffix}" for f in EXPORTS)


@pytest.mark.parametrize("fmt", EXPORTS, ids=lambda f: f.name)
def test_reference_capability(fmt, synthetic_mask, labels_file, tmp_path):
    out = tmp_path / f"x{fmt.suffix}"
    if fmt.needs_dicom_reference:
        with pytest.raises(MedsegError, match=f"{fmt.name} export needs the source DICOM series"):
            export_mask(synthetic_mask, None, fmt, labels_file, out)
        assert not out.exists()
    else:
        export_mask(synthetic_mask, None, fmt, labels_file, out)
        assert np.array_equal(read_volume(out).array, synthetic_mask.array)


@pytest.mark.parametrize("fmt", EXPORTS, ids=lambda f: f.name)
def test_fractional_only_where_declared(fmt, synthetic, synthetic_mask, labels_file, tmp_path):
    out = tmp_path / f"f{fmt.suffix}"
    options = ExportOptions(fractional=True)
    if fmt.fractional:
        export_mask(synthetic_mask, synthetic.folder, fmt, labels_file, out, options)
        assert np.array_equal(_read_back(out, synthetic.folder).array, synthetic_mask.array)
    else:
        with pytest.raises(UnsupportedFormatError, match="cannot store fractional"):
            export_mask(synthetic_mask, synthetic.folder, fmt, labels_file, out, options)
        assert not out.exists()


def test_single_class_format_refuses_several_classes(synthetic_mask, tmp_path, monkeypatch):
    writer = RecordingWriter()
    single = ExportFormat("onecls", ".one.txt", writer, "one class", needs_dicom_reference=False)
    monkeypatch.setattr(registry, "EXPORTS", (*EXPORTS, replace(single, multi_class=False)))
    with pytest.raises(UnsupportedFormatError, match="onecls holds one class per file"):
        export_mask(synthetic_mask, None, "onecls", None, tmp_path / "x.one.txt")
    liver = synthetic_mask.with_array((synthetic_mask.array == 1).astype(np.uint8))
    export_mask(liver, None, "onecls", None, tmp_path / "x.one.txt")
    assert (tmp_path / "x.one.txt").read_text() == str(int((synthetic_mask.array == 1).sum()))


def test_unknown_name_lists_known_names_and_suggests():
    with pytest.raises(UnsupportedFormatError) as info:
        get_export("rtstuct")
    assert info.value.message == "unknown export format 'rtstuct'"
    assert "did you mean 'rtstruct'?" in info.value.hint
    for name in ("nifti", "dicom-seg", "rtstruct"):
        assert name in info.value.hint
    assert "\n" not in str(info.value)
    with pytest.raises(UnsupportedFormatError, match="no export format given"):
        parse_formats(" , ")
    rows = parse_formats("nifti, SEG,dicom_seg,RT-SS")
    assert [f.name for f in rows] == ["nifti", "dicom-seg", "rtstruct"]


def test_cli_help_lists_the_registry(throwaway):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ("predict", "export"):
        help_text = sub.choices[command].format_help()
        for fmt in registry.EXPORTS:  # the throwaway row too
            assert fmt.name in help_text, (command, fmt.name)


def test_registered_format_is_accepted_and_called_by_predict(throwaway, tmp_path, capsys):
    """A row added to the table alone reaches ``medseg predict --format``: batch prediction
    and the CLI keep no list of their own."""
    row, writer = throwaway
    rng = np.random.default_rng(0)
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(rng.normal(size=(20, 18, 12)).astype(np.float32), np.eye(4)), scans / "a.nii.gz")
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    args = ["-q", "predict", "-m", str(run), "-i", str(scans), "-o", str(out), "--device", "cpu"]
    assert main([*args, "--format", "nifti,countvox"]) == 0, capsys.readouterr().err
    assert len(writer.calls) == 1
    call = writer.calls[0]
    predicted = read_volume(out / "a.nii.gz")
    assert np.array_equal(call["mask"].array, predicted.array)
    assert call["reference"] is None  # a NIfTI input has no DICOM series
    record = json.loads((out / "predictions.json").read_text())
    assert call["options"].model_name == record["model"]
    (case,) = record["cases"]
    assert case["extra_outputs"] == [str(out / f"a{row.suffix}")]
    assert (out / f"a{row.suffix}").read_text() == str(int(np.count_nonzero(predicted.array)))
    # a format that needs a DICOM series fails that case (one line), and writes nothing
    code = main([*args, "--format", "rtstruct", "--overwrite"])
    assert code == 14
    record = json.loads((out / "predictions.json").read_text())
    assert "rtstruct export needs the source DICOM series" in record["cases"][0]["error"]
    assert not (out / "a.rtstruct.dcm").exists()


def test_export_cli_reads_the_registry(throwaway, synthetic_mask, tmp_path, capsys):
    row, writer = throwaway
    mask = tmp_path / "case.nii.gz"
    write_volume(synthetic_mask, mask)
    out = tmp_path / f"case{row.suffix}"
    assert main(["export", "--mask", str(mask), "--format", "countvox", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert len(writer.calls) == 1 and writer.calls[0]["reference"] is None
    # a DICOM format without --reference is one line, naming the way out
    code = main(["export", "--mask", str(mask), "--format", "dicom-seg", "--output", str(tmp_path / "x.dcm")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert "dicom-seg export needs the source DICOM series" in lines[0] and "--reference" in lines[0]
    code = main(["export", "--mask", str(mask), "--format", "dicom_sge", "--output", str(tmp_path / "x.dcm")])
    err = capsys.readouterr().err
    assert code == 4 and "did you mean 'dicom-seg'?" in err


def test_docs_table_is_the_registry():
    docs = Path(__file__).resolve().parents[2] / "docs" / "export.md"
    assert registry.formats_table() in docs.read_text(), (
        "docs/export.md's format table is stale: paste medseg.export.registry.formats_table()"
    )
