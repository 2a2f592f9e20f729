"""The import rules of docs/architecture.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "vk_provider"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _product_modules() -> list[Path]:
    return list(ROOT.rglob("*.py"))


def test_product_never_imports_the_sandbox() -> None:
    """Nothing under vk_provider/ imports vk_sandbox (the CLI names it only in lazy strings)."""
    offenders = [str(p) for p in _product_modules() if any(n.startswith("vk_sandbox") for n in _imports(p))]
    assert offenders == []


def test_only_eci_imports_the_sdk() -> None:
    """Only vk_provider/eci/ imports aliyunsdk* (the sandbox simulator may, as a peer of the SDK)."""
    offenders = []
    for p in _product_modules():
        rel = p.relative_to(ROOT).parts
        if rel[0] != "eci" and any(n.startswith("aliyunsdk") for n in _imports(p)):
            offenders.append(str(p))
    assert offenders == []


def test_only_kube_and_controllers_import_kubernetes_asyncio() -> None:
    """kubernetes_asyncio is used by kube/, node/, pods/, kubelet/ (reviews, CSR) and app wiring only."""
    allowed = {"kube", "node", "pods", "kubelet", "app.py", "supervisor.py"}
    offenders = []
    for p in _product_modules():
        rel = p.relative_to(ROOT).parts
        if rel[0] not in allowed and any(n.startswith("kubernetes_asyncio") for n in _imports(p)):
            offenders.append(str(p))
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Product module -> the product modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    paths = {_module_name(p): p for p in _product_modules()}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in paths)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in paths:
                    deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in paths)
        deps.discard(name)
        graph[name] = deps
    return graph


def test_no_import_cycles() -> None:
    """Imports only go downwards: no product module reaches itself through its imports."""
    graph = _import_graph()
    done: set[str] = set()
    path: list[str] = []
    cycles: list[str] = []

    def visit(name: str) -> None:
        path.append(name)
        for dep in sorted(graph[name]):
            if dep in path:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in done:
                visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name)
    assert "vk_provider.pods.controller" in graph["vk_provider.app"]  # the walk sees the product's imports
    assert cycles == []
