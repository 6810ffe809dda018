"""Every prediction-speed figure on a CUDA GPU, against MONAI on the same GPU (issue: prediction speed).

    python benchmarks/gpu_suite.py [--out benchmarks/results] [--quick]

Runs, with ``--device cuda``:

1. ``sliding_window_speed.py``: torch fp32 and bf16 (AMP) against MONAI fp32, then against MONAI
   under bf16 autocast (identical settings);
2. ``predict_memory.py``: ``medseg predict`` on the 512x512x800 CT end to end (target: 10 s),
   peak host memory;
3. ``predict_folder_speed.py`` on the 42 held-out MSD Hippocampus cases, when the data and a
   trained run (``--hippocampus-run``) are there.

Each writes ``gpu_<name>.json`` into ``--out``; ``benchmarks/render.py`` adds them to
``docs/benchmarks.md``. Needs a CUDA GPU (exits with a message otherwise); CI never runs it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(args: list[str]) -> int:
    print("+", " ".join(args), flush=True)
    return subprocess.run([sys.executable, *args], cwd=HERE.parent).returncode


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats and a 512x512x200 CT (a smoke run)")
    ap.add_argument("--hippocampus-run", default="/tmp/medseg_bench/hippocampus")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: the GPU figures need one (the device tool lends one)", file=sys.stderr)
        return 2
    out = Path(args.out)
    repeats = "2" if args.quick else "5"
    size = ["512", "512", "200" if args.quick else "800"]
    status = 0
    swi = ["benchmarks/sliding_window_speed.py", "--device", "cuda", "--repeats", repeats]
    status |= _run(
        [*swi, "--variants", "torch:fp32,torch:bf16,auto", "--json", str(out / "gpu_sliding_window.json")]
    )
    status |= _run(
        [*swi, "--variants", "torch:bf16", "--monai-amp", "--json", str(out / "gpu_sliding_window_amp.json")]
    )
    status |= _run(
        [
            "benchmarks/predict_memory.py",
            "--device",
            "cuda",
            "--size",
            *size,
            "--json",
            str(out / ("gpu_ct_quick.json" if args.quick else "gpu_ct.json")),
        ]
    )
    run = Path(args.hippocampus_run)
    if (run / "checkpoints").is_dir():
        status |= _run(
            [
                "benchmarks/predict_folder_speed.py",
                "--model",
                str(run),
                "--manifest",
                "data_manifests/msd_hippocampus.json",
                "--split",
                "val",
                "--device",
                "cuda",
                "--json",
                str(out / "gpu_hippocampus_folder.json"),
            ]
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
