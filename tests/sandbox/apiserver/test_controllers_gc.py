"""The garbage collector: background cascade, dangling references, and the Foreground/Orphan finalizers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.apiserver.test_controllers_replicaset import StandInKubelet, until
from vk_sandbox.apiserver.controllers.gc import collect_garbage
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.store import Store


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


def configmap(name: str, owners: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", **meta}
    if owners:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
            for o in owners
        ]
    return {"metadata": metadata, "data": {}}


def exists(store: Store, name: str) -> bool:
    return store.get("configmaps", "default", name) is not None


async def test_deleting_a_deployment_cascades_to_replicasets_and_pods(server: SandboxAPIServer) -> None:
    """Background cascade: Deployment gone -> its ReplicaSet and then its pods are deleted."""
    store = server.store
    async with StandInKubelet(store):
        store.create_now(
            "deployments.apps",
            {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
                    },
                },
            },
        )
        await until(lambda: len(store.list("pods", "default", label_selector="app=web")[0]) == 2)
        store.delete_now("deployments.apps", "default", "web", propagation_policy="Background")
        await until(lambda: not store.list("replicasets.apps", "default")[0], timeout=10)
        await until(lambda: not store.list("pods", "default", label_selector="app=web")[0], timeout=10)


async def test_dangling_reference_is_dropped_when_another_owner_lives(server: SandboxAPIServer) -> None:
    """A dependent with one live and one deleted owner keeps living, without the dangling reference."""
    store = server.store
    a = store.create_now("configmaps", configmap("owner-a"))
    b = store.create_now("configmaps", configmap("owner-b"))
    store.create_now("configmaps", configmap("child", [a, b]))
    store.delete_now("configmaps", "default", "owner-a")

    def refs() -> list[str]:
        child = store.get("configmaps", "default", "child")
        assert child is not None
        return [r["name"] for r in child["metadata"].get("ownerReferences", [])]

    await until(lambda: refs() == ["owner-b"])
    store.delete_now("configmaps", "default", "owner-b")
    await until(lambda: not exists(store, "child"))


async def test_foreground_finalizer_waits_for_dependents_then_releases_the_owner(server: SandboxAPIServer) -> None:
    """An owner held by foregroundDeletion loses its dependents first, then the finalizer, then goes away."""
    store = server.store
    owner = store.create_now("configmaps", configmap("owner", finalizers=["foregroundDeletion"]))
    store.create_now("configmaps", configmap("dep-1", [owner]))
    store.create_now("configmaps", configmap("dep-2", [owner]))
    store.delete_now("configmaps", "default", "owner")
    await until(lambda: not exists(store, "owner"))
    assert not exists(store, "dep-1") and not exists(store, "dep-2")


async def test_orphan_finalizer_keeps_dependents(server: SandboxAPIServer) -> None:
    """An owner held by the orphan finalizer frees its dependents (references removed) and then goes away."""
    store = server.store
    owner = store.create_now("configmaps", configmap("owner", finalizers=["orphan"]))
    store.create_now("configmaps", configmap("dep", [owner]))
    store.delete_now("configmaps", "default", "owner")
    await until(lambda: not exists(store, "owner"))
    dep = store.get("configmaps", "default", "dep")
    assert dep is not None and "ownerReferences" not in dep["metadata"]


async def test_one_pass_leaves_healthy_objects_alone(tmp_path: Path) -> None:
    """A pass over objects whose owners all exist writes nothing (controllers off: the pass is driven by hand)."""
    async with SandboxAPIServer(directory=tmp_path / "api", controllers=False) as srv:
        owner = srv.store.create_now("configmaps", configmap("owner"))
        srv.store.create_now("configmaps", configmap("dep", [owner]))
        rv = srv.store.resource_version
        assert collect_garbage(srv) == 0  # type: ignore[arg-type]
        assert srv.store.resource_version == rv
        srv.store.delete_now("configmaps", "default", "owner")
        assert collect_garbage(srv) == 1  # type: ignore[arg-type]
        assert srv.store.get("configmaps", "default", "dep") is None


async def test_an_owner_checked_without_a_gc_finalizer_costs_no_copies_of_its_dependents(
    server: SandboxAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dependent's deletion makes the collector check its owner (a foreground owner may wait for it); only a GC
    finalizer reads the dependents, so an owner without one is checked without reading its other dependents (a
    ReplicaSet scaled in from 500 pods used to copy all of them on each of its pods' deletions)."""
    store = server.store
    owner = store.create_now("configmaps", configmap("owner"))
    for i in range(20):
        store.create_now("configmaps", configmap(f"dep-{i}", [owner]))
    read: list[str] = []
    real_get = store.get

    def spy(key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        read.append(name)
        return real_get(key, namespace, name)

    monkeypatch.setattr(store, "get", spy)
    store.delete_now("configmaps", "default", "dep-0")
    # A dependent of a missing owner, queued after the owner: once it is collected, the owner has been checked.
    store.create_now("configmaps", configmap("marker", [{"metadata": {"name": "gone", "uid": "no-such-uid"}}]))
    await until(lambda: not exists(store, "marker"), timeout=10)
    assert "owner" in read
    assert not [n for n in read if n.startswith("dep-")]
