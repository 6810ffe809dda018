"""The fuzz worker: reads one mutated input per request, in a process of its own.

It is started by :mod:`benchmarks.fuzz.runner` and speaks one JSON line per request on
stdin/stdout: ``{"family": "nifti", "path": "/tmp/.../case.nii.gz"}`` in, and
``{"outcome": "ok" | "refused" | "uncaught" | "memory", "detail": "..."}`` out.

Its address space is capped at its size after start-up plus ``MEDSEG_FUZZ_MEMORY_GB``
(default 2 GiB), so an input that makes a reader allocate more than that ends in a
``MemoryError`` (reported as ``"memory"``) or a crash, never in a machine-wide blow-up.
A segmentation fault ends the worker; the runner sees the closed pipe and records a crash.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path
from typing import Any


def _read_volume(path: Path) -> Any:
    """Every image family, DICOM series included, goes through ``medseg.io.read_volume``."""
    from medseg.io import read_volume

    return read_volume(path)


def _read_seg(path: Path) -> Any:
    from medseg.export import read_seg

    reference = path / "reference"
    return read_seg(path / "seg.dcm", reference if reference.is_dir() else None)


def _read_rtstruct(path: Path) -> Any:
    from medseg.export import read_rtstruct

    return read_rtstruct(path / "rtstruct.dcm", path / "reference")


def _read_manifest(path: Path) -> Any:
    from medseg.data.manifest import load_manifest

    return load_manifest(path)


def _read_pipeline(path: Path) -> Any:
    from medseg.config import load_pipeline

    return load_pipeline(path)


def _crash(path: Path) -> Any:
    """The harness's self-test: a reader that dies of a segmentation fault."""
    import ctypes

    return ctypes.string_at(0)


READERS = {
    "crash-test": _crash,
    "nifti": _read_volume,
    "nrrd": _read_volume,
    "metaimage": _read_volume,
    "image2d": _read_volume,
    "dicom-series": _read_volume,
    "dicom-seg": _read_seg,
    "dicom-rtstruct": _read_rtstruct,
    "manifest": _read_manifest,
    "pipeline": _read_pipeline,
}


def _cap_memory() -> None:
    limit_gb = float(os.environ.get("MEDSEG_FUZZ_MEMORY_GB", "2"))
    with open("/proc/self/statm") as fh:
        vm_pages = int(fh.read().split()[0])
    base = vm_pages * os.sysconf("SC_PAGE_SIZE")
    cap = base + int(limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def handle(family: str, path: Path) -> dict[str, str]:
    """Read one input; classify what happened."""
    from medseg.errors import MedsegError

    try:
        READERS[family](path)
    except MedsegError as exc:
        text = str(exc)
        if "\n" in text.strip():
            return {"outcome": "uncaught", "detail": f"multi-line MedsegError: {text[:500]}"}
        return {"outcome": "refused", "detail": f"{type(exc).__name__}: {text[:200]}"}
    except MemoryError:
        return {"outcome": "memory", "detail": "MemoryError (allocation over the cap)"}
    except RecursionError:
        return {"outcome": "uncaught", "detail": "RecursionError"}
    except Exception as exc:
        tb = traceback.format_exc(limit=-6)
        return {"outcome": "uncaught", "detail": f"{type(exc).__name__}: {exc}"[:300] + "\n" + tb[-1500:]}
    return {"outcome": "ok", "detail": ""}


def main() -> None:
    import logging

    logging.disable(logging.CRITICAL)
    import warnings

    warnings.simplefilter("ignore")
    # import what every reader needs before capping memory, so the cap measures the reader
    import medseg.config
    import medseg.data.manifest
    import medseg.export
    import medseg.io  # noqa: F401

    _cap_memory()
    out = sys.stdout
    sys.stdout = sys.stderr  # a reader that prints cannot corrupt the protocol
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        reply = handle(request["family"], Path(request["path"]))
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
