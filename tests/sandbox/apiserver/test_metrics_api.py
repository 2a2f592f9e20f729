"""metrics.k8s.io (what metrics-server serves): formatting, rates from kubelet scrapes, and kubectl top end to end."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NODE, Stack, StackFactory, make_stack, running_ready  # noqa: F401 (make_stack is a fixture)
from tests.kubectl import Kubectl, mebibytes, millicores, top_rows
from tests.waiting import eventually
from vk_provider.kube.client import KubeError
from vk_provider.kubelet.stats import build_summary, render_resource_metrics
from vk_provider.provider import ContainerUsage, PodUsage
from vk_sandbox.apiserver import metrics_api
from vk_sandbox.apiserver.discovery import aggregated, api_group_list, resource_list
from vk_sandbox.apiserver.metrics_api import (
    NODE as NODE_KEY,
)
from vk_sandbox.apiserver.metrics_api import (
    advance,
    cpu_quantity,
    go_duration,
    memory_quantity,
    parse_resource_metrics,
    summary_rates,
    usages,
)
from vk_sandbox.apiserver.server import SandboxAPIServer

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
PODS = "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"


def test_quantities_and_durations_print_as_go() -> None:
    """CPU is a DecimalSI quantity of nanocores, memory a BinarySI quantity of bytes, windows time.Duration."""
    cpus = {0: "0", 12_345: "12345n", 1_000: "1u", 1_200: "1200n", 250_000_000: "250m", 1_500_000_000: "1500m"}
    cpus |= {2_000_000_000: "2", 12_340_000: "12340u"}
    assert {n: cpu_quantity(n) for n in cpus} == cpus
    mems = {0: "0", 512: "512", 1536: "1536", 2048: "2Ki", 3 * 1024**2: "3Mi", 5 * 1024**3 + 1024: "5242881Ki"}
    assert {n: memory_quantity(n) for n in mems} == mems
    durations = {0: "0s", 15: "15s", 1.5: "1.5s", 60: "1m0s", 3605: "1h0m5s", 0.5: "500ms", 61.25: "1m1.25s"}
    assert {d: go_duration(d) for d in durations} == durations


def _pod(ts: datetime, cpu_ns: int | None, mem: int | None, nano: int | None = None) -> PodUsage:
    c = ContainerUsage("main", T0 - timedelta(minutes=5), ts, nano, cpu_ns, mem)
    return PodUsage("default", "web", "uid-1", T0 - timedelta(minutes=5), ts, [c])


def test_rates_from_two_scrapes_and_summary_on_the_first() -> None:
    """The kubelet's own exposition round-trips: a first scrape takes usageNanoCores from the summary (window
    FIRST_WINDOW); the second is the counter's rate over the two points' timestamps; an unchanged point keeps the
    previous one; a counter reset falls back to the summary again."""
    first = [_pod(T0, 2_000_000_000, 4 * 1024**2, nano=300_000_000)]
    points = parse_resource_metrics(render_resource_metrics(first, T0), T0.timestamp())
    key = ("default", "web", "main")
    assert set(points) == {NODE_KEY, key}
    assert points[key].cpu_seconds == 2.0 and points[key].memory_bytes == 4 * 1024**2
    assert points[key].timestamp == T0.timestamp() and points[key].start_time is not None
    series = advance({}, points)
    state = usages(series, {})
    assert state.node is None and state.pods == {("default", "web"): None}  # no rate, no summary: nothing
    state = usages(series, summary_rates(build_summary("n", T0, first, T0)))
    u = dict(state.pods[("default", "web")] or [])["main"]
    assert (u.nano_cores, u.window, u.timestamp) == (300_000_000, metrics_api.FIRST_WINDOW, T0.timestamp())
    assert state.node is not None and state.node.nano_cores == 300_000_000

    t1 = T0 + timedelta(seconds=10)
    second = [_pod(t1, 7_000_000_000, 5 * 1024**2)]
    series = advance(series, parse_resource_metrics(render_resource_metrics(second, t1), t1.timestamp()))
    state = usages(series, {})
    u = dict(state.pods[("default", "web")] or [])["main"]
    assert (u.nano_cores, u.memory_bytes, u.window, u.timestamp) == (500_000_000, 5 * 1024**2, 10.0, t1.timestamp())
    assert state.node is not None and state.node.window == 10.0 and state.node.nano_cores == 500_000_000

    # The kubelet answered from its cache (same sample time): the stored previous point is kept.
    series = advance(series, parse_resource_metrics(render_resource_metrics(second, t1), t1.timestamp() + 1))
    u = dict(usages(series, {}).pods[("default", "web")] or [])["main"]
    assert (u.nano_cores, u.window) == (500_000_000, 10.0)

    t2 = t1 + timedelta(seconds=10)
    reset = [_pod(t2, 1_000_000_000, 5 * 1024**2)]
    series = advance(series, parse_resource_metrics(render_resource_metrics(reset, t2), t2.timestamp()))
    assert usages(series, {}).pods[("default", "web")] is None
    u = dict(usages(series, {key: 42}).pods[("default", "web")] or [])["main"]
    assert (u.nano_cores, u.window) == (42, metrics_api.FIRST_WINDOW)

    gone = advance(series, parse_resource_metrics(render_resource_metrics([], t2), t2.timestamp()))
    assert set(gone) == {NODE_KEY}


def test_discovery_lists_the_metrics_group() -> None:
    """kubectl finds metrics.k8s.io/v1beta1 with read-only nodes and pods in both discovery forms."""
    group = next(i for i in aggregated(core=False)["items"] if i["metadata"]["name"] == "metrics.k8s.io")
    version = group["versions"][0]
    assert version["version"] == "v1beta1"
    got = {(r["resource"], r["responseKind"]["kind"], r["scope"], tuple(r["verbs"])) for r in version["resources"]}
    assert got == {
        ("nodes", "NodeMetrics", "Cluster", ("get", "list")),
        ("pods", "PodMetrics", "Namespaced", ("get", "list")),
    }
    assert any(g["name"] == "metrics.k8s.io" for g in api_group_list()["groups"])
    assert {r["name"] for r in resource_list("metrics.k8s.io", "v1beta1")["resources"]} == {"nodes", "pods"}


@pytest.mark.kubectl
async def test_rbac_applies_to_metrics(apiserver: SandboxAPIServer, kubectl: Kubectl, tmp_path: Path) -> None:
    """A user needs get/list on pods.metrics.k8s.io; with it, an empty namespace lists no PodMetrics."""
    alice = Kubectl(kubectl.env, apiserver.user_kubeconfig(tmp_path / "alice", user="alice", groups=["devs"]))
    cache = ["--cache-dir", str(tmp_path / "alice-cache")]
    rc, _, err = await alice.run("get", "--raw", PODS, *cache)
    assert rc != 0 and "forbidden" in err.lower()
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "metrics-reader"},
        "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "alice-metrics"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }
    for obj in (role, binding):
        await kubectl.ok(
            "apply", "-f", "-", "--cache-dir", str(tmp_path / "admin-cache"), stdin=json.dumps(obj).encode()
        )
    body = json.loads(await alice.ok("get", "--raw", PODS, *cache))
    assert body == {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": []}
    rc, _, err = await alice.run("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope", *cache)
    assert rc != 0 and 'pod "nope" not found' in err


def _nanocores(quantity: str) -> int:
    for suffix, scale in (("n", 1), ("u", 1_000), ("m", 1_000_000)):
        if quantity.endswith(suffix):
            return int(quantity[:-1]) * scale
    return int(quantity) * 1_000_000_000


def _bytes(quantity: str) -> int:
    for power, suffix in ((3, "Gi"), (2, "Mi"), (1, "Ki")):
        if quantity.endswith(suffix):
            return int(quantity[:-2]) * 1024**power
    return int(quantity)


BUSY = {"burn": ["timeout", "60", "sh", "-c", "while :; do :; done"], "idle": ["sleep", "60"]}


async def start_pods(stack: Stack) -> None:
    """A busy pod and an idle one in the simulator's process runtime, each bounded to 60 s, Running for ~1 s."""
    for name, command in BUSY.items():
        container = {"name": "main", "image": "busybox", "command": command}
        spec = {"terminationGracePeriodSeconds": 0, "containers": [container]}
        await stack.create_pod({"metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
    for name in BUSY:
        await stack.wait_pod(name, running_ready, timeout=20)
    await asyncio.sleep(1.0)  # let the busy loop use some CPU before the first sample


@pytest.mark.e2e
@pytest.mark.kubectl
async def test_kubectl_top_pod_and_node(
    make_stack: StackFactory,  # noqa: F811
    kubectl_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """With the daemon's default settings: the first scrape reports the summary's rates over a 15s window;
    kubectl top pod/node print them; direct GETs give PodMetrics/NodeMetrics, 404 and 405 as metrics-server."""
    stack = await make_stack(runtime="process")
    await start_pods(stack)
    kubectl = Kubectl(kubectl_env, stack.apiserver.kubeconfig_path)
    cache = ["--cache-dir", str(tmp_path / "kubectl-cache")]

    out = await kubectl.ok("top", "pod", *cache)
    top = top_rows(out)
    assert set(top) == {"burn", "idle"}, out
    assert millicores(top["burn"][0]) > max(0, millicores(top["idle"][0])) and mebibytes(top["burn"][1]) > 0, out
    assert mebibytes(top["idle"][1]) >= 0, out

    listed = await stack.kube.get(PODS)
    assert listed["kind"] == "PodMetricsList" and listed["apiVersion"] == "metrics.k8s.io/v1beta1"
    items = {i["metadata"]["name"]: i for i in listed["items"]}
    assert set(items) == {"burn", "idle"}
    for name, item in items.items():
        # The pod's labels, as metrics-server copies them: its own and its node's topology labels (PodTopologyLabels).
        pod = await stack.kube.get(f"/api/v1/namespaces/default/pods/{name}")
        assert pod["metadata"]["labels"]["app"] == name
        assert item["metadata"]["namespace"] == "default" and item["metadata"]["labels"] == pod["metadata"]["labels"]
        assert item["window"] == "15s"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"])
        assert [c["name"] for c in item["containers"]] == ["main"]
        assert set(item["containers"][0]["usage"]) == {"cpu", "memory"}
        assert _bytes(item["containers"][0]["usage"]["memory"]) > 0
    assert _nanocores(items["burn"]["containers"][0]["usage"]["cpu"]) > 0

    only = top_rows(await kubectl.ok("top", "pod", "-l", "app=burn", "--all-namespaces", *cache))
    assert set(only) == {"default"} and only["default"][0] == "burn"
    selected = await stack.kube.get(PODS, query={"labelSelector": "app=idle"})
    assert [i["metadata"]["name"] for i in selected["items"]] == ["idle"]
    rows = json.loads(await kubectl.ok("get", "--raw", f"{PODS}?fieldSelector=metadata.name%3Dburn", *cache))
    assert [i["metadata"]["name"] for i in rows["items"]] == ["burn"]
    printed = await kubectl.ok("get", "podmetrics", *cache)
    assert printed.split()[:4] == ["NAME", "CPU", "MEMORY", "WINDOW"] and "burn" in printed, printed

    out = await kubectl.ok("top", "node", *cache)
    row = top_rows(out)[NODE]
    assert millicores(row[0]) > 0 and row[1].endswith("%") and mebibytes(row[2]) > 0, out
    node = await stack.kube.get(f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE}")
    assert node["kind"] == "NodeMetrics" and node["metadata"]["name"] == NODE and node["window"] == "15s"
    assert _bytes(node["usage"]["memory"]) > 0

    with pytest.raises(KubeError) as missing:
        await stack.kube.get(f"{PODS}/nope")
    assert missing.value.status == 404 and missing.value.reason == "NotFound"
    with pytest.raises(KubeError) as post:
        await stack.kube.request("POST", PODS, body={"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics"})
    assert post.value.status == 405 and post.value.reason == "MethodNotAllowed"
    with pytest.raises(KubeError) as watch:
        await stack.kube.get(PODS, query={"watch": "true"})
    assert watch.value.status == 405


@pytest.mark.e2e
async def test_later_scrapes_report_counter_rates(
    make_stack: StackFactory,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the daemon's usage cache off and the resolution lowered, a later scrape reports the rate of the CPU
    counter over the two samples (window = their distance), for the pod and for the node."""
    monkeypatch.setattr(metrics_api, "RESOLUTION", 0.5)
    stack = await make_stack(runtime="process", **{"kubelet.stats_cache_seconds": 0})
    await start_pods(stack)
    first = await stack.kube.get(f"{PODS}/burn")
    assert first["window"] == "15s"

    async def second_sample() -> dict[str, Any] | None:
        pod: dict[str, Any] = await stack.kube.get(f"{PODS}/burn")
        return pod if pod["window"] != "15s" else None

    # the simulator's samples have whole-second timestamps
    pod = await eventually(second_sample, timeout=10, interval=0.2, what="a second sample of burn")
    assert pod["window"] != "15s" and re.fullmatch(r"\d+s", pod["window"]), pod  # whole seconds apart
    assert _nanocores(pod["containers"][0]["usage"]["cpu"]) > 0, pod
    node = await stack.kube.get(f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE}")
    assert node["window"] != "15s" and _nanocores(node["usage"]["cpu"]) > 0, node
