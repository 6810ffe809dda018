"""The dataset fingerprint of ``medseg plan``: what every planning rule reads.

:func:`compute_fingerprint` measures every case of an MSD folder, a ``dataset.json`` or a medseg
manifest (:mod:`medseg.planning.case_stats`: shape, spacing and orientation, foreground intensity
statistics per channel, voxels, components and position per class, grid agreement), in parallel
across cases, and ends with dataset summaries (:mod:`medseg.planning.summary`). The layout of the
result is the fingerprint contract (``fingerprint.json``, version :data:`FINGERPRINT_VERSION`).

Each case's measurement is cached in ``<cache dir>/fingerprints/`` (one JSON file per dataset,
written atomically), keyed by the path, size and modification time (ns) of each of its files, so
a second call on an unchanged dataset reads the cache and touching one file re-measures that case
only. Follows nnU-Net's dataset fingerprint (Isensee et al., Nature Methods 2021).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InputNotFoundError

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1
#: Bump when what a case's entry holds changes: older cache entries are then never used.
_CASE_FORMAT = 3

_worker_manifest: Any = None  # the manifest of a worker process (set by its initializer)


def resolve_source(source: str | Path) -> Path:
    """The ``dataset.json`` or manifest file that ``source`` names (a folder holding a
    ``dataset.json``, or the file itself), absolute.

    Raises:
        InputNotFoundError: no such file, or a folder without ``dataset.json``.
    """
    p = Path(source).expanduser()
    if p.is_dir():
        if not (p / "dataset.json").is_file():
            raise InputNotFoundError(
                f"{p} holds no dataset.json",
                hint="give an MSD folder (with dataset.json), a dataset.json or a medseg manifest",
            )
        p = p / "dataset.json"
    if not p.is_file():
        raise InputNotFoundError(f"no such dataset or manifest: {p}", hint="check the path")
    return p.resolve()


def _settings_key(manifest: Any) -> str:
    """What, besides the files, changes a case's measurement."""
    from medseg.planning import case_stats

    return json.dumps(
        [
            _CASE_FORMAT,
            case_stats.ORIENTATION,
            case_stats.SAMPLE_PER_CASE,
            case_stats.SAMPLE_SEED,
            manifest.channels_in_one_file,
            len(manifest.channels),
            sorted((manifest.label_map or {}).items()),
        ]
    )


# -- the per-dataset cache ----------------------------------------------------------------


