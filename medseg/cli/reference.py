"""Generate the command-line reference (docs/cli.md) from the argument parser itself."""

from __future__ import annotations

import argparse


def _walk(parser: argparse.ArgumentParser, prefix: str, out: list[str]) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(f"## `{prefix} {name}`")
                out.append("")
                out.append((sub.description or "").strip())
                out.append("")
                out.append("```")
                out.append(sub.format_usage().strip().removeprefix("usage: "))
                out.append("```")
                out.append("")
                rows = []
                for a in sub._actions:
                    if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
                        continue
                    flags = ", ".join(f"`{o}`" for o in a.option_strings) or f"`{a.dest}`"
                    help_text = (a.help or "").replace("|", "\\|").replace("%%", "%")
                    rows.append(f"| {flags} | {help_text} |")
                if rows:
                    out += ["| argument | meaning |", "|---|---|", *rows, ""]
                _walk(sub, f"{prefix} {name}", out)


def cli_reference() -> str:
    """Markdown reference of every ``medseg`` command and option."""
    from medseg.cli.main import build_parser

    parser = build_parser()
    out = [
        "# Command-line reference",
        "",
        "Generated from the argument parser by `python -m medseg.cli.reference > docs/cli.md`; a test fails "
        "when a command or option is missing here. Global options: `-v`/`--verbose` (more log output), "
        "`-q`/`--quiet`, `--version`. User errors print one line on stderr and exit with the code listed "
        "in [troubleshooting](troubleshooting.md).",
        "",
    ]
    _walk(parser, "medseg", out)
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(cli_reference())
