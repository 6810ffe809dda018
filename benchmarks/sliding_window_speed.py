"""Speed of medseg's sliding window, on each backend and precision, against MONAI's float32 one.

    python benchmarks/sliding_window_speed.py [--device cpu|cuda] [--repeats 5]
        [--variants torch:fp32,torch:bf16,onnxruntime:fp32,openvino:fp32,openvino:bf16,auto]

Same network (3-class 3D U-Net [16, 32, 64, 128], fixed seed), same input, same window, overlap,
batch and Gaussian blending. MONAI's ``sliding_window_inference`` runs the plain float32 module
under ``torch.no_grad``; each medseg variant runs the runner its backend builds (exports are
cached in a temporary folder and built before timing). Timings are interleaved (MONAI, then each
variant, alternating the order every repeat) and the median is kept. For each variant: the ratio
MONAI / medseg (> 1: medseg is faster), the largest output difference from MONAI's, and the
share of voxels whose arg-max label differs from MONAI's.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import dump, machine


def _runner(net, variant: str, device: torch.device, window, batch: int, cache: Path):
    from medseg.inference.backends import BackendRequest, build_runner, resolve_backend
    from medseg.inference.backends.onnx_export import weights_digest

    backend, _, precision = variant.partition(":")
    spec, prec = resolve_backend(backend, precision or "auto", device)
    request = BackendRequest(
        net, device, prec, tuple(window), batch, cache, weights_digest(net) if spec.name != "torch" else "m"
    )
    return f"{spec.name}:{prec.value}", build_runner(spec, request)


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
    ap.add_argument(
        "--variants", default="torch:fp32,torch:bf16,onnxruntime:fp32,openvino:fp32,openvino:bf16,auto"
    )
    ap.add_argument(
        "--monai-amp",
        action="store_true",
        help="run MONAI's reference under bf16 autocast too (GPU fairness)",
    )
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build_model("unet", 3, 1, 3, features=[16, 32, 64, 128]).to(device).eval()
    x = torch.randn(1, 1, *args.shape, device=device)
    cache = Path(tempfile.mkdtemp(prefix="medseg-swi-"))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def monai_run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.monai_amp):
            out = monai_swi(x, args.roi, args.batch_size, net, overlap=args.overlap, mode="gaussian")
        return out.float()

    reference = "monai bf16 autocast" if args.monai_amp else "monai fp32"
    fns = {reference: monai_run}
    for variant in args.variants.split(","):
        model = build_model("unet", 3, 1, 3, features=[16, 32, 64, 128])
        model.load_state_dict(net.state_dict())
        name, runner = _runner(
            model.to(device).eval(), variant.strip(), device, [1, *args.roi], args.batch_size, cache
        )
        if variant.strip() == "auto":
            name = f"auto ({name})"

        def fn(runner=runner):
            return sliding_window_inference(
                x, runner, args.roi, overlap=args.overlap, batch_size=args.batch_size
            )

        fns[name] = fn
    ref = monai_run()
    ref_labels = ref.argmax(1)
    quality = {}
    for name, fn in fns.items():  # warm-up, and the equality check
        out = fn().to(ref.device)
        quality[name] = {
            "max_abs_diff": float((out - ref).abs().max()),
            "labels_differ_share": float((out.argmax(1) != ref_labels).float().mean()),
        }
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    for r in range(args.repeats):  # interleaved, alternating the order
        for name, fn in order if r % 2 == 0 else order[::-1]:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med[reference]
    result = {
        "device": str(device),
        "shape": args.shape,
        "roi": args.roi,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "reference": reference,
        "monai_s": round(base, 3),
        "variants": {
            k: {"seconds": round(v, 3), "ratio_monai_over_medseg": round(base / v, 3), **quality[k]}
            for k, v in med.items()
            if k != reference
        },
        "repeats": args.repeats,
        "machine": machine(),
        "command": shlex.join(["python", *sys.argv]),
    }
    dump(result, args.json)


if __name__ == "__main__":
    main()
