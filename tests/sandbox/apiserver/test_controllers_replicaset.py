"""The ReplicaSet controller through a running SandboxAPIServer, with a stand-in kubelet on one node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.sandbox.apiserver.conftest import until
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.store import Store

T = TypeVar("T")
NODE = "worker"


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StandInKubelet:
    """Plays the kubelet of one node through the store: runs bound pods and finishes their deletion.

    ``outcome(pod)`` picks the phase a new pod reaches: "Running" (and Ready), "Succeeded" or "Failed".
    """

    def __init__(self, store: Store, node: str = NODE, outcome: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.store = store
        self.node = node
        self.outcome = outcome or (lambda pod: "Running")
        self.hold = False  # when True, new pods stay Pending (not ready)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StandInKubelet:
        self.store.create_now(
            "nodes",
            {
                "metadata": {"name": self.node},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stamp()}]},
            },
        )
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        watch = self.store.watch("pods", field_selector=f"spec.nodeName={self.node}")
        try:
            async for event in watch:
                if event["type"] != "DELETED":
                    self._handle(event["object"])
        finally:
            await watch.aclose()

    def release(self) -> None:
        """Let held pods start now."""
        self.hold = False
        for pod in self.store.list("pods", field_selector=f"spec.nodeName={self.node}")[0]:
            self._handle(pod)

    def _handle(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            self.store.delete_now(
                "pods", meta["namespace"], meta["name"], grace_period_seconds=0, uid_precondition=meta["uid"]
            )
            return
        if self.hold or pod.get("status", {}).get("phase", "Pending") != "Pending":
            return
        phase = self.outcome(pod)

        def run(p: dict[str, Any]) -> dict[str, Any]:
            ready = "True" if phase == "Running" else "False"
            p["status"] = {
                **p.get("status", {}),
                "phase": phase,
                "podIP": "10.0.0.1",
                "conditions": [
                    *[c for c in p.get("status", {}).get("conditions", []) if c["type"] != "Ready"],
                    {"type": "Ready", "status": ready, "lastTransitionTime": stamp()},
                ],
            }
            return p

        self.store.mutate_now("pods", meta["namespace"], meta["name"], run, subresource="status")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


def replicaset(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
        },
    }


def owned_pods(store: Store, owner_uid: str, *, active_only: bool = True) -> list[dict[str, Any]]:
    pods = store.list("pods", "default")[0]
    out = [p for p in pods if any(r["uid"] == owner_uid for r in p["metadata"].get("ownerReferences", []))]
    if active_only:
        out = [p for p in out if not p["metadata"].get("deletionTimestamp")]
    return out


async def test_replicaset_creates_owned_pods_and_reports_status(server: SandboxAPIServer) -> None:
    """Three replicas: three pods named <rs>-xxxxx with a controller owner reference, then ready status counts."""
    store = server.store
    async with StandInKubelet(store):
        rs = store.create_now("replicasets.apps", replicaset("web", 3))
        uid = rs["metadata"]["uid"]
        pods = await until(lambda: len(owned_pods(store, uid)) == 3 and owned_pods(store, uid))
        for pod in pods:
            assert pod["metadata"]["name"].startswith("web-") and len(pod["metadata"]["name"]) == len("web-") + 5
            assert pod["metadata"]["labels"] == {"app": "web"}
            (ref,) = pod["metadata"]["ownerReferences"]
            assert ref == {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        status = await until(
            lambda: (s := store.get("replicasets.apps", "default", "web")["status"]).get("readyReplicas") == 3 and s  # type: ignore[index]
        )
        assert status["replicas"] == 3
        assert status["availableReplicas"] == 3
        assert status["fullyLabeledReplicas"] == 3
        assert status["observedGeneration"] == 1


async def test_replicaset_scales_down_unready_pods_first_and_replaces_lost_ones(server: SandboxAPIServer) -> None:
    """Scaling down deletes not-ready pods before ready ones; a pod deleted by hand is replaced."""
    store = server.store
    async with StandInKubelet(store) as kubelet:
        rs = store.create_now("replicasets.apps", replicaset("web", 2))
        uid = rs["metadata"]["uid"]
        await until(
            lambda: (
                all(p.get("status", {}).get("phase") == "Running" for p in owned_pods(store, uid))
                and len(owned_pods(store, uid)) == 2
            )
        )
        ready_names = {p["metadata"]["name"] for p in owned_pods(store, uid)}
        kubelet.hold = True
        await store.mutate("replicasets.apps", "default", "web", lambda o: {**o, "spec": {**o["spec"], "replicas": 4}})
        await until(lambda: len(owned_pods(store, uid)) == 4)
        await store.mutate("replicasets.apps", "default", "web", lambda o: {**o, "spec": {**o["spec"], "replicas": 2}})
        await until(lambda: {p["metadata"]["name"] for p in owned_pods(store, uid)} == ready_names)
        kubelet.release()

        victim = sorted(ready_names)[0]
        store.delete_now("pods", "default", victim)
        await until(
            lambda: (
                len(owned_pods(store, uid)) == 2
                and victim not in {p["metadata"]["name"] for p in owned_pods(store, uid)}
            )
        )


async def test_replicaset_to_zero_and_back(server: SandboxAPIServer) -> None:
    """replicas 0 removes every pod and reports replicas 0; scaling up again creates fresh pods."""
    store = server.store
    async with StandInKubelet(store):
        rs = store.create_now("replicasets.apps", replicaset("web", 2))
        uid = rs["metadata"]["uid"]
        await until(lambda: len(owned_pods(store, uid)) == 2)
        await store.mutate("replicasets.apps", "default", "web", lambda o: {**o, "spec": {**o["spec"], "replicas": 0}})
        await until(lambda: not owned_pods(store, uid, active_only=False))
        await until(lambda: store.get("replicasets.apps", "default", "web")["status"].get("replicas") == 0)  # type: ignore[index]
        await store.mutate("replicasets.apps", "default", "web", lambda o: {**o, "spec": {**o["spec"], "replicas": 1}})
        await until(lambda: len(owned_pods(store, uid)) == 1)


async def test_replicaset_adopts_matching_orphans_and_releases_relabelled_pods(server: SandboxAPIServer) -> None:
    """An orphan pod matching the selector is adopted (one fewer created); a relabelled pod is released and replaced."""
    store = server.store
    async with StandInKubelet(store):
        orphan = {
            "metadata": {"name": "orphan", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
        }
        store.create_now("pods", orphan)
        rs = store.create_now("replicasets.apps", replicaset("web", 2))
        uid = rs["metadata"]["uid"]
        await until(lambda: len(owned_pods(store, uid)) == 2)
        names = {p["metadata"]["name"] for p in owned_pods(store, uid)}
        assert "orphan" in names
        assert len(store.list("pods", "default")[0]) == 2

        def relabel(p: dict[str, Any]) -> dict[str, Any]:
            p["metadata"]["labels"] = {"app": "debugging"}
            return p

        await store.mutate("pods", "default", "orphan", relabel)
        await until(
            lambda: (
                len(owned_pods(store, uid)) == 2
                and "orphan" not in {p["metadata"]["name"] for p in owned_pods(store, uid)}
            )
        )
        released = store.get("pods", "default", "orphan")
        assert released is not None and "ownerReferences" not in released["metadata"]
