"""Peak resident memory and time of ``medseg predict`` on a CT-sized 512x512x800 scan, 3-class model.

    python benchmarks/predict_memory.py [--workdir /tmp/medseg_mem] [--size 512 512 800]

The scan is written once (int16 HU with a body, organs and noise); the model is a small untrained
3-class U-Net (memory does not depend on the weights). Prediction runs in a child process; its
peak resident memory is the largest sum over the command's processes (the prediction and its
reader child), sampled from /proc every 50 ms, and at least the largest single process's peak
(getrusage), so only the prediction is measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import REPO, dump, machine


def make_scan(path: Path, size: tuple[int, int, int]) -> None:
    import nibabel as nib
    import numpy as np

    x, y = np.ogrid[: size[0], : size[1]]
    body = ((x - size[0] / 2) ** 2 / (0.4 * size[0]) ** 2 + (y - size[1] / 2) ** 2 / (0.3 * size[1]) ** 2) < 1
    arr = np.full(size, -1000, dtype=np.int16)
    rng = np.random.default_rng(0)
    for k in range(size[2]):
        sl = arr[:, :, k]
        sl[body] = 40
        sl[body & ((x - size[0] * 0.45) ** 2 + (y - size[1] * 0.55) ** 2 < (0.08 * size[0]) ** 2)] = 90
        sl += rng.integers(-20, 20, sl.shape, dtype=np.int16)
    nib.save(nib.Nifti1Image(arr, np.diag([-0.8, -0.8, 1.0, 1.0])), path)


def make_model(run: Path) -> None:
    import numpy as np
    import torch

    from medseg.config.load import config_from_dict
    from medseg.models import build_model
    from medseg.training.checkpoint import save_inference_checkpoint
    from medseg.transforms.preprocess import Plan
    from medseg.volume import Volume

    torch.manual_seed(0)
    model = build_model("unet", 3, 1, 3, features=[8, 16, 32, 64])
    img = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4))
    plan = Plan.from_dataset(
        [(img, None)],
        {0: "background", 1: "organ", 2: "lesion"},
        target_spacing=None,
        normalization="window",
        window="soft_tissue",
        crop_foreground=False,
    )
    cfg = config_from_dict(
        {
            "name": "memory",
            "data": {"manifest": "unused.json"},
            "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [8, 16, 32, 64]}},
            "training": {"patch_size": [128, 128, 64]},
            "inference": {"overlap": 0.25, "batch_size": 2},
        }
    )
    save_inference_checkpoint(run / "checkpoints" / "best.pt", model, plan, cfg)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _sample_tree_rss(proc: subprocess.Popen, every_s: float = 0.05) -> int:
    """The largest summed resident memory of ``proc`` and its children, sampled until it exits."""
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_rss_bytes(p) for p in _tree(proc.pid)))
        time.sleep(every_s)
    return peak


def _recorded(sidecar: Path) -> str | None:
    """``backend:precision`` as the prediction's sidecar records it."""
    import json

    if not sidecar.is_file():
        return None
    info = json.loads(sidecar.read_text())
    return f"{info.get('backend')}:{info.get('precision')}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/medseg_memory_benchmark")
    ap.add_argument("--size", type=int, nargs=3, default=[512, 512, 800])
    ap.add_argument("--backend", default="auto", help="medseg predict --backend")
    ap.add_argument("--precision", default="auto", help="medseg predict --precision")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    work = Path(args.workdir)
    (work / "in").mkdir(parents=True, exist_ok=True)
    scan = work / "in" / "ct.nii.gz"
    if not scan.exists():
        make_scan(scan, tuple(args.size))
    make_model(work / "run")
    out = work / "out"
    export = work / "run" / "export"
    if export.exists():  # a new model each run: its export is part of the measured time
        import shutil

        shutil.rmtree(export)
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    t0 = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "medseg",
        "predict",
        "-m",
        str(work / "run"),
        "-i",
        str(scan),
        "-o",
        str(out),
    ]
    cmd += ["--device", args.device, "--backend", args.backend, "--precision", args.precision, "--overwrite"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree_peak = _sample_tree_rss(proc)  # every process of the command together (the reader child too)
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(stdout[-500:], stderr[-2000:], file=sys.stderr)
    dump(
        {
            "shape": args.size,
            "classes": 3,
            "peak_rss_gb": round(max(tree_peak, peak_kb * 1024) / 1024**3, 3),
            "peak_rss_largest_process_gb": round(peak_kb / 1024**2, 3),
            "seconds": round(seconds, 1),
            "exit_code": proc.returncode,
            "backend": _recorded(out / "ct.json"),
            "input_int16_gb": round(2 * args.size[0] * args.size[1] * args.size[2] / 1024**3, 3),
            "machine": machine(),
            "command": shlex.join(["python", *sys.argv]),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
