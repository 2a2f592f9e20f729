"""The sandbox scheduler through a running SandboxAPIServer: binds, explains, retries on node changes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.apiserver.conftest import until
from vk_sandbox.apiserver.server import SandboxAPIServer


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def make_node(name: str, *, labels: dict[str, str] | None = None, ready: str = "True", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": now()}]},
    }


def make_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}], **spec},
    }


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


def pod_of(server: SandboxAPIServer, name: str) -> dict[str, Any]:
    pod = server.store.get("pods", "default", name)
    assert pod is not None
    return pod


def scheduled_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"), None)


async def test_binds_a_pending_pod_to_a_fitting_node(server: SandboxAPIServer) -> None:
    """A pending pod lands on the Ready node matching its selector, with PodScheduled=True and a Scheduled event."""
    store = server.store
    store.create_now("nodes", make_node("plain"))
    store.create_now("nodes", make_node("vk", labels={"type": "virtual-kubelet"}))
    store.create_now("pods", make_pod("p", nodeSelector={"type": "virtual-kubelet"}))
    pod = await until(lambda: (p := pod_of(server, "p"))["spec"].get("nodeName") and scheduled_condition(p) and p)
    assert pod["spec"]["nodeName"] == "vk"
    assert scheduled_condition(pod) == {
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": scheduled_condition(pod)["lastTransitionTime"],  # type: ignore[index]
    }
    events, _ = store.list("events", "default", field_selector="involvedObject.name=p,reason=Scheduled")
    assert [e["message"] for e in events] == ["Successfully assigned default/p to vk"]


async def test_unschedulable_pod_gets_the_real_message_and_waits_for_a_node(server: SandboxAPIServer) -> None:
    """No fitting node: PodScheduled=False/Unschedulable with the real wording; a new fitting node binds it."""
    store = server.store
    store.create_now("nodes", make_node("tainted", taints=[{"key": "vk", "value": "eci", "effect": "NoSchedule"}]))
    store.create_now("nodes", make_node("down", ready="False"))
    store.create_now("pods", make_pod("p"))
    cond = await until(lambda: scheduled_condition(pod_of(server, "p")))
    assert cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"
    assert cond["observedGeneration"] == 1  # as the v1.36 scheduler
    assert cond["message"] == (
        "0/2 nodes are available: 2 node(s) had untolerated taint(s). "
        "no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
    events, _ = store.list("events", "default", field_selector="involvedObject.name=p,reason=FailedScheduling")
    assert len(events) == 1 and events[0]["type"] == "Warning"

    # The broken node recovers: a node change makes the scheduler try again.
    await store.mutate(
        "nodes",
        None,
        "down",
        lambda n: {**n, "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now()}]}},
        subresource="status",
    )
    pod = await until(lambda: (p := pod_of(server, "p"))["spec"].get("nodeName") and scheduled_condition(p) and p)
    assert pod["spec"]["nodeName"] == "down"
    assert scheduled_condition(pod)["status"] == "True"  # type: ignore[index]
    assert "observedGeneration" not in scheduled_condition(pod)  # type: ignore[operator]


async def test_a_new_node_retries_unschedulable_pods(server: SandboxAPIServer) -> None:
    """Pods left Unschedulable because no node exists are bound as soon as a node registers."""
    store = server.store
    for i in range(3):
        store.create_now("pods", make_pod(f"p{i}"))
    for i in range(3):
        cond = await until(lambda i=i: scheduled_condition(pod_of(server, f"p{i}")))  # type: ignore[misc]
        assert cond["message"] == "no nodes available to schedule pods"
    store.create_now("nodes", make_node("late"))
    for i in range(3):
        await until(lambda i=i: pod_of(server, f"p{i}")["spec"].get("nodeName") == "late")  # type: ignore[misc]


async def test_leaves_other_schedulers_and_deleting_pods_alone(server: SandboxAPIServer) -> None:
    """Pods for another scheduler, or being deleted, are never bound; a marker pod proves the scheduler ran."""
    store = server.store
    held = make_pod("deleting")
    held["metadata"]["finalizers"] = ["test.example/hold"]
    store.create_now("pods", held)
    store.delete_now("pods", "default", "deleting")
    assert pod_of(server, "deleting")["metadata"].get("deletionTimestamp")
    store.create_now("pods", make_pod("mine-not", schedulerName="other-scheduler"))
    store.create_now("nodes", make_node("n"))
    store.create_now("pods", make_pod("marker"))
    await until(lambda: pod_of(server, "marker")["spec"].get("nodeName"))
    for name in ("mine-not", "deleting"):
        assert "nodeName" not in pod_of(server, name)["spec"]
    assert scheduled_condition(pod_of(server, "mine-not")) is None


async def test_spreads_pods_over_fitting_nodes(server: SandboxAPIServer) -> None:
    """Among fitting nodes the least loaded one is chosen, so a burst spreads out."""
    store = server.store
    store.create_now("nodes", make_node("a"))
    store.create_now("nodes", make_node("b"))
    for i in range(6):
        store.create_now("pods", make_pod(f"p{i}"))
    await until(lambda: all(pod_of(server, f"p{i}")["spec"].get("nodeName") for i in range(6)))
    counts: dict[str, int] = {}
    for i in range(6):
        node = pod_of(server, f"p{i}")["spec"]["nodeName"]
        counts[node] = counts.get(node, 0) + 1
    assert counts == {"a": 3, "b": 3}


async def test_adding_a_toleration_retries_an_unschedulable_pod(server: SandboxAPIServer) -> None:
    """A pod blocked by a taint is bound once a matching toleration is added to its spec."""
    store = server.store
    store.create_now(
        "nodes",
        make_node("vk", taints=[{"key": "virtual-kubelet.io/provider", "value": "eci", "effect": "NoSchedule"}]),
    )
    store.create_now("pods", make_pod("p"))
    await until(lambda: scheduled_condition(pod_of(server, "p")))

    def tolerate(pod: dict[str, Any]) -> dict[str, Any]:
        pod["spec"]["tolerations"] = [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]
        return pod

    await store.mutate("pods", "default", "p", tolerate)
    await until(lambda: pod_of(server, "p")["spec"].get("nodeName") == "vk")


async def test_not_ready_node_takes_only_pods_tolerating_its_taint(server: SandboxAPIServer) -> None:
    """The not-ready taint keeps ordinary pods off a node that is not Ready; a pod tolerating it may land there,
    as on a real cluster."""
    store = server.store
    store.create_now("nodes", make_node("down", ready="False"))
    store.create_now("pods", make_pod("plain"))
    store.create_now(
        "pods", make_pod("tolerant", tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    )
    await until(lambda: pod_of(server, "tolerant")["spec"].get("nodeName") == "down")
    cond = await until(lambda: scheduled_condition(pod_of(server, "plain")))
    assert cond["message"].startswith("0/1 nodes are available: 1 node(s) had untolerated taint(s). ")
    assert not pod_of(server, "plain")["spec"].get("nodeName")
