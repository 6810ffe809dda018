"""The planned pipeline as YAML, with each planned key's reason and evidence as a comment above it.

PyYAML cannot write comments, so the document is emitted here section by section: keys in the
config's order, values through ``yaml.safe_dump`` in flow style (so quoting and number formats are
PyYAML's own and ``yaml.safe_load`` gives back exactly the config dict). A mapping is written as a
block when a decision names one of its keys (``model.params.features``), else in flow style.
"""

from __future__ import annotations

import textwrap
from typing import Any

from medseg.planning.rules import Decision, PlanResult

#: Comment lines are wrapped at this width (the key's indentation included).
WIDTH = 100


def _flow(value: Any) -> str:
    """One value as flow-style YAML on one line."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False, allow_unicode=True)
    if text.endswith("\n...\n"):  # a bare scalar ends with the document-end marker
        text = text[: -len("...\n")]
    return text.strip()


def _comment(lines: list[str], text: str, pad: str) -> None:
    text = " ".join(text.split())
    for row in textwrap.wrap(text, width=max(40, WIDTH - len(pad) - 2), break_on_hyphens=False):
        lines.append(f"{pad}# {row}")


def _decision_text(d: Decision) -> str:
    reason = d.reason.rstrip(".")
    return f"{reason} [{d.evidence}]" if d.evidence else reason


def _emit(
    mapping: dict[str, Any], path: str, depth: int, by_key: dict[str, Decision], lines: list[str]
) -> None:
    pad = "  " * depth
    for key, value in mapping.items():
        dotted = f"{path}.{key}" if path else str(key)
        d = by_key.get(dotted)
        if d is not None and (d.reason or d.evidence):
            _comment(lines, _decision_text(d), pad)
        block = (
            isinstance(value, dict)
            and value
            and (depth == 0 or any(k.startswith(dotted + ".") for k in by_key))
        )
        if block:
            lines.append(f"{pad}{_flow(key)}:")
            _emit(value, dotted, depth + 1, by_key, lines)
        else:
            lines.append(f"{pad}{_flow(key)}: {_flow(value)}")


def render_yaml(result: PlanResult) -> str:
    """The pipeline YAML of ``result`` with a comment above each planned key (its reason, and in
    brackets the fingerprint figures behind it), the plan's warnings at the top.

    ``yaml.safe_load`` of the text equals ``result.config``, and
    :func:`medseg.config.load_pipeline` accepts it.
    """
    cfg = result.config
    lines: list[str] = []
    _comment(
        lines,
        f"Planned by `medseg plan`: the {result.kind.upper()} configuration of "
        f"{cfg.get('name', 'this dataset')}. Each planned key has its reason above it, with the "
        "fingerprint figures behind it in brackets.",
        "",
    )
    others = result.alternatives
    if others:
        names = ", ".join(f"{a.kind.upper()} ({a.config.get('name')})" for a in others)
        _comment(lines, f"Also proposed: {names}; cross-validation picks between them.", "")
    for w in result.warnings:
        _comment(lines, f"WARNING: {w}", "")
    by_key = {d.key: d for d in result.decisions}
    _emit(cfg, "", 0, by_key, lines)
    return "\n".join(lines) + "\n"
