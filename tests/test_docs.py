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


def test_benchmark_page_and_readme_table_are_current():
    from benchmarks.render import README, load_results, readme_with_table, render

    results = load_results()
    assert (DOCS / "benchmarks.md").read_text() == render(results), (
        "docs/benchmarks.md is stale: run python benchmarks/run_all.py --render-only"
    )
    assert README.read_text() == readme_with_table(README.read_text(), results), (
        "the README's benchmark table is stale: run python benchmarks/run_all.py --render-only"
    )


def test_every_error_class_and_exit_code_is_in_troubleshooting():
    import inspect
    import re

    import medseg.errors as errors
    from medseg.inference.batch import EXIT_SOME_FAILED

    text = (DOCS / "troubleshooting.md").read_text()
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", text, re.M)}
    codes = {
        cls.exit_code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.MedsegError)
    }
    assert codes | {12, 13, EXIT_SOME_FAILED} <= documented


def test_links_in_readme_and_docs_resolve():
    import re

    root = DOCS.parent
    for page in [root / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_run_all_reruns_every_figure_on_the_page():
    from benchmarks.render import LEVERS, RECIPES, RESULTS
    from benchmarks.run_all import ENTRIES

    keys = {e.key for e in ENTRIES}
    rendered = {k for k, _ in RECIPES + LEVERS} | {
        "demo",
        "demo_all_flips",
        "demo_fp32",
        "isbi",
        "sliding_window",
        "predict_memory",
        "hippocampus_backends",
        "hippocampus_folder",
        "hippocampus_folder_int8",
        "hippocampus_overlap",
        "fuzz",
        "soak",
    }
    assert rendered <= keys
    assert {p.stem for p in RESULTS.glob("*.json")} <= keys


def test_extending_page_lists_every_registered_name():
    """docs/extending.md's table of registered names equals the five tables."""
    import re

    from medseg.export.registry import EXPORTS
    from medseg.inference.backends import BACKENDS
    from medseg.io.formats import FORMATS
    from medseg.losses import LOSSES
    from medseg.models import MODELS

    text = (DOCS / "extending.md").read_text()
    block = text.split("<!-- registered-names")[1].split("<!-- /registered-names -->")[0]
    listed = {
        row.split("|")[1].strip(): [n.strip() for n in row.split("|")[3].split(",")]
        for row in block.splitlines()
        if re.match(r"\| (networks|losses|input formats|export formats|inference backends) ", row)
    }
    assert listed == {
        "networks": list(MODELS),
        "losses": list(LOSSES),
        "input formats": [f.name for f in FORMATS],
        "export formats": [e.name for e in EXPORTS],
        "inference backends": list(BACKENDS),
    }, "update the table in docs/extending.md"
