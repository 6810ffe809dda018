"""Speed of ``medseg predict`` on a folder: start-up, throughput, and Dice against references.

    python benchmarks/predict_folder_speed.py --model RUN --input FOLDER --output DIR
        [--backend auto] [--precision auto] [--tta | --no-tta] [--device cpu] [--labels FOLDER]
    python benchmarks/predict_folder_speed.py --model RUN --manifest data_manifests/msd_hippocampus.json
        --split val --output DIR [--data-root ../shared/datasets] [--limit N]
    python benchmarks/predict_folder_speed.py ... --compare-overlap [--repeats 3]

Default mode: ``python -m medseg predict`` runs in a fresh process (``--overwrite``, progress bars
off) while this script polls the output folder, and reports

* ``startup_s``: seconds from the process start to the first mask appearing in the output folder
  (imports, model loading, backend build, and the first case);
* ``total_s`` and ``cases_per_minute``: the whole process, exit included;
* ``seconds_per_case_after_first``: (last mask - first mask) / (masks - 1);
* with ``--labels`` (or ``--manifest``): Dice per class of each mask against the reference
  label of the same case id (``medseg.evaluation.metrics.dice``), and its mean over cases.

``--manifest M --split S`` builds a temporary folder of symlinks to the images of that split
(and one to their labels, used as ``--labels``), so no folder has to be made by hand.

``--compare-overlap``: the Python API instead (``predict_folder`` with ``overlap_io`` on and
off, the model loaded once), after one untimed warm-up run; the two are interleaved, alternating
their order each repeat, and the median of ``--repeats`` is kept. It also checks that both write
the same masks.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import DEFAULT_DATA_ROOT, REPO, dump, machine

#: The issue's targets on MSD Hippocampus (42 small MR cases).
TARGETS = {"startup_s": 3.0, "seconds_per_case_after_first": 0.15}
_POLL_S = 0.005


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", required=True, help="run folder or checkpoint")
    ap.add_argument("--input", help="folder of scans (or use --manifest)")
    ap.add_argument("--output", required=True, help="where the masks go (existing masks are overwritten)")
    ap.add_argument("--labels", help="folder of reference labels named by case id: Dice per class")
    ap.add_argument("--manifest", help="a medseg manifest; its --split images (and labels) are the input")
    ap.add_argument("--split", default="val", help="manifest split (default val)")
    ap.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="root of manifest paths")
    ap.add_argument("--limit", type=int, help="only the first N cases of the manifest split")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default=None, help="medseg predict --backend (default: the model's)")
    ap.add_argument("--precision", default=None, help="medseg predict --precision (default: the model's)")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="mirror TTA")
    ap.add_argument("--compare-overlap", action="store_true", help="overlap_io on vs off (Python API)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of --compare-overlap (median kept)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    if bool(args.input) == bool(args.manifest):
        ap.error("give exactly one of --input and --manifest")
    return args


def manifest_folders(manifest: str, split: str, data_root: str, limit: int | None, work: Path) -> tuple:
    """Folders of symlinks ``work/images/<id><suffix>`` and ``work/labels/<id><suffix>`` to the
    images and labels of one split; returns ``(images, labels or None, case ids)``."""
    from medseg.data.manifest import load_manifest

    cases = load_manifest(manifest, data_root).split(split)[:limit]
    if not cases:
        raise SystemExit(f"{manifest} has no case in split {split!r}")
    images, labels = work / "images", work / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for case in cases:
        if len(case.images) != 1:
            raise SystemExit(f"case {case.id} has {len(case.images)} image files: give a folder of 4D scans")
        src = Path(case.images[0])
        suffix = "".join(src.suffixes[-2:]) if src.name.endswith(".gz") else src.suffix
        (images / f"{case.id}{suffix}").symlink_to(src)
        if case.label:
            lab = Path(case.label)
            suffix = "".join(lab.suffixes[-2:]) if lab.name.endswith(".gz") else lab.suffix
            (labels / f"{case.id}{suffix}").symlink_to(lab)
    has_labels = any(labels.iterdir())
    return images, labels if has_labels else None, [c.id for c in cases]


def _is_mask(p: Path) -> bool:
    name = p.name
    return not name.startswith(".") and not name.endswith(".json") and "_probabilities" not in name


def _cli(args: argparse.Namespace, input_dir: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "medseg", "predict", "-m", args.model, "-i", str(input_dir), "-o", str(out)]
    cmd += ["--device", args.device, "--overwrite"]
    for flag, value in (("--backend", args.backend), ("--precision", args.precision)):
        if value:
            cmd += [flag, value]
    if args.tta is not None:
        cmd.append("--tta" if args.tta else "--no-tta")
    return cmd


def run_cli(args: argparse.Namespace, input_dir: Path, out: Path) -> dict[str, Any]:
    """Run ``medseg predict`` in a fresh process, noting when each mask appears."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    with os.scandir(out) as entries:  # masks of an earlier run count once rewritten
        before = {e.name: e.stat().st_mtime_ns for e in entries}
    seen: dict[str, float] = {}
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        t0 = time.monotonic()
        proc = subprocess.Popen(_cli(args, input_dir, out), env=env, stdout=stdout, stderr=stderr)
        while True:
            done = proc.poll() is not None
            now = time.monotonic()
            with os.scandir(out) as entries:
                for e in entries:
                    if e.name in seen or not _is_mask(Path(e.name)):
                        continue
                    if before.get(e.name) != e.stat().st_mtime_ns:
                        seen[e.name] = now - t0
            if done:
                break
            time.sleep(_POLL_S)
        total = time.monotonic() - t0
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    if proc.returncode not in (0, 14):
        print(err[-3000:], file=sys.stderr)
    times = sorted(seen.values())
    n = len(times)
    per_case = (times[-1] - times[0]) / (n - 1) if n > 1 else None
    return {
        "exit_code": proc.returncode,
        "masks": n,
        "startup_s": round(times[0], 3) if times else None,
        "total_s": round(total, 3),
        "cases_per_minute": round(60 * n / total, 1) if n else 0.0,
        "seconds_per_case_after_first": round(per_case, 4) if per_case is not None else None,
        "stderr_tail": err.strip().splitlines()[-5:],
    }


