"""Imports point down the layers: interface > workflows > engines > core (docs: ARCHITECTURE).

The import graph is read from the source with :mod:`ast`: module-level and
function-level imports, ``import x`` and ``from x import y``, relative imports
resolved. Imports under ``if TYPE_CHECKING:`` count for the layers (they are
knowledge of a higher layer) but not for cycles (they never run). Lazy imports
through ``importlib.import_module`` are invisible here; the run-time check
:func:`test_io_import_does_not_load_torch` covers the one that matters most.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.fresh_import import modules_loaded

REPO = Path(__file__).resolve().parents[1]

#: Layer of each top-level part of the package (the name after ``medseg.``); higher may import lower.
#: The root package (``""``: ``medseg/__init__.py``) is core: every ``import medseg.x`` runs it first,
#: so it may only (lazily) re-export core names such as ``read_volume`` and ``__version__``.
LAYERS: dict[str, int] = {
    # interface
    "__main__": 3,
    "cli": 3,
    "api": 3,
    "demo": 3,
    # workflows
    "training": 2,
    "inference": 2,
    "evaluation": 2,
    "reporting": 2,
    "export": 2,
    "pacs": 2,
    # engines (torch is allowed from here up)
    "models": 1,
    "losses": 1,
    "transforms": 1,
    "data": 1,
    "planning": 1,
    "device": 1,
    # core
    "": 0,
    "io": 0,
    "volume": 0,
    "config": 0,
    "geometry": 0,
    "errors": 0,
    "progress": 0,
    "labels": 0,
}
LAYER_NAMES = {3: "interface", 2: "workflows", 1: "engines", 0: "core"}
#: Third-party packages that ``medseg.io`` must never load (a user who only converts scans imports little).
IO_FORBIDDEN = ("torch", "monai")


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where, and whether it only runs for type checkers."""

    importer: str
    target: str  # a module of the package, or a top-level third-party name
    line: int
    type_checking: bool


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file for every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement below ``node`` (any depth), flagged when under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), type_checking)
        else:
            yield from _walk(child, type_checking)


