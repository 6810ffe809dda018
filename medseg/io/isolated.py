"""Reading scans in a worker process, so that a crash in native code fails one input only.

SimpleITK, nibabel's compressed readers and the DICOM decoders are C/C++: a file they
mishandle can end the process with a signal (SIGSEGV, SIGABRT) that no ``except``
catches. :class:`IsolatedReader` reads each input in one long-lived child process
(``python -m medseg.io.isolated``: a fresh interpreter that imports only ``medseg.io``,
never torch, and unlike multiprocessing's ``spawn`` never re-runs the caller's main
script) and returns the :class:`~medseg.volume.Volume` through a pipe. When the child dies, the
read raises :class:`~medseg.errors.ReaderCrashedError` naming the input and the
signal, and the next read starts a new child. A child that gives no answer within
``$MEDSEG_READ_TIMEOUT`` seconds (default 600) is killed the same way, so a reader that hangs
on one input stalls the batch for that long at most.

The cost is one interpreter start per batch (about a second), plus pickling each volume
through the pipe (about 0.1 s per 100 MB).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError, ReaderCrashedError
from medseg.volume import Volume

log = logging.getLogger(__name__)

#: The function that reads one input, as ``"module:function"``; the environment variable
#: :data:`READER_ENV` replaces it (a hook for debugging and for tests that need a crash).
DEFAULT_READER = "medseg.io:read_volume"
READER_ENV = "MEDSEG_CASE_READER"
#: Seconds one read may take before the child is killed (environment variable, default 600).
TIMEOUT_ENV = "MEDSEG_READ_TIMEOUT"


def read_timeout() -> float:
    """The time limit of one read, from :data:`TIMEOUT_ENV` (seconds; default 600).

    Raises:
        ConfigError: the variable is not a positive number.
    """
    from medseg.errors import ConfigError

    raw = os.environ.get(TIMEOUT_ENV, "600")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is not a positive number of seconds")
    return value


class IsolatedReader:
    """Reads inputs in a reusable child process; a crash there fails that input only.

    Use it as a context manager, or call :meth:`close`::

        with IsolatedReader() as reader:
            volume = reader.read("scan.nii.gz")
    """

    def __init__(self) -> None:
        self._process: Any = None
        self._conn: Connection | None = None

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, path: str | Path, **kwargs: Any) -> Volume:
        """Read ``path`` with the reader (``read_volume(path, **kwargs)`` by default).

        Raises:
            ReaderCrashedError: the child process died while reading ``path``.
            MedsegError: whatever the reader raised for ``path`` (re-raised here).
            RuntimeError: a bug in the reader (its traceback is in the message).
        """
        reader = os.environ.get(READER_ENV) or DEFAULT_READER
        timeout = read_timeout()
        conn = self._connection()
        try:
            conn.send((reader, str(path), kwargs))
            if not conn.poll(timeout):
                raise self._hung(Path(path), timeout)
            status, payload, records = conn.recv()
            if status == "ok":  # the voxels follow as raw bytes, straight into their array
                dtype, shape, order, affine, meta = payload
                array = np.empty(shape, dtype, order=order)
                _read_exactly(conn.fileno(), _raw(array))
        except (EOFError, OSError):
            raise self._crashed(Path(path)) from None
        for name, level, message in records:
            logging.getLogger(name).log(level, "%s", message)
        if status == "ok":
            return Volume(array, affine, meta)
        if status == "error":
            raise payload
        raise RuntimeError(f"reading {path} failed in the reader process:\n{payload}")

    def close(self) -> None:
        """Stop the child process (it is started again by the next :meth:`read`)."""
        conn, process, self._conn, self._process = self._conn, self._process, None, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _connection(self) -> Connection:
        if self._conn is None:
            mine, theirs = socket.socketpair()
            with theirs:
                process = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                )
            conn = Connection(mine.detach())
            conn.send((sys.path, logging.getLogger().getEffectiveLevel()))
            self._conn, self._process = conn, process
        return self._conn

    def _hung(self, path: Path, timeout: float) -> ReaderCrashedError:
        """The error for a child that gave no answer in ``timeout`` s; the child is killed."""
        process = self._process
        self._conn, self._process = None, None
        process.kill()
        process.wait()
        log.warning("the reader process hung on %s for %g s; killed, starting a new one", path, timeout)
        return ReaderCrashedError(
            f"{path.name}: reader gave no answer in {timeout:g} s (killed)",
            hint=f"the file may be damaged: check it with 'medseg info {path}'; a slow disk or a huge "
            f"file may need a larger {TIMEOUT_ENV}",
        )

    def _crashed(self, path: Path) -> ReaderCrashedError:
        """The error for a child that died reading ``path``; the child is reaped."""
        process = self._process
        self._conn, self._process = None, None
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # alive but its end of the pipe is gone
            process.kill()
            code = process.wait()
        if code is not None and code < 0:
            try:
                how = f"signal {-code}, {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit status {code}"
        log.warning("the reader process died reading %s (%s); starting a new one", path, how)
        return ReaderCrashedError(
            f"{path.name}: reader crashed ({how})",
            hint=f"the file is damaged in a way the native reader does not survive: check it with "
            f"'medseg info {path}' and re-export it",
        )


def _serve(conn: Connection) -> None:
    """The child's loop: take the parent's ``sys.path`` and log level, then read each
    requested input and send back the volume or the error, with the log records the
    reader emitted."""
    path_list, level = conn.recv()
    sys.path[:] = path_list
    records: list[tuple[str, int, str]] = []
    handler = _Collect(records)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            request = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if request is None:
            return
        reader, path, kwargs = request
        records.clear()
        array = None
        try:
            module, _, name = reader.partition(":")
            volume = getattr(importlib.import_module(module), name)(path, **kwargs)
            order = "F" if volume.array.flags.f_contiguous and not volume.array.flags.c_contiguous else "C"
            array = np.asarray(volume.array, order=order)
            reply: tuple[str, Any] = ("ok", (array.dtype, array.shape, order, volume.affine, volume.meta))
        except MedsegError as exc:
            reply = ("error", exc)
        except Exception:
            reply = ("bug", traceback.format_exc())
        try:
            conn.send((*reply, list(records)))
        except Exception:  # an unpicklable result
            conn.send(("bug", traceback.format_exc(), list(records)))
            continue
        if reply[0] == "ok":
            _write_all(conn.fileno(), _raw(array))
        volume = array = None  # the child holds no scan while the parent works on it
        _release_memory()


def _release_memory() -> None:
    """Give the memory of the last read back to the system (collect, then glibc's malloc_trim)."""
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _raw(array: np.ndarray) -> memoryview:
    """The bytes of a C- or Fortran-contiguous array, without a copy."""
    return memoryview(array.ravel(order="K").view(np.uint8))


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, target: memoryview) -> None:
    """Fill ``target`` from ``fd`` (pickling a large array through the connection is
    several times slower than this)."""
    while target:
        got = os.readv(fd, [target])
        if got == 0:
            raise EOFError("the reader process closed the connection")
        target = target[got:]


class _Collect(logging.Handler):
    """Keeps ``(logger, level, message)`` of each record, to be logged again by the parent."""

    def __init__(self, records: list[tuple[str, int, str]]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


_shared: IsolatedReader | None = None


def read_isolated(path: str | Path, **kwargs: Any) -> Volume:
    """:meth:`IsolatedReader.read` with one reader shared by the whole process (its child
    is reused across inputs and calls, and stopped at exit)."""
    global _shared
    if _shared is None:
        _shared = IsolatedReader()
        atexit.register(_shared.close)
    return _shared.read(path, **kwargs)


if __name__ == "__main__":  # the child: python -m medseg.io.isolated FD
    _serve(Connection(int(sys.argv[1])))
