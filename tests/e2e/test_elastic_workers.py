"""Elastic scheduling as a user meets it: 2 worker nodes x 2 CPU (hollow kubelets on the sandbox tier, kwok on the
real tier), the daemon as a process (`vk-provider run`), the shipped admission webhook called by the API server over
HTTPS, and every user action through the real kubectl: the checks of docs/elastic.md end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NODE, Stack, StackFactory, deployment, running_ready
from tests.e2e.processes import daemon_env, log_line, start_daemon, stop_daemon
from tests.kubectl import Kubectl
from tests.waiting import eventually
from vk_provider.elastic.profiles import ANNOTATION_RULE
from vk_sandbox.apiserver.workers import WorkerSpec
from vk_sandbox.up import WEBHOOK_CONFIGURATION, elastic_webhook_configuration

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

WORKERS = WorkerSpec(count=2, cpu="2", memory="8Gi", pods=50)
COST = "controller.kubernetes.io/pod-deletion-cost"
UNREACHABLE = 9  # the webhook's URL until the daemon says which port it bound: a refused connection, ignored


def _pod(name: str, cpu: str = "500m", **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "busybox",
        "command": ["sleep", "3600"],
        "resources": {"requests": {"cpu": cpu}},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container], **spec}}


def _deployment(name: str, replicas: int, cpu: str) -> dict[str, Any]:
    return deployment(name, replicas, _pod(name, cpu)["spec"])


@dataclass
class Cluster:
    """What a user has: kubectl on the cluster, and the daemon's process beside it."""

    stack: Stack
    kubectl: Kubectl
    proc: asyncio.subprocess.Process

    async def apply(self, obj: dict[str, Any], ns: str) -> None:
        await self.kubectl.ok("apply", "-n", ns, "-f", "-", stdin=json.dumps(obj).encode())

    async def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(await self.kubectl.ok("get", *args, "-o", "json")))

    async def events(self, ns: str, reason: str) -> dict[str, list[str]]:
        """The messages of this reason's events in ``ns``, by pod name."""
        listing = await self.get("events", "-n", ns, "--field-selector", f"reason={reason}")
        out: dict[str, list[str]] = {}
        for e in listing["items"]:
            out.setdefault(e["involvedObject"]["name"], []).extend([e["message"]] * int(e.get("count") or 1))
        return out

    async def namespace(self, name: str, mode: str) -> None:
        """`kubectl create namespace` and `kubectl label` as docs/elastic.md says, then wait until a pod created
        there is routed by the webhook (a server-side dry run, which calls it): the API server has taken the new
        webhook configuration and the daemon's watch has the label."""
        await self.kubectl.ok("create", "namespace", name)
        await self.kubectl.ok("label", "namespace", name, f"vk-eci.io/mode={mode}")
        probe = json.dumps(_pod("probe")).encode()

        async def routed() -> bool:
            rc, out, _ = await self.kubectl.run(
                "create", "-n", name, "--dry-run=server", "-o", "json", "-f", "-", stdin=probe
            )
            return rc == 0 and ANNOTATION_RULE in (json.loads(out)["metadata"].get("annotations") or {})

        await eventually(routed, timeout=30, interval=0.3, what=f"pods in {name} routed by the webhook")

    async def stop_daemon(self) -> None:
        """SIGTERM: a graceful stop, exit code 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0


@contextlib.asynccontextmanager
async def cluster(
    make_stack: StackFactory, tmp_path: Path, kubectl_env: dict[str, str], **settings: Any
) -> AsyncIterator[Cluster]:
    """Worker nodes, the shipped webhook configuration, and `vk-provider run` (webhook on port 0). The daemon writes
    its CA into the configuration at start; the test then points the URL at the port the daemon's log names."""
    stack = await make_stack(workers=WORKERS, daemon=False)
    kubectl = Kubectl(kubectl_env, stack.apiserver.kubeconfig_path)
    await kubectl.ok("create", "-f", "-", stdin=json.dumps(elastic_webhook_configuration(UNREACHABLE)).encode())
    log = tmp_path / "daemon.log"
    proc = await start_daemon(daemon_env(stack, tmp_path, **{"elastic.webhook_port": 0, **settings}), log)
    try:
        port = int((await log_line(proc, log, "admission webhook listening"))["port"])
        await log_line(proc, log, "daemon started")
        mwc = f"mutatingwebhookconfiguration/{WEBHOOK_CONFIGURATION}"
        assert await kubectl.ok("get", mwc, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
        url = [
            {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": f"https://127.0.0.1:{port}/mutate-pods"}
        ]
        await kubectl.ok("patch", mwc, "--type=json", "-p", json.dumps(url))
        yield Cluster(stack, kubectl, proc)
    finally:
        await stop_daemon(proc)


async def test_a_deployment_bursts_past_the_workers_and_scales_in_serverless_first(
    make_stack: StackFactory, tmp_path: Path, kubectl_env: dict[str, str]
) -> None:
    """20 x 500m on 2 x 2 CPU in a burst namespace: 8 run on the workers, 12 on the virtual node, each of those with
    one BurstToServerless event quoting the scheduler; a hostPath pod there stays Pending with BurstSkipped; scaled to
    6, the ReplicaSet picks every serverless pod before any worker pod (their deletion cost is lower): the 14 it
    deletes are the 12 serverless pods and 2 worker pods. (It deletes the ones it picked concurrently, so the order
    of the deletions within one scale-in says nothing.)"""
    async with cluster(make_stack, tmp_path, kubectl_env) as c:
        await c.namespace("shop", "burst")
        await c.apply(_deployment("web", 20, "500m"), "shop")
        await c.kubectl.ok("rollout", "status", "-n", "shop", "deployment/web", "--timeout=60s", timeout=70)
        pods = (await c.get("pods", "-n", "shop"))["items"]
        assert len(pods) == 20 and all(running_ready(p) for p in pods)
        serverless = sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == NODE)
        on_workers = sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] != NODE)
        assert (len(on_workers), len(serverless)) == (8, 12)
        for p in pods:  # the webhook marked every pod; only the burst ones carry the low deletion cost
            annotations = p["metadata"]["annotations"]
            assert annotations[ANNOTATION_RULE] == "burst-namespaces"
            assert annotations.get(COST) == ("-1000" if p["spec"]["nodeName"] == NODE else None)

        async def one_event_each() -> dict[str, list[str]] | None:
            events = await c.events("shop", "BurstToServerless")
            return events if set(events) >= set(serverless) else None

        events = await eventually(one_event_each, timeout=10, interval=0.3, what="BurstToServerless on each")
        assert sorted(events) == serverless
        for name in serverless:  # once each (the real tier's watch once made pods due again after their binding)
            assert len(events[name]) == 1 and "Insufficient cpu" in events[name][0], (name, events[name])

        # A pod the backend would refuse (hostPath), and too big for any worker: it stays Pending, saying why.
        host = _pod("host", "3", volumes=[{"name": "h", "hostPath": {"path": "/var/log"}}])
        await c.apply(host, "shop")

        async def skipped() -> list[str] | None:
            return (await c.events("shop", "BurstSkipped")).get("host")

        messages = await eventually(skipped, timeout=15, interval=0.3, what="BurstSkipped on the hostPath pod")
        assert len(messages) == 1 and "hostPath" in messages[0], messages
        pod = await c.get("pod", "-n", "shop", "host")
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")

        # Scale in with kubectl, watching the deletions in the order the ReplicaSet makes them.
        listing = await c.stack.kube.get("/api/v1/namespaces/shop/pods", query={"labelSelector": "app=web"})
        order: list[str] = []

        async def watch() -> None:
            query = {
                "watch": "true",
                "labelSelector": "app=web",
                "resourceVersion": listing["metadata"]["resourceVersion"],
                "timeoutSeconds": 60,
            }
            async for event in c.stack.kube.watch_lines("/api/v1/namespaces/shop/pods", query, timeout=70):
                pod = event["object"]
                name = pod["metadata"]["name"]
                if (pod["metadata"].get("deletionTimestamp") or event["type"] == "DELETED") and name not in order:
                    order.append(name)

        watching = asyncio.ensure_future(watch())
        try:
            await c.kubectl.ok("scale", "-n", "shop", "deployment/web", "--replicas=6")
            await eventually(lambda: len(order) >= 14, timeout=60, interval=0.2, what="14 pods deleted")
        finally:
            watching.cancel()
        deleted = set(order[:14])
        assert set(serverless) <= deleted, f"serverless pods left: {sorted(set(serverless) - deleted)}"
        assert len(deleted & set(on_workers)) == 2, f"deleted: {order}"


