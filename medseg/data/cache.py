"""On-disk cache of preprocessed cases, keyed by the plan's settings and the source files.

A second training run with the same plan and data starts at once. The key
changes when the plan (spacing, normalisation...) or any source file (path,
size, modification time) changes, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from medseg.data.manifest import CaseEntry
from medseg.io.atomic import remove_stale_temporaries, write_bytes_atomic
from medseg.transforms.preprocess import CaseRecord, PreprocessedCase

log = logging.getLogger(__name__)

CACHE_ENV = "MEDSEG_CACHE_DIR"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medseg" / "preprocessed"


def case_key(case: CaseEntry, plan_key: str) -> str:
    """Hash of the plan key and each source file's path, size and modification time."""
    h = hashlib.sha1(plan_key.encode())
    for p in [*case.images, *([case.label] if case.label else [])]:
        q = Path(p)
        files = sorted(f for f in q.rglob("*") if f.is_file()) if q.is_dir() else [q]
        for f in files:  # a DICOM folder is keyed by every file in it
            st = f.stat() if f.is_file() else None
            h.update(f"{f.resolve()}|{st.st_size if st else 0}|{st.st_mtime_ns if st else 0}".encode())
    return h.hexdigest()[:24]


class PreprocessedCache:
    """Reads and writes preprocessed cases as compressed ``.npz`` files in ``root``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> PreprocessedCase | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                label = z["label"] if "label" in z.files else None
                record = CaseRecord.from_dict(json.loads(str(z["record"])))
                return PreprocessedCase(z["image"], label, record)
        except Exception as exc:  # a damaged entry is rebuilt
            log.warning("ignoring damaged cache entry %s (%s)", p, exc)
            return None

    def save(self, key: str, case: PreprocessedCase) -> None:
        buf = io.BytesIO()
        arrays = {"image": case.image, "record": np.array(json.dumps(case.record.to_dict()))}
        if case.label is not None:
            arrays["label"] = case.label
        np.savez_compressed(buf, **arrays)
        remove_stale_temporaries(self.path(key).parent)  # left by a killed earlier run
        write_bytes_atomic(self.path(key), buf.getvalue())
