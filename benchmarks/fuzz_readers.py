"""Fuzz campaign over every reader that takes outside files.

Mutates real files (``../shared`` where present, plus small files written here) with
hypothesis and reads each mutated input in a worker process with a 2 GiB address-space cap
and a time limit. Prints and writes the count of each outcome per reader family; findings
(uncaught exceptions, crashes, hangs, allocations over the cap) are copied to ``--findings``.

    python benchmarks/fuzz_readers.py --inputs 10000            # the recorded campaign
    python benchmarks/fuzz_readers.py --inputs 50 --seed 1      # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO, machine
from benchmarks.fuzz.families import FAMILIES
from benchmarks.fuzz.runner import FINDINGS, run_campaign


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=10000, help="mutated inputs per family (default 10000)")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all)")
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--memory-gb", type=float, default=2.0, help="address-space cap per input")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "fuzz.json")
    args = parser.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    results = run_campaign(families, args.inputs, args.seed, args.findings, args.memory_gb)
    rows = [r.to_dict() for r in results]
    kinds = ("ok", "refused", *FINDINGS)
    print(f"{'family':16} {'seeds':>5} {'inputs':>7} " + " ".join(f"{k:>8}" for k in kinds) + "  seconds")
    for r in rows:
        counts = " ".join(f"{r['outcomes'].get(k, 0):8d}" for k in kinds)
        print(f"{r['family']:16} {r['seeds']:5d} {r['inputs']:7d} {counts} {r['seconds']:8.1f}")
        for finding in r["findings"][:10]:
            print(f"    {finding}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "command": "python benchmarks/fuzz_readers.py " + " ".join(sys.argv[1:]),
              "seed": args.seed, "inputs_per_family": args.inputs,
              "memory_cap_gb": args.memory_gb, "families": rows}  # fmt: skip
    args.json.write_text(json.dumps(record, indent=2))
    bad = sum(r["outcomes"].get(k, 0) for r in rows for k in FINDINGS)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
