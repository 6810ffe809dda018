"""Kill -9 soak of ``medseg train`` and ``medseg predict``.

Training: one deterministic CPU run straight through, then the same config killed with
SIGKILL at random moments at least ``--kills`` times, each time resumed with ``--resume``
(or restarted when it died before its first checkpoint). After every kill the last
checkpoint must load; at the end the weights and metrics must equal the straight run's.

Prediction: ``medseg predict`` over a folder of ``--cases`` scans straight through, then
killed at random moments at least ``--kills`` times and rerun (existing masks are skipped).
At the end every mask must equal the straight run's, and no temporary or partial file and
no orphaned process may be left behind.

    python benchmarks/soak.py               # both, 20 kills each; writes benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO, machine
from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset


def _medseg(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1", OMP_NUM_THREADS="2")
    return subprocess.Popen(
        [sys.executable, "-m", "medseg", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: orphans of a kill can be found
    )


def _finish(proc: subprocess.Popen, what: str) -> None:
    err = proc.communicate(timeout=1800)[1]
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}): {err[-2000:]}")


def _kill(proc: subprocess.Popen, grace: float = 10.0) -> int:
    """SIGKILL the command alone (as an out-of-memory killer or a power cut would), then count
    the process groups it left behind: children still alive ``grace`` seconds later."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return 0
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    return 1


def _kill_and_rerun(
    args: Callable[[], list[str]],
    kills: int,
    rng: random.Random,
    longest: float,
    after_kill: Callable[[], None],
    what: str,
    progress: Callable[[], int] = lambda: 0,
) -> tuple[int, int, int]:
    """Start ``medseg ARGS`` and SIGKILL it at a random moment, call ``after_kill``, and again
    until ``kills`` kills landed; then let it finish. Returns (kills, starts, orphans).

    The first kill lands anywhere in 1 s .. ``longest`` s (start-up included). Every later one
    waits until ``progress()`` has grown since the start (an epoch saved, a mask written), then
    a random 0 .. ``longest`` s more, so that each session gets somewhere and the kills fall on
    every phase of the work: computing, validating, writing a checkpoint or a mask."""
    n_kills = starts = orphans = 0
    while True:
        proc = _medseg(args())
        starts += 1
        if n_kills < kills:
            if n_kills:
                before = progress()
                while proc.poll() is None and progress() <= before:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, longest))
            else:
                time.sleep(rng.uniform(1.0, longest))
            if proc.poll() is None:
                orphans += _kill(proc)
                n_kills += 1
                after_kill()
                continue
        _finish(proc, f"{what} rerun")
        return n_kills, starts, orphans


def _leftovers(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))]


def soak_training(work: Path, kills: int, rng: random.Random, epochs: int) -> dict:
    import torch

    from medseg.training.checkpoint import load_checkpoint

    manifest = write_3d_dataset(work / "data", n=5)
    cfg = pipeline_dict(manifest, work / "cache", "unet", 3, {"features": [8, 16, 32]}, epochs=epochs,
                        iterations_per_epoch=6, num_workers=1)  # fmt: skip
    pipeline = work / "train.yaml"
    pipeline.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    _finish(
        _medseg(["train", str(pipeline), "-o", str(work / "straight"), "--device", "cpu"]), "straight run"
    )
    straight_s = time.monotonic() - t0
    run = work / "killed"
    checks = {"unreadable": 0, "after_checkpoint": 0}

    def args() -> list[str]:  # resume once a checkpoint exists, else start (again)
        resume = (run / "checkpoints" / "last.pt").is_file()
        return ["train", "-o", str(run), "--device", "cpu"] + (["--resume"] if resume else [str(pipeline)])

    def after_kill() -> None:  # every checkpoint on disk must load after every kill
        saved = sorted((run / "checkpoints").glob("*.pt")) if (run / "checkpoints").is_dir() else []
        checks["after_checkpoint"] += bool(saved)
        for path in saved:
            try:
                load_checkpoint(path)
            except Exception:
                checks["unreadable"] += 1

    def epochs_saved() -> int:
        metrics = run / "metrics.csv"
        return len(metrics.read_text().splitlines()) if metrics.is_file() else 0

    epoch_s = straight_s / epochs
    n_kills, starts, orphans = _kill_and_rerun(
        args, kills, rng, 1.5 * epoch_s, after_kill, "train", progress=epochs_saved
    )
    a = load_checkpoint(work / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(run / "checkpoints" / "last.pt")
    identical = a["epoch"] == b["epoch"] and all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    return {
        "epochs": epochs,
        "straight_seconds": round(straight_s, 1),
        "kills": n_kills,
        "kills_after_first_checkpoint": checks["after_checkpoint"],
        "starts": starts,
        "unreadable_checkpoints": checks["unreadable"],
        "identical_final_weights": bool(identical),
        "partial_files_left": _leftovers(run) + _leftovers(work / "cache"),
        "orphaned_process_groups": orphans,
    }


def _scans(folder: Path, n: int) -> None:
    import nibabel as nib

    from tests.fixtures.synthetic_dataset import ellipsoid_case

    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        image, _ = ellipsoid_case(rng, (40, 44, 32))
        nib.save(nib.Nifti1Image(image, np.diag([-1.2, 1.0, 1.5, 1.0])), folder / f"scan{i:03d}.nii.gz")


def soak_prediction(work: Path, run: Path, kills: int, cases: int, rng: random.Random) -> dict:
    import nibabel as nib

    scans = work / "scans"
    _scans(scans, cases)
    t0 = time.monotonic()
    _finish(_medseg(["predict", "-m", str(run), "-i", str(scans), "-o", str(work / "p_straight")]), "predict")
    straight_s = time.monotonic() - t0
    out = work / "p_killed"
    command = ["predict", "-m", str(run), "-i", str(scans), "-o", str(out)]

    def masks_written() -> int:
        return len(list(out.glob("*.json"))) if out.is_dir() else 0

    n_kills, starts, orphans = _kill_and_rerun(
        lambda: command, kills, rng, 1.5 * straight_s / cases, lambda: None, "predict", progress=masks_written
    )
    masks = sorted(p.name for p in (work / "p_straight").glob("*.nii.gz"))
    identical = sum(
        np.array_equal(nib.load(work / "p_straight" / m).get_fdata(), nib.load(out / m).get_fdata())
        for m in masks
        if (out / m).is_file()
    )
    record = json.loads((out / "predictions.json").read_text())
    return {
        "cases": cases,
        "straight_seconds": round(straight_s, 1),
        "kills": n_kills,
        "starts": starts,
        "masks": len(masks),
        "identical_masks": int(identical),
        "cases_ok_or_skipped": sum(c["status"] in ("ok", "skipped") for c in record["cases"]),
        "partial_files_left": _leftovers(out),
        "orphaned_process_groups": orphans,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="medseg-soak-") as tmp:
        work = Path(tmp)
        training = soak_training(work, args.kills, rng, args.epochs)
        print(json.dumps({"training": training}, indent=2), flush=True)
        prediction = soak_prediction(work, work / "straight", args.kills, args.cases, rng)
        print(json.dumps({"prediction": prediction}, indent=2), flush=True)
    command = "python benchmarks/soak.py " + " ".join(sys.argv[1:])
    result = {"machine": machine(), "command": command.strip(), "seed": args.seed, "training": training,
              "prediction": prediction}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    ok = (
        training["identical_final_weights"]
        and not training["partial_files_left"]
        and training["unreadable_checkpoints"] == 0
        and prediction["identical_masks"] == prediction["masks"] == prediction["cases"]
        and not prediction["partial_files_left"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
