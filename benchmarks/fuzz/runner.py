"""Drives the fuzz campaign: hypothesis draws each mutation, a worker process reads it.

Outcomes of one input:

* ``ok``: read without error;
* ``refused``: one of medseg's own errors, on one line;
* ``uncaught``: any other exception, or a multi-line error (a finding);
* ``crash``: the worker died, e.g. a segmentation fault in native code (a finding);
* ``hang``: no answer within the time limit (a finding; the worker is restarted);
* ``memory``: the reader tried to allocate past the 2 GiB cap (a finding).

Every finding is copied to ``findings/<family>/<outcome>-<n>/`` with what happened, so it
can become a named regression input under ``tests/io/data/fuzz/``
(``tests/io/test_fuzz_regressions.py``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from benchmarks.fuzz.families import FAMILIES, REPO, Family

FINDINGS = ("uncaught", "crash", "hang", "memory")


class Worker:
    """A reader process that survives nothing but is restarted after every death."""

    def __init__(self, memory_gb: float = 2.0) -> None:
        self.memory_gb = memory_gb
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_FUZZ_MEMORY_GB=str(self.memory_gb),
                   OMP_NUM_THREADS="1", MEDSEG_NO_PROGRESS="1")  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fuzz.worker"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        line = self.proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError("fuzz worker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def read(self, family: str, path: Path, timeout: float) -> dict[str, str]:
        if self.proc is None:
            self.start()
            self.restarts += 1
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps({"family": family, "path": str(path)}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return {"outcome": "hang", "detail": f"no answer in {timeout:.0f} s"}
        line = self.proc.stdout.readline()
        if not line:
            return self._died()
        return json.loads(line)

    def _died(self) -> dict[str, str]:
        assert self.proc is not None
        code = self.proc.wait()
        self.proc = None
        kind = "memory" if code in (-6, 134) else "crash"  # std::bad_alloc aborts
        return {"outcome": kind, "detail": f"worker exited with {code}"}


@dataclass
class FamilyResult:
    family: str
    seeds: int
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "seeds": self.seeds,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "outcomes": dict(self.outcomes),
            "refusals_by_error": dict(self.refusals.most_common()),
            "findings": self.findings,
        }


def run_family(
    family: Family, n: int, seed: int, worker: Worker, findings_dir: Path | None, timeout: float = 30.0
) -> FamilyResult:
    """Run ``n`` mutated inputs of one family through the worker."""
    with tempfile.TemporaryDirectory(prefix=f"fuzz-seeds-{family.name}-") as seed_tmp:
        seeds = family.seeds(Path(seed_tmp))
        result = FamilyResult(family.name, len(seeds))
        if not seeds:
            return result
        t0 = time.monotonic()

        @hypothesis_seed(seed)
        @settings(
            max_examples=n,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def one(data: st.DataObject) -> None:
            chosen = data.draw(st.sampled_from(seeds))
            with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
                path = family.build(data, chosen, Path(tmp))
                reply = worker.read(family.name, path, timeout)
                outcome = reply["outcome"]
                result.inputs += 1
                result.outcomes[outcome] += 1
                if outcome == "refused":
                    result.refusals[reply["detail"].split(":", 1)[0]] += 1
                if outcome in FINDINGS:
                    result.findings.append(_keep(findings_dir, family.name, outcome, result, tmp, reply))

        one()
        result.seconds = time.monotonic() - t0
    return result


def _keep(findings_dir: Path | None, family: str, outcome: str, result: FamilyResult, tmp: str,
          reply: dict[str, str]) -> str:  # fmt: skip
    name = f"{outcome}-{result.outcomes[outcome]:03d}"
    if findings_dir is not None:
        dest = findings_dir / family / name
        shutil.copytree(tmp, dest, dirs_exist_ok=True)
        (dest / "OUTCOME.txt").write_text(json.dumps(reply, indent=2))
    return f"{name}: {reply['detail'].splitlines()[0][:200]}"


def _quiet() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)


def run_campaign(
    families: list[str], n: int, seed: int, findings_dir: Path | None, memory_gb: float = 2.0
) -> list[FamilyResult]:
    """Run every named family with ``n`` inputs each; one worker, restarted after each death."""
    _quiet()
    worker = Worker(memory_gb)
    worker.start()
    try:
        return [run_family(FAMILIES[name], n, seed, worker, findings_dir) for name in families]
    finally:
        worker.stop()
