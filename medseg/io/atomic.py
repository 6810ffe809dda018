"""Atomic writes: build the output in a temporary place beside it, then rename.

A crash or a kill mid-write never leaves a truncated output under the final
name, and an existing file is replaced only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
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
