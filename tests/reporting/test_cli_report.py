"""``medseg report`` and ``medseg compare`` in-process: outputs, and one-line user errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cli.main import main
from medseg.errors import ConfigError, InputNotFoundError, MedsegError
from tests.cli_checks import one_error_line


def test_report_command(evaluation_dir, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert (
        main(["report", str(evaluation_dir), "--output", str(out), "--cases", "1", "--window", "none"]) == 0
    )
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<img ") == 3  # worst 1 + best 1 + error curve


def test_report_user_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == InputNotFoundError.exit_code
    one_error_line(capsys, "medseg report: error:", "is not a folder")
    assert main(["report", str(tmp_path), "--cases", "-1"]) == ConfigError.exit_code
    one_error_line(capsys, "--cases must be >= 0")


def test_compare_command(evaluation_dir, second_evaluation_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(evaluation_dir), str(second_evaluation_dir), "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0].startswith("| class | metric |")
    assert "**HD95 (mm) ↓**" in stdout
    assert Path(out / "compare.md").read_text() in stdout


def test_compare_user_errors(evaluation_dir, tmp_path, capsys):
    assert main(["compare", str(evaluation_dir), "--output", str(tmp_path / "c")]) == MedsegError.exit_code
    one_error_line(capsys, "at least two runs")
    (tmp_path / "run").mkdir()
    code = main(["compare", str(evaluation_dir), str(tmp_path / "run"), "--output", str(tmp_path / "c")])
    assert code == InputNotFoundError.exit_code
    one_error_line(capsys, "neither an evaluation folder nor a run folder", "medseg evaluate")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", ["evaluate", "report", "compare"])
def test_help_mentions_the_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: medseg {command}" in capsys.readouterr().out
