"""The default ServiceAccount controller: one "default" per namespace, recreated if deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.waiting import eventually
from vk_sandbox.apiserver.server import SandboxAPIServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


async def wait_for_sa(server: SandboxAPIServer, namespace: str) -> None:
    await eventually(
        lambda: server.store.get("serviceaccounts", namespace, "default") is not None,
        timeout=5,
        interval=0.01,
        what=f"a default ServiceAccount in {namespace}",
    )


async def test_every_namespace_gets_a_default_service_account(server: SandboxAPIServer) -> None:
    """The system namespaces exist and each, plus any new namespace, gets ServiceAccount "default"."""
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert server.store.get("namespaces", None, ns) is not None
        await wait_for_sa(server, ns)
    server.store.create_now("namespaces", {"metadata": {"name": "team-a"}})
    await wait_for_sa(server, "team-a")


async def test_deleted_default_service_account_comes_back(server: SandboxAPIServer) -> None:
    """Deleting "default" is undone, with a new uid."""
    await wait_for_sa(server, "default")
    old = server.store.get("serviceaccounts", "default", "default")
    assert old is not None
    server.store.delete_now("serviceaccounts", "default", "default")
    await wait_for_sa(server, "default")
    new = server.store.get("serviceaccounts", "default", "default")
    assert new is not None and new["metadata"]["uid"] != old["metadata"]["uid"]
