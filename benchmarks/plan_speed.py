"""Planning speed: fingerprint + plan of MSD Hippocampus and LIDC, cold and warm cache (issue: plan).

    python benchmarks/plan_speed.py [--json out.json]

Runs ``plan_dataset`` (what ``medseg plan`` runs: the fingerprint in parallel over the CPUs, the
dataset checks, the rules with the step time probed on the device, the YAML and fingerprint.json)
twice per dataset: with an empty fingerprint cache (cold) and again (warm). Targets (issue): at most
15 s for Hippocampus (nnU-Net's plan-and-preprocess takes 56 s on this machine) and 30 s for LIDC,
both cold. Reported as seconds and as the share of the target.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, dump, machine

#: dataset -> (manifest or MSD folder relative to the data root / repo, target seconds)
DATASETS = {
    "hippocampus": ("data_manifests/msd_hippocampus.json", 15.0),
    "lidc": ("data_manifests/lidc_nodules.json", 30.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    ap.add_argument("--budget", type=float, default=30.0, help="planning budget (minutes)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    t_import = time.monotonic()
    from medseg.planning.api import plan_dataset

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDSEG_CACHE_DIR"] = str(Path(tmp) / "cache")  # an empty fingerprint cache
        import_seconds = time.monotonic() - t_import
        for name, (manifest, target) in DATASETS.items():
            times = []
            for _ in ("cold", "warm"):
                t0 = time.monotonic()
                result = plan_dataset(
                    REPO / manifest,
                    Path(tmp) / name / "p.yaml",
                    args.budget,
                    args.device,
                    data_root=args.data_root,
                )
                times.append(time.monotonic() - t0)
            results[name] = {
                "cold_seconds": round(times[0], 2),
                "warm_seconds": round(times[1], 2),
                "target_seconds": target,
                "cold_share_of_target": round(times[0] / target, 3),
                "planned": result.kind,
                "patch_size": result.config["training"]["patch_size"],
            }
    dump(
        {
            "benchmark": "plan_speed",
            "import_seconds": round(import_seconds, 2),
            "datasets": results,
            "machine": machine(),
            "command": shlex.join(["python", *sys.argv]),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
