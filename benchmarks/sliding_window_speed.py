"""Speed of medseg's sliding window against MONAI's, same network and settings, same process.

    python benchmarks/sliding_window_speed.py [--device cpu|cuda] [--repeats 5]

Prints the median seconds of each and the ratio MONAI / medseg (> 1: medseg is faster), and the
largest difference between their outputs.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import dump, machine


def main() -> None:
    from monai.inferers import sliding_window_inference as monai_swi

    from medseg.inference import sliding_window_inference
    from medseg.models import build_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=3, default=[160, 160, 96])
    ap.add_argument("--roi", type=int, nargs=3, default=[64, 64, 64])
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build_model("unet", 3, 1, 3, features=[16, 32, 64, 128]).to(device).eval()
    x = torch.randn(1, 1, *args.shape, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def medseg_run():
        return sliding_window_inference(x, net, args.roi, overlap=args.overlap, batch_size=args.batch_size)

    def monai_run():
        return monai_swi(x, args.roi, args.batch_size, net, overlap=args.overlap, mode="gaussian")

    with torch.no_grad():
        a, b = medseg_run(), monai_run()  # warm-up, and the equality check
        diff = float((a - b).abs().max())
        times: dict[str, list[float]] = {"medseg": [], "monai": []}
        pair = [("medseg", medseg_run), ("monai", monai_run)]
        for r in range(args.repeats):  # interleaved, alternating which goes first
            for name, fn in pair if r % 2 == 0 else pair[::-1]:
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": str(device),
        "shape": args.shape,
        "roi": args.roi,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "medseg_s": round(med["medseg"], 3),
        "monai_s": round(med["monai"], 3),
        "ratio_monai_over_medseg": round(med["monai"] / med["medseg"], 3),
        "max_abs_diff": diff,
        "repeats": args.repeats,
        "machine": machine(),
        "command": shlex.join(["python", *sys.argv]),
    }
    dump(result, args.json)


if __name__ == "__main__":
    main()
