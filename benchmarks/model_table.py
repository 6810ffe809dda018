"""Parameter and FLOP counts of every registered model with its default parameters.

Prints the Markdown size table of docs/models.md: ``python benchmarks/model_table.py``
(options: ``--in-channels``, ``--out-channels``; ``--params`` prints its generated
parameter tables instead (:func:`medseg.models.docs.render_markdown`); ``--update-docs``
rewrites both generated blocks of docs/models.md; ``--timing`` times a CPU training step of each
3D model with default parameters on a batch of two 64^3 patches). Counts are for one input of
2D 256x256 and 3D 96x96x96. FLOPs are measured with
``torch.utils.flop_counter.FlopCounterMode`` on PyTorch's ``meta`` device (no
memory, no arithmetic): it counts multiply-adds of convolutions, transposed
convolutions and matrix products as 2 FLOPs each and ignores element-wise
operations (normalisation, activations, interpolation, softmax).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medseg.models import build_model, count_parameters, list_models
from medseg.models.docs import render_markdown, replace_generated

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"
SHAPES = {2: (256, 256), 3: (96, 96, 96)}


def measure(name: str, spatial_dims: int, in_channels: int, out_channels: int) -> tuple[int, int]:
    """(trainable parameters, forward FLOPs) of ``name`` with default params on one input."""
    with torch.device("meta"):
        model = build_model(name, spatial_dims, in_channels, out_channels).eval()
        x = torch.zeros(1, in_channels, *SHAPES[spatial_dims])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return count_parameters(model), counter.get_total_flops()


def size_table(in_channels: int = 1, out_channels: int = 2) -> str:
    """The Markdown size table: parameters and FLOPs of every model, 2D and 3D, default parameters."""
    lines = [
        "| model | params 2D | GFLOPs 2D 256x256 | params 3D | GFLOPs 3D 96x96x96 |",
        "|---|---:|---:|---:|---:|",
    ]
    for spec in list_models():
        p2, f2 = measure(spec.name, 2, in_channels, out_channels)
        if not spec.supports_3d:  # 2D-only networks
            lines.append(f"| {spec.name} | {p2 / 1e6:.2f} M | {f2 / 1e9:.2f} | - | - |")
            continue
        p3, f3 = measure(spec.name, 3, in_channels, out_channels)
        lines.append(
            f"| {spec.name} | {p2 / 1e6:.2f} M | {f2 / 1e9:.2f} | {p3 / 1e6:.2f} M | {f3 / 1e9:.1f} |"
        )
    return "\n".join(lines) + "\n"


def generated_docs(text: str) -> str:
    """``text`` (docs/models.md) with its generated blocks (sizes, parameters) rewritten."""
    text = replace_generated(text, "sizes", size_table())
    return replace_generated(text, "parameters", render_markdown())


def update_docs(path: Path = DOCS) -> bool:
    """Rewrite the generated blocks of ``path``; whether anything changed."""
    text = path.read_text(encoding="utf-8")
    new = generated_docs(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def print_timings(threads: int, steps: int = 3) -> None:
    """Seconds per training step (forward, backward, Adam) on 2 x 1 x 64^3, after one warm-up step."""
    torch.set_num_threads(threads)
    print(f"| model | s / step (3D, batch 2 x 64^3, {threads} threads) |\n|---|---:|")
    for spec in (s for s in list_models() if s.supports_3d):
        torch.manual_seed(0)
        model = build_model(spec.name, 3, 1, 2).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(2, 1, 64, 64, 64)
        y = torch.randint(0, 2, (2, 64, 64, 64))
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        print(f"| {spec.name} | {statistics.median(times[1:]):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--out-channels", type=int, default=2)
    parser.add_argument("--params", action="store_true", help="print each model's parameter table")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help=f"rewrite the generated tables (sizes, parameters) in {DOCS.name}",
    )
    parser.add_argument("--timing", action="store_true", help="time a 3D CPU training step per model")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for --timing (default 2)")
    args = parser.parse_args()
    if args.params:
        print(render_markdown(), end="")
        return
    if args.update_docs:
        print(f"{DOCS} {'updated' if update_docs() else 'already up to date'}")
        return
    if args.timing:
        print_timings(args.threads)
        return
    print(size_table(args.in_channels, args.out_channels), end="")
    print(
        f"\n(in_channels={args.in_channels}, out_channels={args.out_channels}, default parameters, batch 1, "
        f"torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