def dice_per_class(out: Path, labels: Path) -> dict[str, Any]:
    """Dice of every class of each mask in ``out`` against ``labels`` (matched by case id)."""
    import json

    import numpy as np

    from medseg.evaluation.matching import list_cases
    from medseg.evaluation.metrics import dice
    from medseg.io import read_volume

    preds = {k: v for k, v in list_cases(out, "prediction folder").items() if "_probabilities" not in k}
    refs = list_cases(labels, "label folder")
    common = sorted(set(preds) & set(refs))
    names: dict[int, str] = {}
    per_case: dict[str, dict[str, float]] = {}
    for cid in common:
        sidecar = out / f"{cid}.json"
        if sidecar.is_file() and not names:
            names = {int(k): v for k, v in json.loads(sidecar.read_text())["labels"].items()}
        pred, ref = read_volume(preds[cid]).array, read_volume(refs[cid]).array
        if pred.shape != ref.shape:
            per_case[cid] = {"error": f"shape {pred.shape} vs reference {ref.shape}"}  # type: ignore[dict-item]
            continue
        classes = sorted(names) if names else sorted(set(np.unique(ref)) | set(np.unique(pred)))
        per_case[cid] = {names.get(k, str(k)): round(dice(pred == k, ref == k), 4) for k in classes if k != 0}
    scored = [d for d in per_case.values() if "error" not in d]
    mean = {c: round(statistics.fmean(d[c] for d in scored), 4) for c in (scored[0] if scored else {})}
    return {
        "cases_scored": len(scored),
        "unmatched_predictions": sorted(set(preds) - set(refs)),
        "missing_predictions": sorted(set(refs) - set(preds)),
        "mean_per_class": mean,
        "mean": round(statistics.fmean(mean.values()), 4) if mean else None,
        "per_case": per_case,
    }


def compare_overlap(args: argparse.Namespace, input_dir: Path, out: Path) -> dict[str, Any]:
    """``predict_folder`` with ``overlap_io`` on and off, interleaved; median seconds of each."""
    from medseg.inference import Predictor
    from medseg.inference.batch import predict_folder
    from medseg.progress import set_enabled

    set_enabled(False)
    predictor = Predictor.from_run(
        args.model, device=args.device, tta=args.tta, backend=args.backend, precision=args.precision
    )
    predict_folder(predictor, input_dir, out / "warmup", overwrite=True)  # build, compile, start the reader
    times: dict[str, list[float]] = {"overlap_io": [], "sequential": []}
    order = [("overlap_io", True), ("sequential", False)]
    for r in range(args.repeats):
        for name, on in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            result = predict_folder(predictor, input_dir, out / name, overwrite=True, overlap_io=on)
            times[name].append(time.perf_counter() - t0)
    masks = sorted(p.name for p in (out / "sequential").iterdir() if _is_mask(p))
    same = all(_same_mask(out / "overlap_io" / m, out / "sequential" / m) for m in masks)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = sum(r.status == "ok" for r in result.results)
    return {
        "cases": n,
        "overlap_io_s": round(med["overlap_io"], 3),
        "sequential_s": round(med["sequential"], 3),
        "speedup": round(med["sequential"] / med["overlap_io"], 3),
        "seconds_per_case": {k: round(v / max(n, 1), 4) for k, v in med.items()},
        "all_times_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "same_masks": same,
        "backend": f"{predictor.backend.name}:{predictor.precision.value}",
        "tta": predictor.tta,
        "repeats": args.repeats,
    }


def _same_mask(a: Path, b: Path) -> bool:
    """The same voxels and header (the gzip time stamp aside)."""
    import gzip

    if not b.is_file():
        return False
    if a.name.endswith(".gz"):
        return gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes())
    return a.read_bytes() == b.read_bytes()


def main() -> None:
    args = _args()
    work = Path(tempfile.mkdtemp(prefix="medseg-folder-speed-"))
    try:
        labels = Path(args.labels) if args.labels else None
        if args.manifest:
            input_dir, manifest_labels, ids = manifest_folders(
                args.manifest, args.split, args.data_root, args.limit, work
            )
            labels = labels or manifest_labels
        else:
            input_dir = Path(args.input)
        out = Path(args.output)
        result: dict[str, Any] = {"model": args.model, "input": args.manifest or args.input}
        if args.manifest:
            result.update(split=args.split, cases=len(ids))
        if args.compare_overlap:
            result["compare_overlap"] = compare_overlap(args, input_dir, out)
        else:
            timing = run_cli(args, input_dir, out)
            result.update(timing)
            result["targets"] = {
                k: {"target": v, "met": timing[k] is not None and timing[k] <= v} for k, v in TARGETS.items()
            }
            sidecars = sorted(p for p in out.glob("*.json") if p.name != "predictions.json")
            if sidecars:
                import json

                info = json.loads(sidecars[0].read_text())
                result["backend"] = f"{info.get('backend')}:{info.get('precision')}"
                result["tta"] = info.get("tta")
            if labels is not None:
                result["dice"] = dice_per_class(out, labels)
        result["machine"] = machine()
        result["command"] = shlex.join(["python", *sys.argv])
        dump(result, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
