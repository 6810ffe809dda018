"""The boundary between outside files and medseg: every failure becomes one of medseg's errors.

Readers validate what they can (headers before native code, DICOM geometry, label values).
What no check foresaw still surfaces somewhere as a ``ValueError``, ``KeyError``,
``struct.error``... deep inside pydicom, nibabel, highdicom or medseg's own parsing, and a
user would see a traceback. :func:`reading` wraps a reader's whole body: such an exception
becomes one :class:`~medseg.errors.CorruptFileError` line naming the file and what broke
(the traceback goes to the debug log). The fuzz campaign (``benchmarks/fuzz_readers.py``)
checks that nothing else escapes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from medseg.errors import CorruptFileError, MedsegError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: What malformed content raises inside parsers (never a user-actionable medseg error).
PARSER_FAILURES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    LookupError,
    ArithmeticError,
    EOFError,
    NotImplementedError,
    RecursionError,
    AssertionError,
    struct.error,
    zlib.error,
    sqlite3.Error,  # highdicom indexes a SEG's frames in SQLite; malformed indices fail there
    OSError,
)


@contextlib.contextmanager
def reading(
    path: str | Path, what: str = "file", error: type[MedsegError] = CorruptFileError
) -> Iterator[None]:
    """Turn a parser failure while reading ``path`` into one ``error`` line.

    Args:
        path: The file or folder being read (named in the message).
        what: What it should be (``"DICOM SEG"``, ``"manifest"``...).
        error: The medseg error class to raise (:class:`CorruptFileError` by default).

    Raises:
        MedsegError: unchanged when the reader raised one; ``error`` for a parser failure.
    """
    try:
        yield
    except MedsegError:
        raise
    except (FileNotFoundError, PermissionError):
        raise
    except PARSER_FAILURES as exc:
        log.debug("reading %s failed", path, exc_info=True)
        detail = " ".join(str(exc).split())[:200] or "no detail"
        raise error(
            f"cannot read {what} {path}: {type(exc).__name__}: {detail}",
            hint="the file is damaged, truncated or not what its name says",
        ) from None


def guarded_reader(
    what: str, error: type[MedsegError] = CorruptFileError
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`reading` for a reader whose first argument is the path."""

    def wrap(reader: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(reader)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            path = args[0] if args else next(iter(kwargs.values()), "?")
            with reading(path if isinstance(path, (str, Path)) else "(dataset)", what, error):
                return reader(*args, **kwargs)

        return guarded

    return wrap
