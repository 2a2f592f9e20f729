"""The node lifecycle loop: nodes that stop heartbeating go Unknown; a status write brings them back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually
from vk_sandbox.apiserver.controllers.nodelifecycle import check_nodes, last_heartbeat, mark_unknown
from vk_sandbox.apiserver.server import SandboxAPIServer

GRACE = 1.0


def stamp(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def micro_stamp() -> str:
    """A Lease renewTime is a MicroTime: microsecond resolution."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


def ready_node(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": stamp()},
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": stamp()},
            ]
        },
    }


def ready_of(server: SandboxAPIServer, name: str) -> dict[str, Any]:
    node = server.store.get("nodes", None, name)
    assert node is not None
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api", node_lease_grace_seconds=GRACE) as srv:
        yield srv


async def wait_ready_status(server: SandboxAPIServer, name: str, status: str, timeout: float) -> None:
    await eventually(
        lambda: ready_of(server, name)["status"] == status, timeout=timeout, what=f"{name}'s Ready to become {status}"
    )


async def test_silent_node_goes_unknown_and_recovers_on_status(server: SandboxAPIServer) -> None:
    """No lease and no status for the grace period: every condition Unknown/NodeStatusUnknown; a status write heals."""
    store = server.store
    store.create_now("nodes", ready_node("quiet"))
    await wait_ready_status(server, "quiet", "Unknown", timeout=GRACE + 3)
    node = store.get("nodes", None, "quiet")
    assert node is not None
    for cond in node["status"]["conditions"]:
        assert cond["status"] == "Unknown"
        assert cond["reason"] == "NodeStatusUnknown"
        assert cond["message"] == "Kubelet stopped posting node status."
    assert {c["type"] for c in node["status"]["conditions"]} >= {
        "Ready",
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
    }

    # The kubelet posts status again.
    await store.mutate(
        "nodes", None, "quiet", lambda n: {**n, "status": ready_node("quiet")["status"]}, subresource="status"
    )
    assert ready_of(server, "quiet")["status"] == "True"


async def test_lease_renewals_keep_a_node_ready(server: SandboxAPIServer) -> None:
    """A node whose Lease is renewed stays Ready while a silent twin goes Unknown."""
    store = server.store
    store.create_now("nodes", ready_node("leased"))
    store.create_now("nodes", ready_node("silent"))
    lease = {
        "metadata": {"name": "leased", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "leased", "leaseDurationSeconds": 40, "renewTime": micro_stamp()},
    }
    store.create_now("leases.coordination.k8s.io", lease)

    async def renew() -> None:
        while True:
            await asyncio.sleep(0.2)
            await store.mutate(
                "leases.coordination.k8s.io",
                "kube-node-lease",
                "leased",
                lambda lz: {**lz, "spec": {**lz["spec"], "renewTime": micro_stamp()}},
            )

    renewer = asyncio.create_task(renew())
    try:
        await wait_ready_status(server, "silent", "Unknown", timeout=GRACE + 3)
        assert ready_of(server, "leased")["status"] == "True"
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)


def test_never_posted_node_and_idempotence() -> None:
    """A node with no conditions gets NodeStatusNeverUpdated; marking an all-Unknown node again changes nothing."""
    node: dict[str, Any] = {"metadata": {"name": "n", "creationTimestamp": stamp(-100)}, "status": {}}
    marked = mark_unknown(node)
    assert marked is not None
    conds = marked["status"]["conditions"]
    assert {c["reason"] for c in conds} == {"NodeStatusNeverUpdated"}
    assert mark_unknown(marked) is None


def test_last_heartbeat_takes_the_newest_sign_of_life() -> None:
    """The heartbeat is the newest of creation, the Ready condition's heartbeat and the lease renewal."""
    node = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"conditions": [{"type": "Ready", "lastHeartbeatTime": "2026-01-01T00:00:10Z"}]},
    }
    base = last_heartbeat(node, None)
    assert last_heartbeat(node, {"spec": {"renewTime": "2026-01-01T00:00:30.123456Z"}}) == pytest.approx(
        base + 20.123456
    )
    assert last_heartbeat(node, {"spec": {"renewTime": "2026-01-01T00:00:05Z"}}) == base


