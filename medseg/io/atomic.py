"""Atomic writes: build the output in a temporary place beside it, then rename.

A crash or a kill mid-write never leaves a truncated output under the final
name, and an existing file is replaced only once the new one is complete.

A ``kill -9`` cannot run clean-up code, so the temporary folder of a killed writer stays
behind. Its name records the writer's host and process id (``.NAME.HOST-PID.RANDOM.tmp``,
HOST a short hash of the host name), and :func:`remove_stale_temporaries` deletes those of
this host whose process is gone, so a writer on another node of a shared file system is never
touched; batch prediction, training and the preprocessing cache call it when they start writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\..+\.([0-9a-f]{8})-(\d+)\.[^.]+\.tmp$")


def host_tag() -> str:
    """A short, file-name-safe tag of this host (8 hex digits of its name's SHA-1)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path with the same file name, inside a hidden temporary folder
    next to ``path``; on success every file written into that folder is renamed into
    ``path``'s folder (the file named like ``path`` last), and the folder is removed.

    Writers that produce companion files (``.mhd`` + ``.raw``, ``.nhdr`` + ``.raw.gz``)
    write them next to the yielded path and they are moved too.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(
        tempfile.mkdtemp(prefix=f".{final.name}.{host_tag()}-{os.getpid()}.", suffix=".tmp", dir=final.parent)
    )
    try:
        tmp_path = tmp_dir / final.name
        yield tmp_path
        if not tmp_path.exists():
            raise RuntimeError(f"writer produced no file at {tmp_path}")
        companions = [p for p in tmp_dir.iterdir() if p.name != final.name]
        for p in companions:
            os.replace(p, final.parent / p.name)
        os.replace(tmp_path, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary folders that killed writers left in ``folder`` (not recursive).

    Only folders named by :func:`atomic_output` on this host whose writing process no longer
    exists are removed, so a writer still running (another rank, another batch, another node)
    is never disturbed.

    Returns:
        The folders removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed, host = [], host_tag()
    for entry in root.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and match.group(1) == host and entry.is_dir() and not _alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        log.info("removed %d unfinished temporary output(s) of an interrupted run in %s", len(removed), root)
    return removed