def _targets(node: ast.stmt, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The package modules (or third-party top-level names) one import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name not in modules and "." in name:  # ``import pkg.mod.attr`` -> pkg.mod
            name = name.rsplit(".", 1)[0]
        out.append(name if name in modules else name.split(".")[0])
    return out


def import_graph(root: Path, package: str) -> list[Import]:
    """Every import in ``package`` (found under ``root``), module- and function-level."""
    files = module_names(root, package)
    modules = set(files)
    edges = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, tc in _walk(tree):
            for target in dict.fromkeys(_targets(node, module, path.name == "__init__.py", modules)):
                if target != module:
                    edges.append(Import(module, target, node.lineno, tc))
    return edges


def layer_of(module: str, package: str) -> int:
    """Layer of a package module; a module missing from :data:`LAYERS` fails the test."""
    part = module[len(package) + 1 :].split(".")[0] if module != package else ""
    if part not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add {part!r} to LAYERS in {__file__}")
    return LAYERS[part]


def upward_imports(edges: list[Import], package: str) -> list[str]:
    """One line per import of a higher layer."""
    out = []
    for e in edges:
        if e.target == package or e.target.startswith(package + "."):
            lo, hi = layer_of(e.importer, package), layer_of(e.target, package)
            if hi > lo:
                out.append(
                    f"{e.importer} ({LAYER_NAMES[lo]}) imports {e.target} ({LAYER_NAMES[hi]}) "
                    f"at line {e.line}{' under TYPE_CHECKING' if e.type_checking else ''}"
                )
    return out


def import_cycles(edges: list[Import], package: str) -> list[list[str]]:
    """Strongly connected groups (more than one module) of the run-time import graph."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.type_checking and e.target.startswith(package + "."):
            graph.setdefault(e.importer, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def forbidden_reach(edges: list[Import], start: str, forbidden: tuple[str, ...]) -> list[str]:
    """Import chains from modules under ``start`` to a forbidden third-party package.

    Loading a module also runs its parent packages' ``__init__``; those count too.
    """
    package = start.split(".")[0]
    graph: dict[str, list[Import]] = {}
    for e in edges:
        if not e.type_checking:
            graph.setdefault(e.importer, []).append(e)
    found = []
    for first in sorted(m for m in graph if m == start or m.startswith(start + ".")):
        seen, todo = {first}, [(first, [first])]
        while todo:
            module, chain = todo.pop()
            parents = [".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 1)]
            nexts = [(p, f"{p} (parent package)") for p in parents]
            for e in graph.get(module, []):
                if e.target.split(".")[0] in forbidden:
                    found.append(" -> ".join([*chain, f"{e.target} (line {e.line})"]))
                elif e.target.startswith(package + ".") or e.target == package:
                    nexts.append((e.target, f"{e.target} (line {e.line})"))
            for target, step in nexts:
                if target not in seen:
                    seen.add(target)
                    todo.append((target, [*chain, step]))
    return sorted(set(found))


# -- the package ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    """The import graph of medseg."""
    return import_graph(REPO, "medseg")


def test_imports_point_down_the_layers(edges: list[Import]) -> None:
    for module in module_names(REPO, "medseg"):
        layer_of(module, "medseg")  # every module is classified, even one that imports nothing
    bad = upward_imports(edges, "medseg")
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_no_import_cycles(edges: list[Import]) -> None:
    cycles = import_cycles(edges, "medseg")
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_io_never_imports_torch(edges: list[Import]) -> None:
    chains = forbidden_reach(edges, "medseg.io", IO_FORBIDDEN)
    assert not chains, "medseg.io reaches torch:\n" + "\n".join(chains)


def test_io_import_does_not_load_torch() -> None:
    """At run time too (catches lazy ``importlib`` imports the source graph cannot see)."""
    io_modules = [m for m in module_names(REPO, "medseg") if m == "medseg.io" or m.startswith("medseg.io.")]
    assert modules_loaded(f"import {', '.join(io_modules)}", IO_FORBIDDEN) == []
    assert modules_loaded("import colorsys", ("colorsys", "wave")) == ["colorsys"]  # the probe can fail


# -- the checker can fail -------------------------------------------------------------


def _fake_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_reports_an_upward_import_a_cycle_and_torch(tmp_path: Path) -> None:
    _fake_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/cli/__init__.py": "",
            "pkg/cli/main.py": "from ..io import atomic\n",
            "pkg/io/__init__.py": "",
            "pkg/io/atomic.py": "def f():\n    from ..cli import main\n    import pkg.models.net\n",
            "pkg/io/ok.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
            "    from pkg.cli.main import x\n",
            "pkg/models/__init__.py": "",
            "pkg/models/net.py": "import torch.nn\n",
        },
    )
    edges = import_graph(tmp_path, "pkg")
    bad = upward_imports(edges, "pkg")
    assert "pkg.io.atomic (core) imports pkg.cli.main (interface) at line 2" in bad
    assert "pkg.io.atomic (core) imports pkg.models.net (engines) at line 3" in bad
    assert "pkg.io.ok (core) imports pkg.cli.main (interface) at line 4 under TYPE_CHECKING" in bad
    assert import_cycles(edges, "pkg") == [["pkg.cli.main", "pkg.io.atomic"]]
    chains = forbidden_reach(edges, "pkg.io", IO_FORBIDDEN)
    assert chains == ["pkg.io.atomic -> pkg.models.net (line 3) -> torch (line 1)"]  # not pkg.io.ok


def test_checker_rejects_an_unclassified_module(tmp_path: Path) -> None:
    _fake_package(tmp_path, {"pkg/__init__.py": "", "pkg/misc.py": "import pkg\n"})
    with pytest.raises(AssertionError, match=r"pkg\.misc is in no layer"):
        upward_imports(import_graph(tmp_path, "pkg"), "pkg")
