"""The import rules of docs/architecture.md, checked by walking every module's imports (relative ones
resolved, imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "vk_provider"
SANDBOX = REPO / "sandbox" / "vk_sandbox"

# The product's units (a top-level module or package of vk_provider) by layer, top first. A unit may import
# units of lower layers only: never upwards, never a peer of its own layer. So pods/ and node/ never import
# eci/ (they see the backend through provider.py), kubelet/ never imports pods/, and eci/ never imports a
# controller. provider.py is the contract both sides depend on.
LAYERS: list[set[str]] = [
    {"cli"},
    {"app", "doctor"},
    {"node", "pods", "kubelet", "eci", "elastic", "supervisor", "election"},
    {"provider", "kube", "fence"},
    {"settings", "metrics", "errors", "log", "aio", "permissions", "heap", "pki", "jsoncodec", "packing"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}

# What the test bed may use of the product: small utilities, and the daemon itself in the all-in-one.
SANDBOX_MAY_IMPORT = {"vk_provider.aio", "vk_provider.log"}
SANDBOX_ALL_IN_ONE = {"vk_sandbox.up": {"vk_provider.app", "vk_provider.settings", "vk_provider.log"}}


def _module_name(path: Path, top: Path) -> str:
    parts = path.relative_to(top.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, top: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved; ``from pkg import name`` also counts as
    ``pkg.name`` (which only matters when that is a module)."""
    name = _module_name(path, top)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _product_modules() -> dict[str, Path]:
    return {_module_name(p, PRODUCT): p for p in PRODUCT.rglob("*.py")}


def _unit(module: str) -> str:
    return module.split(".")[1] if module.startswith("vk_provider.") else ""


def test_every_unit_has_a_layer() -> None:
    """A new package or top-level module must be placed in LAYERS (and in docs/architecture.md)."""
    units = {_unit(m) for m in _product_modules()} - {""}
    assert units - RANK.keys() == set()


def test_imports_only_go_downwards() -> None:
    offenders = []
    for module, path in _product_modules().items():
        unit = _unit(module)
        if not unit:
            continue
        for dep in imports_of(path, PRODUCT):
            target = _unit(dep)
            if target and target != unit and target in RANK and RANK[target] <= RANK[unit]:
                offenders.append(f"{module} imports {dep}")
    assert sorted(set(offenders)) == []


def test_the_layer_walk_sees_relative_imports(tmp_path: Path) -> None:
    """The rule cannot be dodged with a relative import: ``from ..eci import x`` in pods/ is eci."""
    pkg = tmp_path / "vk_provider" / "pods"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("from ..eci.provider import ECIProvider\nfrom . import state\n")
    found = imports_of(pkg / "x.py", tmp_path / "vk_provider")
    assert {"vk_provider.eci.provider", "vk_provider.pods.state"} <= found


def test_product_never_imports_the_sandbox() -> None:
    """Nothing under vk_provider/ imports vk_sandbox (the CLI names it only in lazy strings)."""
    offenders = [
        m for m, p in _product_modules().items() if any(n.startswith("vk_sandbox") for n in imports_of(p, PRODUCT))
    ]
    assert offenders == []


def test_the_sandbox_uses_only_small_product_utilities() -> None:
    """The test bed is a peer of the cloud: it may use vk_provider.aio and .log, and the all-in-one the daemon."""
    offenders = []
    for path in SANDBOX.rglob("*.py"):
        module = _module_name(path, SANDBOX)
        allowed = SANDBOX_MAY_IMPORT | SANDBOX_ALL_IN_ONE.get(module, set())
        for dep in imports_of(path, SANDBOX):
            if dep.startswith("vk_provider") and dep not in allowed and dep.rpartition(".")[0] not in allowed:
                offenders.append(f"{module} imports {dep}")
    assert sorted(set(offenders)) == []


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        ("aliyunsdk", {"eci"}),  # the SDK is eci/'s alone (the simulator may use it too, as a peer of the SDK)
        ("kubernetes_asyncio", {"kube", "node", "pods", "kubelet", "app", "supervisor"}),
    ],
)
def test_third_party_clients_stay_in_their_units(prefix: str, allowed: set[str]) -> None:
    offenders = [
        m
        for m, p in _product_modules().items()
        if _unit(m) not in allowed and any(n.startswith(prefix) for n in imports_of(p, PRODUCT))
    ]
    assert offenders == []


def _import_graph(top: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports."""
    modules = {_module_name(p, top): p for p in top.rglob("*.py")}
    return {m: {d for d in imports_of(p, top) if d in modules and d != m} for m, p in modules.items()}


@pytest.mark.parametrize(
    ("top", "edge"),
    [
        (PRODUCT, ("vk_provider.app", "vk_provider.pods.controller")),
        (SANDBOX, ("vk_sandbox.apiserver.controllers.scheduler", "vk_sandbox.apiserver.controllers._common")),
    ],
    ids=["product", "sandbox"],
)
def test_no_import_cycles(top: Path, edge: tuple[str, str]) -> None:
    """Inside a unit too, imports only go downwards: no module reaches itself through its imports (relative
    imports and those inside functions or ``if TYPE_CHECKING:`` included)."""
    graph = _import_graph(top)
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
    assert edge[1] in graph[edge[0]]  # the walk sees the tree's imports, relative ones included
    assert cycles == []
