"""Checks shared by the command-line tests."""

from __future__ import annotations


def one_error_line(capsys, *needles: str) -> str:
    """The single line a refused command wrote to stderr (no traceback), containing ``needles``."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
