"""Markdown tables of the registered networks, generated from :data:`~.registry.MODELS`.

``docs/models.md`` holds the output of :func:`render_markdown` in a block
between the markers of :func:`begin_marker` and :func:`end_marker`; a test
checks it is current, and ``python benchmarks/model_table.py --update-docs``
(through :func:`replace_generated`) rewrites it. ``medseg models --markdown``
prints the same text.
"""

from __future__ import annotations

import json
from typing import Any

from medseg.models.registry import MODELS
from medseg.models.spec import ModelSpec

#: Command that regenerates the tables in docs/models.md.
UPDATE_COMMAND = "python benchmarks/model_table.py --update-docs"


def begin_marker(block: str) -> str:
    """The line opening the generated ``block`` of a Markdown file."""
    return f"<!-- BEGIN generated {block}: `{UPDATE_COMMAND}` rewrites it, do not edit -->"


def end_marker(block: str) -> str:
    """The line closing the generated ``block`` of a Markdown file."""
    return f"<!-- END generated {block} -->"


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def summary_table(specs: list[ModelSpec]) -> list[str]:
    """One row per network: name, family, 2D/3D, deep supervision, ONNX, description."""
    lines = [
        "| model | family | 2D | 3D | deep supervision | ONNX | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in specs:
        lines.append(
            f"| `{s.name}` | {s.family} | {_yes(s.supports_2d)} | {_yes(s.supports_3d)} | "
            f"{_yes(s.deep_supervision)} | {_yes(s.onnx)} | {_cell(s.description)} |"
        )
    return lines


def param_table(spec: ModelSpec) -> list[str]:
    """The section of one network: heading, paper, parameter table and its small example."""
    lines = [f"#### `{spec.name}`", "", f"Paper: {spec.paper}.", ""]
    lines += ["| parameter | default | type | description |", "|---|---|---|---|"]
    for p in spec.params:
        lines.append(f"| `{p.name}` | `{_json(p.default)}` | {_cell(p.type)} | {_cell(p.description)} |")
    examples = {d: spec.example(d) for d in spec.spatial_dims}
    lines.append("")
    if len({_json(e) for e in examples.values()}) == 1:
        lines.append(f"Small example: `{_json(next(iter(examples.values())))}`")
    else:
        lines.append("Small example: " + ", ".join(f"{d}D `{_json(e)}`" for d, e in examples.items()))
    return lines


def render_markdown(specs: list[ModelSpec] | None = None) -> str:
    """The generated ``parameters`` block of ``docs/models.md``: a summary table, then each
    network's parameters and small example."""
    specs = list(MODELS.values()) if specs is None else specs
    lines = summary_table(specs)
    for spec in specs:
        lines += ["", *param_table(spec)]
    return "\n".join(lines) + "\n"


def replace_generated(text: str, block: str, generated: str) -> str:
    """``text`` with the content of its generated ``block`` replaced by ``generated``.

    Raises:
        ValueError: ``text`` lacks the block's markers.
    """
    begin, end = begin_marker(block), end_marker(block)
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError(f"no generated block {block!r} (lines {begin!r} ... {end!r})")
    return f"{text[: start + len(begin)]}\n\n{generated.strip()}\n\n{text[stop:]}"