async def test_a_serverless_namespace_goes_to_the_virtual_node_and_a_stopped_daemon_blocks_nothing(
    make_stack: StackFactory, tmp_path: Path, kubectl_env: dict[str, str]
) -> None:
    """The webhook (the API server trusting the caBundle the daemon wrote) adds the virtual node's selector and
    toleration to every pod, a user's and a Deployment's; the scheduler then places them there although the workers
    have room, and no burst happens. With the daemon stopped, pods are still created (failurePolicy Ignore) and
    scheduled to the workers."""
    async with cluster(make_stack, tmp_path, kubectl_env) as c:
        await c.namespace("fn", "serverless")
        await c.apply(_pod("a", "100m"), "fn")
        await c.apply(_deployment("api", 3, "100m"), "fn")
        await c.kubectl.ok("wait", "-n", "fn", "--for=condition=Ready", "pod/a", "--timeout=30s", timeout=40)
        await c.kubectl.ok("rollout", "status", "-n", "fn", "deployment/api", "--timeout=30s", timeout=40)
        pods = (await c.get("pods", "-n", "fn"))["items"]
        assert len(pods) == 4
        for pod in pods:
            assert pod["spec"]["nodeName"] == NODE
            assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": NODE}
            assert pod["metadata"]["annotations"][ANNOTATION_RULE] == "serverless-namespaces"
        assert not (await c.events("fn", "BurstToServerless"))

        await c.stop_daemon()
        await c.apply(_pod("b", "100m"), "fn")

        async def placed() -> dict[str, Any] | None:
            pod = await c.get("pod", "-n", "fn", "b")
            return pod if pod["spec"].get("nodeName") else None

        pod = await eventually(placed, timeout=30, interval=0.3, what="pod b scheduled")
        assert pod["spec"]["nodeName"] != NODE
        assert "nodeSelector" not in pod["spec"] and ANNOTATION_RULE not in (pod["metadata"].get("annotations") or {})


