"""`medseg demo` as a benchmark: held-out Dice per class and run time with the default budget.

    python benchmarks/demo.py [--minutes 5] [--device auto] [--json out.json]

Runs the demo exactly as `medseg demo` does (embedded sample, 36 training and 10 held-out cases) in a
fresh output folder, with an empty preprocessing cache, and reports its summary with the machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import dump, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget (the demo's default: 5)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--output", default="/tmp/medseg_bench/demo")
    ap.add_argument("--set", action="append", default=[], help="override of the demo pipeline, key=value")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medseg").setLevel(logging.INFO)
    from medseg.demo import run_demo

    cache = tempfile.mkdtemp(prefix="medseg_demo_cache_")
    os.environ["MEDSEG_CACHE_DIR"] = cache  # a first run: preprocessing is part of the time
    try:
        t0 = time.monotonic()
        result = run_demo(
            args.output, minutes=args.minutes, device=args.device, overwrite=True, overrides=args.set
        )
        wall = time.monotonic() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    dump(
        {
            "benchmark": "medseg_demo",
            "budget_minutes": args.minutes,
            "overrides": args.set,
            **{
                k: v
                for k, v in asdict(result).items()
                if k in ("dice", "n_train", "n_test", "steps", "device")
            },
            "train_minutes": result.train_minutes,
            "total_minutes": round(wall / 60, 2),
            "timings_s": result.timings,
            "machine": machine(),
            "command": shlex.join(["python", *sys.argv]),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
