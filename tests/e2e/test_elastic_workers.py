"""Elastic scheduling with worker nodes (2 x 2 CPU: hollow kubelets on the sandbox tier, kwok on the real tier), the
scheduler filling them, the ReplicaSet's scale-in ranking and the admission webhook called by the API server over
HTTPS: the checks of docs/elastic.md end to end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import NODE, Stack, StackFactory, free_port, running_ready
from tests.waiting import eventually
from vk_provider.app import Daemon
from vk_sandbox.apiserver.workers import WorkerSpec
from vk_sandbox.up import elastic_webhook_configuration

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

WORKERS = WorkerSpec(count=2, cpu="2", memory="8Gi", pods=50)
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def _container(cpu: str = "500m") -> dict[str, Any]:
    return {"name": "main", "image": "busybox", "command": ["sleep", "3600"], "resources": {"requests": {"cpu": cpu}}}


async def _namespace(stack: Stack, name: str, labels: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    await stack.create("/api/v1/namespaces", body)


async def _register_webhook(stack: Stack, port: int) -> None:
    """The shipped webhook as `make run`'s sandbox registers it (by URL: the sandbox has no pod network)."""
    await stack.create(MWC, elastic_webhook_configuration(port))


@contextlib.asynccontextmanager
async def _daemon(stack: Stack) -> AsyncIterator[Daemon]:
    daemon = Daemon(stack.settings)
    try:
        await daemon.start()
        await daemon.wait_ready(timeout=30)
        yield daemon
    finally:
        await daemon.stop()


async def _pods(stack: Stack, ns: str) -> list[dict[str, Any]]:
    return list((await stack.kube.get(f"/api/v1/namespaces/{ns}/pods")).get("items") or [])


async def test_a_deployment_bursts_past_the_workers_and_scales_in_serverless_first(make_stack: StackFactory) -> None:
    """20 x 500m on 2 x 2 CPU: 8 run on the workers, 12 on the virtual node each with BurstToServerless; scaled to 6,
    the ReplicaSet picks every serverless pod before any worker pod (their deletion cost is lower): the 14 it deletes
    are the 12 serverless pods and 2 worker pods. (It deletes the ones it picked concurrently, so the order of the
    deletions within one scale-in says nothing.)"""
    stack = await make_stack(workers=WORKERS, **{"elastic.webhook_port": free_port()})
    await _namespace(stack, "shop", {"vk-eci.io/mode": "burst"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 20,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container()]}},
        },
    }
    await stack.create("/apis/apps/v1/namespaces/shop/deployments", deployment)

    async def all_ready() -> list[dict[str, Any]] | None:
        pods = await _pods(stack, "shop")
        return pods if len(pods) == 20 and all(running_ready(p) for p in pods) else None

    pods = await eventually(all_ready, timeout=60, interval=0.2, what="20 pods Running and Ready")
    serverless = sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == NODE)
    on_workers = sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] != NODE)
    assert (len(on_workers), len(serverless)) == (8, 12)
    for name in serverless:
        event = await stack.wait_event(name, "BurstToServerless", ns="shop", timeout=10)
        assert "Insufficient cpu" in event["message"]
    for name in serverless:  # burst once each (the real tier's watch once made some pods due again after binding)
        bursts = [e for e in await stack.events(name, "shop") if e.get("reason") == "BurstToServerless"]
        assert [e.get("count") or 1 for e in bursts] == [1], f"{name}: {bursts}"

    # Watch the deletions in the order the ReplicaSet makes them.
    listing = await stack.kube.get("/api/v1/namespaces/shop/pods")
    order: list[str] = []

    async def watch() -> None:
        query = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"], "timeoutSeconds": 60}
        async for event in stack.kube.watch_lines("/api/v1/namespaces/shop/pods", query, timeout=70):
            pod = event["object"]
            name = pod["metadata"]["name"]
            if (pod["metadata"].get("deletionTimestamp") or event["type"] == "DELETED") and name not in order:
                order.append(name)

    watching = asyncio.ensure_future(watch())
    try:
        await stack.kube.request(
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            body={"spec": {"replicas": 6}},
            content_type="application/merge-patch+json",
        )

        async def fourteen_gone() -> bool:
            return len(order) >= 14

        await eventually(fourteen_gone, timeout=60, interval=0.2, what="14 pods deleted")
    finally:
        watching.cancel()
    deleted = set(order[:14])
    assert set(serverless) <= deleted, f"serverless pods left: {sorted(set(serverless) - deleted)}"
    assert len(deleted & set(on_workers)) == 2, f"deleted: {order}"


