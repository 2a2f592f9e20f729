"""Imports in vk_sandbox.apiserver only go downwards: no module reaches itself again through its imports.

Every import counts, relative ones and those inside functions or ``if TYPE_CHECKING:`` included, so a circle cannot
be hidden by moving an import out of sight.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vk_sandbox.apiserver

PACKAGE = "vk_sandbox.apiserver"
ROOT = Path(vk_sandbox.apiserver.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([PACKAGE, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports (``from pkg import mod`` names the module, else ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return found & known


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_the_walk_sees_relative_and_hidden_imports() -> None:
    """The walk resolves relative imports and finds the submodules the handlers and controllers import."""
    graph = _graph()
    assert f"{PACKAGE}.controllers._common" in graph[f"{PACKAGE}.controllers.scheduler"]
    assert f"{PACKAGE}.errors" in graph[f"{PACKAGE}.controllers.scheduler"]
    assert f"{PACKAGE}.handlers.router" in graph[f"{PACKAGE}.server"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycle(_graph()) == []
