"""The reference docs are generated from the code and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from medseg.cli.reference import cli_reference
from medseg.config.reference import configuration_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_configuration_reference_is_current():
    assert (DOCS / "configuration.md").read_text() == configuration_reference(), (
        "docs/configuration.md is stale: run python -m medseg.config.reference > docs/configuration.md"
    )


def test_cli_reference_is_current():
    assert (DOCS / "cli.md").read_text() == cli_reference(), (
        "docs/cli.md is stale: run python -m medseg.cli.reference > docs/cli.md"
    )


def test_every_command_and_option_is_documented():
    import argparse

    from medseg.cli.main import build_parser

    text = (DOCS / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert f"## `medseg {name}" in text, name
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for opt in action.option_strings:
                assert f"`{opt}`" in text, (name, opt)


def test_every_config_field_is_documented():
    from medseg.config.reference import SECTIONS

    text = (DOCS / "configuration.md").read_text()
    for _, model in SECTIONS:
        for key in model.model_fields:
            assert f"| `{key}` |" in text, key