async def test_a_serverless_namespace_sends_pods_to_the_virtual_node_through_the_webhook(
    make_stack: StackFactory,
) -> None:
    """The webhook (called by the API server over HTTPS, trusting the caBundle the daemon wrote) adds the virtual
    node's selector and toleration; the scheduler then places the pod there although the workers have room. With the
    daemon stopped, pods are still created (failurePolicy Ignore) and scheduled to the workers."""
    port = free_port()
    stack = await make_stack(workers=WORKERS, daemon=False, **{"elastic.webhook_port": port})
    await _register_webhook(stack, port)
    await _namespace(stack, "fn", {"vk-eci.io/mode": "serverless"})
    plain = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [_container("100m")]}}
    async with _daemon(stack) as daemon:
        elastic = daemon.elastic
        assert elastic is not None
        # The leader publishes the CA once elected and serving (after the node is Ready): wait for it.
        await eventually(lambda: elastic.ca_published, timeout=20, what="the caBundle published")
        mwc = await stack.kube.get(f"{MWC}/vk-eci")
        assert mwc["webhooks"][0]["clientConfig"]["caBundle"]
        await stack.kube.request("POST", "/api/v1/namespaces/fn/pods", body={**plain, "metadata": {"name": "a"}})
        pod = await stack.wait_pod("a", running_ready, ns="fn", timeout=30)
        assert pod is not None and pod["spec"]["nodeName"] == NODE
        assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": NODE}
        assert pod["metadata"]["annotations"]["vk-eci.io/elastic-rule"] == "serverless-namespaces"
        assert not [e for e in await stack.events("a", "fn") if e.get("reason") == "BurstToServerless"]

    await stack.kube.request("POST", "/api/v1/namespaces/fn/pods", body={**plain, "metadata": {"name": "b"}})
    pod = await stack.wait_pod("b", lambda p: bool(p and p["spec"].get("nodeName")), ns="fn", timeout=30)
    assert pod is not None and pod["spec"]["nodeName"] != NODE and "nodeSelector" not in pod["spec"]


async def test_a_rule_with_max_5_stops_at_5(make_stack: StackFactory) -> None:
    """Pods that fit nowhere under a rule with max.pods 5: five burst, the rest stay Pending with BurstSkipped."""
    rules = [
        {"name": "capped", "mode": "burst", "namespaceSelector": {"matchLabels": {"team": "a"}}, "max": {"pods": 5}}
    ]
    stack = await make_stack(workers=WORKERS, **{"elastic.rules": rules, "elastic.webhook_port": free_port()})
    await _namespace(stack, "a", {"team": "a"})
    for i in range(8):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"big-{i}"},
            "spec": {"containers": [_container("3")]},
        }
        await stack.kube.request("POST", "/api/v1/namespaces/a/pods", body=pod)

    async def settled() -> list[dict[str, Any]] | None:
        pods = await _pods(stack, "a")
        bound = [p for p in pods if p["spec"].get("nodeName") == NODE]
        return pods if len(bound) == 5 else None

    pods = await eventually(settled, timeout=30, interval=0.2, what="5 pods on the virtual node")
    pending = [p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName")]
    assert len(pending) == 3
    for name in pending:
        await stack.wait_event(name, "BurstSkipped", ns="a", contains="max pods 5", timeout=10)


def test_the_sandbox_registers_the_shipped_webhook() -> None:
    """`make run`'s registration is manifests/webhook.yaml's, but for the clientConfig (a URL instead of a Service)."""
    from tests.e2e.test_manifests import shipped

    ours = elastic_webhook_configuration(9443)["webhooks"][0]
    theirs = shipped("MutatingWebhookConfiguration", "vk-eci")["webhooks"][0]
    assert {k: v for k, v in ours.items() if k != "clientConfig"} == {
        k: v for k, v in theirs.items() if k != "clientConfig"
    }
    assert theirs["clientConfig"]["service"]["path"] == "/mutate-pods"
