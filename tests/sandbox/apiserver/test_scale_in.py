"""ReplicaSet scale-in order: the real ActivePodsWithRanks ranking, pod-deletion-cost included."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.apiserver.conftest import Kubectl, until
from vk_sandbox.apiserver.controllers.replicaset import deletion_cost, pods_to_delete
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.workers import WorkerSpec

NOW = 1_800_000_000.0


def stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def pod(
    name: str,
    *,
    node: str = "n1",
    phase: str = "Running",
    ready_for: float | None = 100,
    cost: str | None = None,
    restarts: int = 0,
    age: float = 1000,
) -> dict[str, Any]:
    conditions = []
    if ready_for is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": stamp(ready_for)})
    else:
        conditions.append({"type": "Ready", "status": "False"})
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": stamp(age),
            "annotations": {"controller.kubernetes.io/pod-deletion-cost": cost} if cost is not None else {},
        },
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": [{"restartCount": restarts}]},
    }


def order(pods: list[dict[str, Any]], related: list[dict[str, Any]] | None = None) -> list[str]:
    return [p["metadata"]["name"] for p in pods_to_delete(pods, related or pods, len(pods), now=NOW)]


def test_rules_in_the_real_order() -> None:
    """Each rule decides only when the ones before it tie."""
    assert order([pod("bound"), pod("unbound", node="")]) == ["unbound", "bound"]
    assert order([pod("run"), pod("unknown", phase="Unknown"), pod("pend", phase="Pending")]) == [
        "pend",
        "unknown",
        "run",
    ]
    assert order([pod("ready"), pod("notready", ready_for=None)]) == ["notready", "ready"]
    # cost beats everything after readiness: the cheap old pod goes before a doubled-up or newer one
    assert order([pod("dear", cost="100"), pod("cheap", cost="-5", age=10_000_000)]) == ["cheap", "dear"]
    assert order([pod("bad", cost="x1"), pod("neg", cost="-1")]) == ["neg", "bad"]  # invalid counts as 0
    # doubled up: the pod sharing its node with more of its owner's pods goes first
    a, b, c = pod("alone", node="n1"), pod("pair-1", node="n2"), pod("pair-2", node="n2", age=10)
    assert order([a, b], related=[a, b, c])[0] == "pair-1"
    # ready for less time first, in powers of two: 100 s vs 10,000 s differ; 100 s vs 101 s tie (then by UID)
    assert order([pod("old-ready", ready_for=10_000), pod("new-ready", ready_for=100)]) == ["new-ready", "old-ready"]
    assert order([pod("b", ready_for=100), pod("a", ready_for=101)]) == ["a", "b"]
    # then restarts, then newer first
    assert order([pod("calm", ready_for=None), pod("flappy", ready_for=None, restarts=3)]) == ["flappy", "calm"]
    assert order([pod("older", ready_for=None, age=100_000), pod("newer", ready_for=None, age=10)]) == [
        "newer",
        "older",
    ]


def test_deletion_cost_parsing() -> None:
    assert deletion_cost(pod("p", cost="42")) == 42
    assert deletion_cost(pod("p", cost=str(2**31))) == 0
    assert deletion_cost(pod("p")) == 0


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api", workers=WorkerSpec(count=2)) as srv:
        yield srv


async def test_kubectl_scale_removes_the_lowest_deletion_cost_first(
    cluster: SandboxAPIServer, kubectl_env: dict[str, str]
) -> None:
    """Five ready replicas with costs 50, 40, 30, 20, 10: scaling to 2 keeps the two dearest."""
    kc = Kubectl(kubectl_env, cluster.kubeconfig_path)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    await kc.ok("apply", "-f", "-", stdin=json.dumps(rs).encode())

    def ready() -> list[str]:
        return sorted(
            p["metadata"]["name"]
            for p in cluster.store.all_objects("pods")
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        )

    names = await until(lambda: len(ready()) == 5 and ready(), what="5 ready pods")
    costs = dict(zip(names, ("50", "40", "30", "20", "10"), strict=True))
    for name, cost in costs.items():
        await kc.ok("annotate", "pod", name, f"controller.kubernetes.io/pod-deletion-cost={cost}")
    await kc.ok("scale", "rs/web", "--replicas=2")
    await until(lambda: len(ready()) == 2, what="scale-in to 2")
    assert ready() == sorted(names[:2])  # the pods with cost 50 and 40
