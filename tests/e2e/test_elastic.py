"""Elastic scheduling without worker nodes, on either tier: the scheduler marks pods Unschedulable (no node fits but
the tainted virtual node), the burst controller binds the burst ones to the virtual node, the daemon runs them; the
webhook's certificate lands in its Secret."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import NODE, Stack, StackFactory, running_ready
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

SPEC = {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}


async def _namespace(stack: Stack, name: str, mode: str | None) -> None:
    labels = {"vk-eci.io/mode": mode} if mode else {}
    await stack.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )


async def _pending_pod(stack: Stack, name: str, ns: str, **spec: Any) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {**SPEC, **spec}}
    await stack.kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)


async def test_an_unschedulable_pod_in_a_burst_namespace_runs_on_the_virtual_node(make_stack: StackFactory) -> None:
    """No worker fits: the scheduler says Unschedulable, the burst controller binds the pod to the virtual node
    with a low deletion cost, adds its toleration, and says so in a BurstToServerless event quoting the reason."""
    stack = await make_stack()
    await _namespace(stack, "burst", "burst")
    await _pending_pod(stack, "web", "burst")
    pod = await stack.wait_pod("web", running_ready, ns="burst", timeout=30)
    assert pod is not None
    assert pod["spec"]["nodeName"] == NODE
    assert pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "-1000"
    assert pod["metadata"]["annotations"]["vk-eci.io/elastic-rule"] == "burst-namespaces"
    event = await stack.wait_event("web", "BurstToServerless", ns="burst")
    assert "nodes are available" in event["message"]
    # The toleration is patched after the binding, before the Event.
    pod = await stack.pod("web", "burst")
    assert pod is not None
    assert any(t.get("key") == "virtual-kubelet.io/provider" for t in pod["spec"]["tolerations"])


async def test_a_pod_the_translator_refuses_stays_pending_with_burst_skipped(make_stack: StackFactory) -> None:
    """A hostPath pod in a burst namespace is not moved: one Warning BurstSkipped with the translator's reason."""
    stack = await make_stack()
    await _namespace(stack, "burst", "burst")
    await _pending_pod(
        stack,
        "host",
        "burst",
        volumes=[{"name": "h", "hostPath": {"path": "/var/log"}}],
    )
    event = await stack.wait_event("host", "BurstSkipped", ns="burst", contains="hostPath")
    assert event["type"] == "Warning"
    pod = await stack.pod("host", "burst")
    assert pod is not None and not pod["spec"].get("nodeName")


async def test_pods_outside_the_profile_are_left_alone(make_stack: StackFactory) -> None:
    """A namespace without the mode label: the pod stays Pending, untouched (nothing changes by default)."""
    stack = await make_stack()
    await _namespace(stack, "plain", None)
    await _pending_pod(stack, "p", "plain")
    await _pending_pod(stack, "opt-in", "plain")  # a control that does burst, so the wait below is not blind
    await stack.kube.request(
        "PATCH",
        "/api/v1/namespaces/plain/pods/opt-in",
        body={"metadata": {"labels": {"vk-eci.io/burst": "true"}}},
        content_type="application/merge-patch+json",
    )
    await stack.wait_event("opt-in", "BurstToServerless", ns="plain")
    pod = await stack.pod("p", "plain")
    assert pod is not None and not pod["spec"].get("nodeName")
    assert "annotations" not in pod["metadata"] or "vk-eci.io/elastic-rule" not in pod["metadata"]["annotations"]


async def test_a_rule_limit_stops_bursting_at_max(make_stack: StackFactory) -> None:
    """max.pods 2: two pods burst, the third stays Pending with a BurstSkipped naming the rule's limit."""
    rules = [
        {"name": "capped", "mode": "burst", "namespaceSelector": {"matchLabels": {"team": "a"}}, "max": {"pods": 2}}
    ]
    stack = await make_stack(**{"elastic.rules": rules})
    await stack.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"team": "a"}}},
    )
    for i in range(3):
        await _pending_pod(stack, f"p{i}", "a")

    async def one_skipped() -> bool:
        for i in range(3):
            if any(
                e.get("reason") == "BurstSkipped" and "max pods 2" in e["message"]
                for e in await stack.events(f"p{i}", "a")
            ):
                return True
        return False

    await eventually(one_skipped, timeout=30, interval=0.1, what="a BurstSkipped naming max pods 2")
    bound = [p for p in [await stack.pod(f"p{i}", "a") for i in range(3)] if p and p["spec"].get("nodeName") == NODE]
    assert len(bound) == 2


async def test_the_webhook_serves_with_the_certificate_kept_in_its_secret(make_stack: StackFactory) -> None:
    """The daemon issued a CA and serving certificate into its Secret, and the webhook's TLS verifies with that CA
    and answers an AdmissionReview of a serverless pod with a patch."""
    stack = await make_stack()
    await _namespace(stack, "vk-eci", None)
    assert stack.daemon is not None
    # The Secret is written at start; the namespace did not exist then, so restart the component's cert step.
    elastic = stack.daemon.elastic
    assert elastic is not None
    from vk_provider.elastic.certs import WebhookCertificates

    material = await WebhookCertificates(stack.kube, elastic.settings).ensure()
    secret = await stack.kube.get("/api/v1/namespaces/vk-eci/secrets/vk-eci-webhook-tls")
    assert base64.b64decode(secret["data"]["ca.crt"]) == material.ca_pem
    again = await WebhookCertificates(stack.kube, elastic.settings).ensure()
    assert again.cert_pem == material.cert_pem, "a valid certificate in the Secret is reused"

    ctx = ssl.create_default_context(cadata=material.ca_pem.decode())
    await elastic.webhook.stop()
    from vk_provider.elastic.certs import ssl_context

    await elastic.webhook.start(ssl_context(material))
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "namespace": "x",
            "object": {"metadata": {"name": "s", "labels": {"alibabacloud.com/eci": "true"}}, "spec": SPEC},
        },
    }
    async with aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{elastic.webhook.port}/mutate-pods"
        async with session.post(url, json=review, ssl=ctx) as resp:
            answer = await resp.json()
    assert answer["response"]["uid"] == "u1" and answer["response"]["allowed"] is True
    assert answer["response"]["patchType"] == "JSONPatch"
