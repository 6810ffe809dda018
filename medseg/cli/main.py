"""``medseg`` entry point.

Sub-commands live in :mod:`medseg.cli.commands`, one module each, listed in
:data:`COMMANDS` (an explicit registry: no scanning). Only ``argparse`` is
imported at start-up so ``medseg --help`` is instant; each command imports
what it needs when it runs.

A :class:`~medseg.errors.MedsegError` becomes one line on stderr and the
error's exit code; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: Sub-command name -> module in medseg.cli.commands.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "info": "info",
    "convert": "convert",
    "manifest": "manifest",
    "plan": "plan",
    "train": "train",
    "predict": "predict",
    "export": "export",
    "evaluate": "evaluate",
    "report": "report",
    "crossval": "crossval",
    "compare": "compare",
    "models": "models",
    "pacs": "pacs",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by ``main`` and by the docs test)."""
    from medseg import __version__

    parser = argparse.ArgumentParser(
        prog="medseg",
        description="Medical image segmentation: read scans with exact geometry, train, "
        "predict, export and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        mod = importlib.import_module(f"medseg.cli.commands.{module}")
        mod.add_parser(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("medseg")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.handlers[:] = [handler]
    py_warnings.setLevel(logging.ERROR if verbose < 2 else logging.WARNING)
    py_warnings.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medseg`` command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose, args.quiet)
    from medseg.errors import MedsegError

    try:
        return int(args.run(args) or 0)
    except MedsegError as exc:
        sys.stderr.write(f"medseg {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("medseg: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
