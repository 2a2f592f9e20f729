"""Unit tests of the scheduler's filters, scoring and FitError message (controllers/placement.py)."""

from __future__ import annotations

from typing import Any

from vk_sandbox.apiserver.controllers.placement import Cluster


def node(
    name: str,
    *,
    cpu: str | None = "2",
    memory: str = "4Gi",
    pods: int = 20,
    labels: dict[str, str] | None = None,
    ready: str = "True",
    **spec: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": ready}]}
    if cpu is not None:
        status["allocatable"] = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": status,
    }


_rv = iter(range(1, 1_000_000))


def pod(name: str, cpu: str = "", *, node_name: str = "", labels: dict[str, str] | None = None, **spec: Any) -> Any:
    requests = {"cpu": cpu} if cpu else {}
    p: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}, "resourceVersion": str(next(_rv))},
        "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}], **spec},
        "status": {"phase": "Pending"},
    }
    if node_name:
        p["spec"]["nodeName"] = node_name
        p["status"]["phase"] = "Running"
    return p


def cluster(*nodes: dict[str, Any]) -> Cluster:
    c = Cluster()
    for n in nodes:
        c.set_node(n)
    return c


def test_requests_fill_nodes_then_the_real_message() -> None:
    """Four 500m pods fit a 2-CPU node; the fifth gets "Insufficient cpu" and the preemption part."""
    c = cluster(node("w1"))
    for i in range(4):
        name, message = c.place(pod(f"p{i}", "500m"))
        assert (name, message) == ("w1", "")
        c.set_pod(pod(f"p{i}", "500m", node_name="w1"))
    assert c.place(pod("p4", "500m")) == (
        None,
        "0/1 nodes are available: 1 Insufficient cpu. no new claims to deallocate, "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
    )
    # A finished pod frees its share; True says "retry the unschedulable ones".
    done = pod("p0", "500m", node_name="w1")
    done["status"]["phase"] = "Succeeded"
    done["metadata"]["resourceVersion"] = str(next(_rv))
    assert c.set_pod(done) is True
    assert c.place(pod("p4", "500m"))[0] == "w1"


def test_message_mixes_unresolvable_and_resource_reasons() -> None:
    """Taints and selectors are not helped by preemption; counts are per reason, sorted as strings."""
    c = cluster(
        node("a", taints=[{"key": "vk", "value": "eci", "effect": "NoSchedule"}]),
        node("b", ready="False", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
        node("c", cpu="100m"),
        node("d", pods=0),
    )
    assert c.place(pod("p", "500m")) == (
        None,
        "0/4 nodes are available: 1 Insufficient cpu, 1 Too many pods, 2 node(s) had untolerated taint(s). "
        "no new claims to deallocate, preemption: 0/4 nodes are available: "
        "2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
    )
    assert c.place(pod("p", "500m", tolerations=[{"key": "vk", "operator": "Exists"}]))[0] == "a"
    assert Cluster().place(pod("p")) == (None, "no nodes available to schedule pods")


def test_extended_resources_and_nodes_without_resources() -> None:
    """A GPU request needs a node offering GPUs; a node reporting no resources at all is unlimited."""
    gpu = node("gpu")
    gpu["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    c = cluster(node("plain"), gpu)
    wants_gpu = pod("p")
    wants_gpu["spec"]["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    assert c.place(wants_gpu)[0] == "gpu"
    c.set_pod({**wants_gpu, "spec": {**wants_gpu["spec"], "nodeName": "gpu"}})
    assert c.place(wants_gpu)[1].startswith("0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    assert cluster(node("virtual", cpu=None)).place(pod("big", "1000"))[0] == "virtual"


def test_least_allocated_node_wins_and_preferred_affinity_counts() -> None:
    c = cluster(node("a"), node("b"))
    c.set_pod(pod("x", "1", node_name="a"))
    assert c.place(pod("p", "100m"))[0] == "b"
    prefers_a = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
                }
            ]
        }
    }
    c = cluster(node("a", labels={"zone": "z1"}), node("b"))
    c.set_pod(pod("x", "500m", node_name="a"))
    assert c.place(pod("p", "100m", affinity=prefers_a))[0] == "a"


def test_required_pod_anti_affinity_on_hostname() -> None:
    """One replica per node: the third finds both nodes taken, by its own rule or by the existing pods' rule."""
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }
    c = cluster(node("a"), node("b"))
    first = pod("w1", labels={"app": "web"}, affinity=anti)
    assert c.place(first)[0] == "a"
    c.set_pod({**first, "spec": {**first["spec"], "nodeName": "a"}})
    assert c.place(pod("w2", labels={"app": "web"}, affinity=anti))[0] == "b"
    c.set_pod(pod("w2", node_name="b", labels={"app": "web"}, affinity=anti))
    assert c.place(pod("w3", labels={"app": "web"}, affinity=anti)) == (
        None,
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules. "
        "no new claims to deallocate, preemption: 0/2 nodes are available: 2 No preemption victims found for incoming "
        "pod.",
    )
    # A pod without the rule is still kept off by the existing pods' rule only if it matches their selector.
    assert c.place(pod("other", labels={"app": "db"}))[0] in ("a", "b")
    assert c.place(pod("web-plain", labels={"app": "web"}))[0] is None
