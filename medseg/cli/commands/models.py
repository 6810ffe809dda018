"""``medseg models``: the registered networks, their parameters and sizes."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``medseg models``."""
    p = sub.add_parser(
        "models",
        help="list the registered networks with their parameters and sizes",
        description="List every network a pipeline can name (model.name), with its family, paper, "
        "2D/3D, deep-supervision and ONNX support, its parameters with defaults, and its parameter "
        "count and input-size divisor for the given config (default parameters).",
    )
    p.add_argument("name", nargs="?", help="show only this model")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--markdown", action="store_true", help="print the Markdown tables of docs/models.md instead"
    )
    p.add_argument("--spatial-dims", type=int, choices=(2, 3), default=3, help="2 or 3 (default 3)")
    p.add_argument("--in-channels", type=int, default=1, metavar="N", help="input channels (default 1)")
    p.add_argument("--out-channels", type=int, default=2, metavar="N", help="output classes (default 2)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List the registry (text, ``--json`` or ``--markdown``); 0 on success."""
    from medseg.errors import ConfigError
    from medseg.models import describe_models, get_spec
    from medseg.models.docs import render_markdown

    if args.markdown:
        specs = [get_spec(args.name)] if args.name else None
        sys.stdout.write(render_markdown(specs))
        return 0

    for flag, value in (("--in-channels", args.in_channels), ("--out-channels", args.out_channels)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    entries = describe_models(args.spatial_dims, args.in_channels, args.out_channels)
    if args.name:
        wanted = get_spec(args.name).name
        entries = [e for e in entries if e["name"] == wanted]
    if args.json:
        sys.stdout.write(json.dumps(entries, indent=2) + "\n")
        return 0
    sys.stdout.write(format_models(entries))
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def format_models(entries: list[dict]) -> str:
    """Text listing of :func:`medseg.models.describe_models` entries: a summary table, then
    each model's parameters."""
    if not entries:
        return ""
    cfg = entries[0]["config"]
    lines = [
        f"parameter counts for {cfg['spatial_dims']}D, in_channels={cfg['in_channels']}, "
        f"out_channels={cfg['out_channels']}, default parameters",
        "",
        f"{'name':<15}{'family':<12}{'2D':<4}{'3D':<4}{'deep sup.':<11}{'ONNX':<6}"
        f"{'parameters':>12}  divisor",
    ]
    for e in entries:
        count = f"{e['parameter_count']:,}" if e["parameter_count"] is not None else "-"
        divisor = "x".join(map(str, e["divisor"])) if e["divisor"] else "-"
        lines.append(
            f"{e['name']:<15}{e['family']:<12}{_yes(e['supports_2d']):<4}{_yes(e['supports_3d']):<4}"
            f"{_yes(e['deep_supervision']):<11}{_yes(e['onnx']):<6}{count:>12}  {divisor}"
        )
    for e in entries:
        lines += ["", f"{e['name']}: {e['description']}", f"  paper: {e['paper']}", "  parameters:"]
        for p in e["params"]:
            lines.append(f"    {p['name']} = {json.dumps(p['default'])}  ({p['type']})")
            lines.append(f"        {p['description']}")
        example = e["example_params"].get(str(cfg["spatial_dims"]))
        if example is not None:
            lines.append(f"  small example: {json.dumps(example)}")
    return "\n".join(lines) + "\n"
