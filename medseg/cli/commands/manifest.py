"""``medseg manifest check MANIFEST``: validate a dataset before training."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "manifest",
        help="check dataset manifests",
        description="Work with dataset manifests (MSD dataset.json or medseg manifests).",
    )
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)
    c = msub.add_parser(
        "check",
        help="validate every case of a manifest",
        description="Check that every file exists and loads, image and label grids agree, label values "
        "belong to the declared classes and channels agree; report every problem at once.",
    )
    c.add_argument("manifest", help="dataset.json or a medseg manifest (JSON/YAML)")
    c.add_argument(
        "--data-root",
        help="folder that relative paths start from (default: $MEDSEG_DATA_ROOT, else the manifest's folder)",
    )
    c.add_argument("--json", action="store_true", help="print the problems as JSON")
    c.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    import json

    from medseg.data.check import check_manifest
    from medseg.data.manifest import load_manifest

    manifest = load_manifest(args.manifest, args.data_root)
    problems = check_manifest(manifest)
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "cases": len(manifest.cases),
                    "problems": [{"case": p.case, "problem": p.message} for p in problems],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        for p in problems:
            sys.stdout.write(f"{p}\n")
        sys.stdout.write(f"{len(manifest.cases)} cases, {len(problems)} problem(s)\n")
    from medseg.errors import EXIT_MANIFEST_PROBLEMS

    return 0 if not problems else EXIT_MANIFEST_PROBLEMS
