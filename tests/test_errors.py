"""Every user error class has its own exit code, documented in docs/troubleshooting.md."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re
from pathlib import Path

import medseg
from medseg import errors
from medseg.errors import MedsegError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
STATUS_CODES = {errors.EXIT_CONVERT_PARTIAL, errors.EXIT_MANIFEST_PROBLEMS, errors.EXIT_SOME_FAILED}


def _all_error_classes() -> list[type[MedsegError]]:
    """MedsegError and every subclass defined anywhere in medseg (all modules imported)."""
    for info in pkgutil.walk_packages(medseg.__path__, "medseg."):
        if not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional dependency that is not installed
                continue
    found, todo = [], [MedsegError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("medseg."):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_exit_codes_are_unique_and_documented():
    classes = _all_error_classes()
    assert len(classes) >= 13, classes  # MedsegError and its 12 subclasses today
    codes = {}
    for cls in classes:
        assert cls.exit_code not in codes, f"{cls.__name__} and {codes[cls.exit_code]} share {cls.exit_code}"
        assert cls.exit_code not in STATUS_CODES and cls.exit_code not in (0, 1), cls
        codes[cls.exit_code] = cls.__name__
    rows = {int(m[0]): m[1] for m in re.findall(r"^\| (\d+) \| ([^|]*) \|", DOCS.read_text(), re.M)}
    for code, name in codes.items():
        assert f"`{name}`" in rows.get(code, ""), (
            f"docs/troubleshooting.md: no row '| {code} | … (`{name}`) |'"
        )
    assert rows.keys() >= STATUS_CODES


def test_errors_cross_processes_with_their_hint():
    for cls in _all_error_classes():
        copy = pickle.loads(pickle.dumps(cls("what", hint="how")))
        assert type(copy) is cls and str(copy) == "what; how"


def test_messages_and_hints_are_one_line():
    err = errors.CorruptFileError("cannot read x:\nExpected 5 bytes\r\n got 2", hint="check\nthe file")
    assert str(err) == "cannot read x: Expected 5 bytes got 2; check the file"
    assert pickle.loads(pickle.dumps(err)).hint == "check the file"