async def test_a_rule_with_max_5_stops_at_5_and_a_changed_profile_file_is_taken_without_a_restart(
    make_stack: StackFactory, tmp_path: Path, kubectl_env: dict[str, str]
) -> None:
    """The profile in the daemon's settings file (as the shipped ConfigMap mounts it): pods that fit nowhere under a
    rule with max.pods 5: five burst, the other three stay Pending with one BurstSkipped each naming the limit. The
    file is then replaced (as the kubelet swaps a ConfigMap's files) with max.pods 6: the running daemon takes it and
    one more pod bursts."""
    config = tmp_path / "vk-eci.yaml"

    def write_profile(pods: int) -> None:
        rule = {
            "name": "capped",
            "mode": "burst",
            "namespaceSelector": {"matchLabels": {"vk-eci.io/mode": "capped"}},
            "max": {"pods": pods},
        }
        (tmp_path / "next.yaml").write_text(json.dumps({"elastic": {"rules": [rule]}}))  # JSON is YAML
        os.replace(tmp_path / "next.yaml", config)

    async def on_the_node() -> tuple[list[str], list[str]]:
        pods = (await c.get("pods", "-n", "a"))["items"]
        bound = sorted(p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") == NODE)
        return bound, sorted(p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName"))

    async def bound(count: int) -> bool:
        return len((await on_the_node())[0]) == count

    write_profile(5)
    async with cluster(make_stack, tmp_path, kubectl_env, config_file=str(config)) as c:
        await c.namespace("a", "capped")
        for i in range(8):
            await c.apply(_pod(f"big-{i}", "3"), "a")
        await eventually(lambda: bound(5), timeout=30, interval=0.3, what="5 pods on the virtual node")
        _, pending = await on_the_node()
        assert len(pending) == 3

        async def skipped() -> dict[str, list[str]] | None:
            events = await c.events("a", "BurstSkipped")
            return events if set(events) >= set(pending) else None

        events = await eventually(skipped, timeout=15, interval=0.3, what="BurstSkipped on the 3 pending pods")
        assert sorted(events) == pending
        assert all(len(m) == 1 and "max pods 5" in m[0] for m in events.values()), events
        assert len((await on_the_node())[0]) == 5  # still: the skips were decided, not a moment before a sixth

        write_profile(6)
        await eventually(lambda: bound(6), timeout=30, interval=0.3, what="a sixth pod on the virtual node")


def test_the_sandbox_registers_the_shipped_webhook() -> None:
    """`make run`'s registration is manifests/webhook.yaml's, but for the clientConfig (a URL instead of a Service)."""
    from tests.e2e.test_manifests import shipped

    ours = elastic_webhook_configuration(9443)["webhooks"][0]
    theirs = shipped("MutatingWebhookConfiguration", "vk-eci")["webhooks"][0]
    assert {k: v for k, v in ours.items() if k != "clientConfig"} == {
        k: v for k, v in theirs.items() if k != "clientConfig"
    }
    assert theirs["clientConfig"]["service"]["path"] == "/mutate-pods"
