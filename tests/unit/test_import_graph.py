"""The import graph keeps the house's shape: no cycles, and dependencies point one way.

Read from the source with `ast`, so a violation fails here before it becomes
an import-order bug at run time. The rules are the ones in
shared/ARCHITECTURE.md and the README's package map.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_PACKAGES = {
    "soc_agent": _ROOT / "soc_agent",
    "soc_agent_connectors": _ROOT / "connectors" / "soc_agent_connectors",
}
# Re-exports of moved modules, kept for one release; they import what they re-export.
_SHIMS = {
    "soc_agent_connectors.gateway",
    "soc_agent_connectors.http",
    "soc_agent_connectors.oauth2",
}
# The sibling cores: composed only by the pipeline, never importing each other.
_CORES = ("ingest", "correlate", "playbooks", "policy", "audit")
# The core's other layers; none of them imports what sits above them.
_LOWER = ("models", *_CORES, "actions", "store", "gateway", "settings", "investigator")
_UPPER = ("pipeline", "runtime", "api", "cli")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in _PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's __init__ counts as a module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    # `from pkg import submodule` depends on the submodule, not on pkg's face.
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
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


def _edges() -> Iterator[tuple[str, str]]:
    for source, targets in _graph().items():
        for target in targets:
            yield source, target


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_sees_the_project() -> None:
    graph = _graph()
    assert "soc_agent.pipeline.agent" in graph
    assert "soc_agent.policy" in graph["soc_agent.pipeline.deciding"]
    assert "soc_agent.models.ids" in graph["soc_agent.pipeline.deciding"]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("core", _CORES)
def test_sibling_cores_never_import_each_other(core: str) -> None:
    bad = sorted(
        f"{source} -> {target}"
        for source, target in _edges()
        if _layer(source) == core and _layer(target) in _CORES and _layer(target) != core
    )
    assert bad == []


@pytest.mark.parametrize("layer", _LOWER)
def test_the_core_imports_nothing_above_it(layer: str) -> None:
    bad = sorted(
        f"{source} -> {target}"
        for source, target in _edges()
        if source.startswith("soc_agent.") and _layer(source) == layer and _layer(target) in _UPPER
    )
    assert bad == []


def test_connectors_depend_only_on_the_kit_the_models_and_the_errors() -> None:
    bad = sorted(
        f"{source} -> {target}"
        for source, target in _edges()
        if source.startswith("soc_agent_connectors")
        and source not in _SHIMS
        and target.startswith("soc_agent.")
        and not target.startswith(("soc_agent.models", "soc_agent.errors"))
    )
    assert bad == []


def test_the_agent_uses_the_connector_kit_through_its_face() -> None:
    bad = sorted(
        f"{source} -> {target}"
        for source, target in _edges()
        if source.startswith("soc_agent.") and target.startswith("soc_agent_connectors.")
    )
    assert bad == []
