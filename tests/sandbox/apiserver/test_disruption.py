"""PodDisruptionBudgets: the disruption controller's status and the eviction subresource's 429."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.sandbox.apiserver.conftest import Kubectl, until
from vk_sandbox.apiserver.budgets import PDB, budget_status
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.store import Store
from vk_sandbox.apiserver.workers import WorkerSpec

REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api", workers=WorkerSpec(count=2)) as srv:
        yield srv


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }


def pdb(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }


def ready_pods(srv: SandboxAPIServer) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in srv.store.all_objects("pods")
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    )


def status(srv: SandboxAPIServer) -> dict[str, Any]:
    got = srv.store.get(PDB, "default", "web")
    return (got or {}).get("status") or {}


def _client(srv: SandboxAPIServer) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(srv.kubeconfig_path), client_configuration=cfg)
    return kubernetes.client.ApiClient(cfg)


def evict(srv: SandboxAPIServer, name: str) -> tuple[int, dict[str, Any]]:
    """POST pods/NAME/eviction with the official client: (HTTP status, body)."""
    with _client(srv) as api:
        body = kubernetes.client.V1Eviction(metadata=kubernetes.client.V1ObjectMeta(name=name, namespace="default"))
        try:
            kubernetes.client.CoreV1Api(api).create_namespaced_pod_eviction(name, "default", body)
        except kubernetes.client.ApiException as exc:
            return int(exc.status), json.loads(exc.body)
        return 201, {}


async def test_budget_that_allows_nothing_answers_429(cluster: SandboxAPIServer, kubectl_env: dict[str, str]) -> None:
    kc = Kubectl(kubectl_env, cluster.kubeconfig_path)
    await kc.ok("apply", "-f", "-", stdin=json.dumps(deployment(3)).encode())
    await until(lambda: len(ready_pods(cluster)) == 3, what="3 ready")
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pdb(minAvailable=3)).encode())
    await until(lambda: status(cluster).get("currentHealthy") == 3, what="pdb status")
    st = status(cluster)
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 3, 0)
    assert st["conditions"][0]["type"] == "DisruptionAllowed" and st["conditions"][0]["reason"] == "InsufficientPods"
    table = await kc.ok("get", "pdb")
    assert "MIN AVAILABLE" in table and "ALLOWED DISRUPTIONS" in table
    assert table.splitlines()[1].split()[:4] == ["web", "3", "N/A", "0"]

    victim = ready_pods(cluster)[0]
    code, body = await asyncio.to_thread(evict, cluster, victim)
    assert code == 429
    assert body["reason"] == "TooManyRequests" and body["message"] == REFUSED
    assert body["details"]["causes"] == [
        {"reason": "DisruptionBudget", "message": "The disruption budget web needs 3 healthy pods and has 3 currently"}
    ]
    assert cluster.store.get("pods", "default", victim) is not None
    rc, _, err = await kc.run("drain", "sandbox-worker-1", "--ignore-daemonsets", "--timeout=3s", timeout=30)
    assert rc != 0 and REFUSED in err


async def test_budget_with_room_evicts_once_then_refuses(
    cluster: SandboxAPIServer, kubectl_env: dict[str, str]
) -> None:
    """maxUnavailable 1 of 3: one eviction deletes its pod and uses the disruption up; the next one waits."""
    kc = Kubectl(kubectl_env, cluster.kubeconfig_path)
    await kc.ok("apply", "-f", "-", stdin=json.dumps(deployment(3)).encode())
    await until(lambda: len(ready_pods(cluster)) == 3, what="3 ready")
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pdb(maxUnavailable=1)).encode())
    await until(lambda: status(cluster).get("disruptionsAllowed") == 1, what="one disruption allowed")
    first, second = ready_pods(cluster)[:2]
    code, _ = await asyncio.to_thread(evict, cluster, first)
    assert code == 201
    gone = cluster.store.get("pods", "default", first)
    assert gone is None or gone["metadata"].get("deletionTimestamp")
    assert first in status(cluster).get("disruptedPods", {}) or status(cluster)["disruptionsAllowed"] == 0
    code, body = await asyncio.to_thread(evict, cluster, second)
    assert code == 429 and body["message"] == REFUSED
    # The ReplicaSet's replacement becomes ready: the budget has room again.
    await until(lambda: status(cluster).get("disruptionsAllowed") == 1, what="room again")
    code, _ = await asyncio.to_thread(evict, cluster, second)
    assert code == 201


def test_percentages_round_up_and_use_the_controllers_scale() -> None:
    store = Store()
    store.create_now("namespaces", {"metadata": {"name": "default"}})
    rs = store.create_now(
        "replicasets.apps",
        {
            "metadata": {"name": "rs", "namespace": "default"},
            "spec": {
                "replicas": 5,
                "selector": {"matchLabels": {"app": "a"}},
                "template": {
                    "metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
    )
    ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "rs",
        "uid": rs["metadata"]["uid"],
        "controller": True,
    }
    for i in range(3):
        store.create_now(
            "pods",
            {
                "metadata": {"name": f"p{i}", "namespace": "default", "labels": {"app": "a"}, "ownerReferences": [ref]},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        )
        store.mutate_now(
            "pods",
            "default",
            f"p{i}",
            lambda p: {**p, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
            subresource="status",
        )
    budget = {"metadata": {"name": "b", "namespace": "default", "generation": 1}, "spec": {"selector": {}}}
    budget["spec"]["minAvailable"] = "50%"
    st = budget_status(store, budget)
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (5, 3, 3, 0)
    budget["spec"] = {"selector": {}, "maxUnavailable": "30%"}
    st = budget_status(store, budget)
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (5, 3, 0)
    budget["spec"] = {"selector": {}, "minAvailable": 1}
    st = budget_status(store, budget)
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (3, 1, 2)
    budget["spec"] = {"minAvailable": 1}  # no selector: selects nothing
    assert budget_status(store, budget)["expectedPods"] == 0