def _encode(sample: np.ndarray) -> dict[str, str]:
    a = np.ascontiguousarray(sample)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4:
        a = a.astype(np.float32)
    if a.dtype.kind not in "iuf":
        a = a.astype(np.float32)
    return {"dtype": a.dtype.str, "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(d: dict[str, str]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["data"]), dtype=np.dtype(d["dtype"]))


class FingerprintCache:
    """Case measurements of one dataset, in ``<root>/fingerprints/<hash of the source>.json``."""

    def __init__(self, root: str | Path | None, source: Path, data_root: str | Path | None) -> None:
        from medseg.data.cache import default_cache_dir

        base = Path(root).expanduser() if root else default_cache_dir()
        name = hashlib.sha1(f"{source}|{data_root or ''}".encode()).hexdigest()[:20]
        self.path = base / "fingerprints" / f"{name}.json"

    def load(self) -> dict[str, dict[str, Any]]:
        """The stored entries (case key -> entry); empty when missing or damaged."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != _CASE_FORMAT:
                return {}
            return dict(data["cases"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring damaged fingerprint cache %s (%s)", self.path, exc)
            return {}

    def save(self, entries: dict[str, dict[str, Any]]) -> None:
        """Replace the stored entries (atomically; entries of files gone are dropped)."""
        from medseg.io.atomic import remove_stale_temporaries, write_text_atomic

        remove_stale_temporaries(self.path.parent)
        try:
            write_text_atomic(self.path, json.dumps({"format": _CASE_FORMAT, "cases": entries}))
        except OSError as exc:  # a read-only cache must not stop planning
            log.warning("could not write the fingerprint cache %s (%s)", self.path, exc)


# -- measuring the cases ------------------------------------------------------------------


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _init_worker(manifest: Any) -> None:
    global _worker_manifest
    _worker_manifest = manifest


def _measure_in_worker(indices: list[int]) -> list[tuple[int, dict[str, Any]]]:
    from medseg.planning import case_stats

    m = _worker_manifest
    return [(i, case_stats.fingerprint_case(m.cases[i], m)) for i in indices]


def _measure(manifest: Any, todo: list[int], workers: int) -> dict[int, dict[str, Any]]:
    """Measure the cases ``todo`` (indices into the manifest), in ``workers`` processes (cases
    sent in small chunks: one case takes milliseconds, as long as sending it)."""
    from medseg.planning import case_stats
    from medseg.progress import track

    if workers <= 1 or len(todo) <= 1:
        return {
            i: case_stats.fingerprint_case(manifest.cases[i], manifest) for i in track(todo, "fingerprint")
        }
    import concurrent.futures as cf

    # the first case is measured here: the readers' lazy imports then happen once, before the fork
    first = {todo[0]: case_stats.fingerprint_case(manifest.cases[todo[0]], manifest)}
    todo = todo[1:]
    workers = min(workers, len(todo))
    size = max(1, min(16, len(todo) // (4 * workers)))
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
    with cf.ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(manifest,)) as ex:
        futures = [ex.submit(_measure_in_worker, chunk) for chunk in chunks]

        def results() -> Any:
            for fut in cf.as_completed(futures):
                yield from fut.result()

        try:
            return {**first, **dict(track(results(), "fingerprint", total=len(todo)))}
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise


def compute_fingerprint(
    source: str | Path,
    data_root: str | Path | None = None,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Fingerprint a dataset: every case measured in RAS, then dataset summaries.

    Args:
        source: An MSD folder (holding ``dataset.json``), a ``dataset.json`` or a medseg manifest.
        data_root: Folder relative manifest paths start from (as ``--data-root``).
        workers: Processes measuring cases in parallel (default: the CPUs this process may use,
            ``os.cpu_count()`` where the OS has no affinity mask; 1: in this process).
        cache_dir: The medseg cache folder (default :func:`medseg.data.cache.default_cache_dir`);
            measurements go to its ``fingerprints/`` sub-folder.
        use_cache: False: measure every case and leave the cache alone.

    Returns:
        The fingerprint (``fingerprint.json``'s contract): ``version``, ``source``, ``dataset``,
        ``cases`` (one entry per case, in manifest order; shapes [i, j, k] and spacings in mm
        along the RAS axes), ``summary`` (with ``problems``: label or channel grids that
        disagree, classes with no voxels anywhere, label values the labels do not list) and
        ``seconds``. Problems are reported, never raised.

    Raises:
        InputNotFoundError: the source, or a file of a case, is missing.
        ConfigError: the manifest is malformed.
        MedsegError: a file is unreadable (one line naming it).
    """
    from medseg.data.cache import case_key
    from medseg.data.manifest import load_manifest
    from medseg.planning.summary import dataset_entry, summarise

    start = time.perf_counter()
    path = resolve_source(source)
    manifest = load_manifest(path, data_root)
    held_out = sum(c.split == "test" for c in manifest.cases)
    # the test split is never looked at: nothing of the held-out cases may shape the plan
    manifest = manifest.model_copy(update={"cases": [c for c in manifest.cases if c.split != "test"]})
    settings = _settings_key(manifest)
    keys = [case_key(c, settings) for c in manifest.cases]
    cache = FingerprintCache(cache_dir, path, data_root) if use_cache else None
    stored = cache.load() if cache else {}
    todo = [i for i, k in enumerate(keys) if k not in stored]
    measured = _measure(manifest, todo, max(1, workers or _usable_cpus()))
    entries = {k: stored[k] for k in keys if k in stored}
    for i, entry in measured.items():
        entries[keys[i]] = {"record": entry["record"], "sample": [_encode(s) for s in entry["sample"]]}
    if cache is not None and (todo or len(stored) != len(entries)):
        cache.save(entries)
    log.info("fingerprint: %d case(s) measured, %d from the cache", len(todo), len(keys) - len(todo))
    records, samples = [], []
    for case, k in zip(manifest.cases, keys):
        records.append({**entries[k]["record"], "id": case.id})
        samples.append([_decode(s) for s in entries[k]["sample"]])
    return {
        "version": FINGERPRINT_VERSION,
        "source": str(path),
        "dataset": {**dataset_entry(manifest, records), "n_test_left_out": held_out},
        "cases": records,
        "summary": summarise(manifest, records, samples),
        "seconds": round(time.perf_counter() - start, 3),
    }