async def test_check_nodes_respects_the_grace(tmp_path: Path) -> None:
    """One pass marks only nodes older than the grace period (controllers off: the pass is driven by hand)."""
    async with SandboxAPIServer(directory=tmp_path / "api", controllers=False, node_lease_grace_seconds=30) as srv:
        srv.store.create_now("nodes", ready_node("fresh"))
        assert check_nodes(srv) == []  # type: ignore[arg-type]
        assert check_nodes(srv, now=time.time() + 31) == ["fresh"]  # type: ignore[arg-type]


def taints_of(server: SandboxAPIServer, name: str) -> list[dict[str, Any]]:
    node = server.store.get("nodes", None, name)
    assert node is not None
    return list((node.get("spec") or {}).get("taints") or [])


def keys(taints: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(t["key"], t["effect"]) for t in taints]


def set_conditions(*conditions: tuple[str, str]) -> Any:
    def fn(node: dict[str, Any]) -> dict[str, Any]:
        node["status"]["conditions"] = [{"type": t, "status": s, "lastHeartbeatTime": stamp()} for t, s in conditions]
        return node

    return fn


async def test_new_node_is_tainted_not_ready_until_ready(server: SandboxAPIServer) -> None:
    """As TaintNodesByCondition and the node lifecycle controller: a new Node starts with not-ready:NoSchedule, which
    goes when it is Ready and comes back (with timeAdded) when it is not; pressure and cordon have their own taints;
    other taints are left alone."""
    store = server.store
    node = ready_node("n1")
    node["spec"] = {"taints": [{"key": "vk", "value": "eci", "effect": "NoSchedule"}]}
    created = store.create_now("nodes", node)
    assert keys(created["spec"]["taints"]) == [("vk", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoSchedule")]
    await eventually(lambda: keys(taints_of(server, "n1")) == [("vk", "NoSchedule")], timeout=5, what="untainted")

    store.mutate_now("nodes", None, "n1", set_conditions(("Ready", "False")), subresource="status")
    await eventually(lambda: len(taints_of(server, "n1")) == 2, timeout=5, what="not-ready taint")
    added = taints_of(server, "n1")[1]
    assert added["key"] == "node.kubernetes.io/not-ready" and added["effect"] == "NoSchedule"
    assert added["timeAdded"]

    store.mutate_now(
        "nodes", None, "n1", set_conditions(("Ready", "True"), ("MemoryPressure", "True")), subresource="status"
    )
    await eventually(
        lambda: (
            keys(taints_of(server, "n1"))
            == [("vk", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule")]
        ),
        timeout=5,
        what="memory-pressure taint",
    )
    store.mutate_now("nodes", None, "n1", lambda n: {**n, "spec": {**n["spec"], "unschedulable": True}})
    await eventually(
        lambda: ("node.kubernetes.io/unschedulable", "NoSchedule") in keys(taints_of(server, "n1")),
        timeout=5,
        what="unschedulable taint",
    )


async def test_node_without_conditions_loses_the_not_ready_taint(server: SandboxAPIServer) -> None:
    """No Ready condition calls for no taint (as the real controller), until the node goes Unknown: unreachable."""
    server.store.create_now("nodes", {"metadata": {"name": "bare"}})
    await eventually(lambda: taints_of(server, "bare") == [], timeout=5, what="no taint")
    await eventually(
        lambda: keys(taints_of(server, "bare")) == [("node.kubernetes.io/unreachable", "NoSchedule")],
        timeout=10,
        what="unreachable taint after the grace period",
    )


async def test_nodes_get_the_ttl_annotation(server: SandboxAPIServer) -> None:
    """The TTL controller annotates every node with node.alpha.kubernetes.io/ttl, 0 in a small cluster."""
    server.store.create_now("nodes", ready_node("n1"))

    def ttl() -> str | None:
        node = server.store.get("nodes", None, "n1") or {}
        return (node["metadata"].get("annotations") or {}).get("node.alpha.kubernetes.io/ttl")

    assert await eventually(ttl, timeout=5, what="ttl annotation") == "0"


def test_ttl_steps_with_overlap() -> None:
    from vk_sandbox.apiserver.controllers.ttl import next_step

    assert next_step(0, 100) == 0
    assert next_step(0, 101) == 1
    assert next_step(1, 95) == 1  # inside the overlap: stays
    assert next_step(1, 89) == 0
    assert next_step(0, 5000) == 4
