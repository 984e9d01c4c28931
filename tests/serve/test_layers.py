"""The layers, read from the source with ``ast`` (every import, including those inside
functions; not those under ``if TYPE_CHECKING``, which never run):

- no import cycle anywhere in ``probes`` and ``reports``;
- nothing under ``probes/serve/`` but ``service.py`` imports ``probes.serve.service`` (the
  composition root is on top; a part that needs the Service is handed a callback instead);
- ``probes/serve/`` and ``probes/recording/`` never import click or ``probes.cli`` (the
  library under both the CLI and the service names no flag).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("probes", "reports")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
    return name == "TYPE_CHECKING"


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module ``tree`` imports, at any depth (functions included)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
        stack.extend(ast.iter_child_nodes(node))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"))
        is_package = path.name == "__init__.py"
        graph[name] = {m for m in _imports(tree, name, is_package) if m != name}
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue  # outside probes and reports
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions() -> None:
    # runner.py imports probes.recording only inside RecordingRunner._run
    assert "probes.recording" in GRAPH["probes.serve.runner"]
    assert "probes.serve.service" in GRAPH["probes.cli.serve"]


def test_no_import_cycle_in_probes_and_reports() -> None:
    assert _cycles(GRAPH) == []


def test_a_cycle_would_be_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_composition_root_imports_the_service() -> None:
    users = sorted(
        m
        for m, deps in GRAPH.items()
        if m.startswith("probes.serve") and m != "probes.serve.service"
        if "probes.serve.service" in deps
    )
    assert users == []


@pytest.mark.parametrize("package", ["probes.serve", "probes.recording"])
def test_the_library_never_imports_click_or_the_cli(package: str) -> None:
    bad = {
        m: sorted(d for d in deps if d.split(".")[0] == "click" or d.startswith("probes.cli"))
        for m, deps in GRAPH.items()
        if m == package or m.startswith(f"{package}.")
    }
    assert {m: d for m, d in bad.items() if d} == {}
