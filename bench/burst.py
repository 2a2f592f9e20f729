"""Benchmark: elastic scheduling (docs/elastic.md) through the whole stack (not a test).

    .venv/bin/python -m bench.burst --replicas 500 --workers 4 --worker-cpu 4

The sandbox API server with worker nodes (hollow kubelets) and its scheduler, the ECI simulator ("fast"
latency profile) in this process, the daemon as a real `vk-provider run` subprocess with its admission webhook
registered (failurePolicy Ignore). Then:

1. **webhook**: AdmissionReviews of pods POSTed straight to the daemon's webhook over HTTPS at --webhook-rate
   per second for --webhook-seconds, latency measured here (client side, TLS included);
2. **burst**: a Deployment of --cpu pods in a namespace labelled vk-eci.io/mode=burst scaled 0 -> --replicas:
   time to all Running, how many on the workers and on the virtual node, and for each burst pod the time from
   this watch first seeing it Unschedulable to seeing it Running (p50/p99), the daemon's CPU;
3. **scale-in**: scaled to --scale-to: whether every serverless pod went before any worker pod.

The last lines say PASS or FAIL for each target (webhook p99 <= 5 ms, burst p99 <= 5 s, every serverless pod
deleted before any worker pod), after the load average: exit 1 when one is missed. --workdir keeps the stack's
files (the daemon's log, each burst pod's times in pod-times.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.daemon_burst import NODE, Bench, bench_stack, table
from vk_provider.kube.client import KubeAPI

NS = "burst"
APP = "elastic-bench"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def webhook_load_elsewhere(port: int, rate: float, seconds: float) -> list[float]:
    """``webhook_load`` in a process of its own, so the API server in this one does not delay the client."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.burst",
        "--webhook-client",
        str(port),
        "--webhook-rate",
        str(rate),
        "--webhook-seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"the webhook client failed (exit {proc.returncode})")
    return [float(x) for x in json.loads(out)]


async def webhook_load(port: int, rate: float, seconds: float) -> list[float]:
    """POST AdmissionReviews at ``rate``/s for ``seconds``; each request's latency in seconds."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "namespace": NS,
            "object": {
                "metadata": {"generateName": "p-", "labels": {"app": APP}},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "250m"}}}]
                },
            },
        },
    }
    latencies: list[float] = []
    url = f"https://127.0.0.1:{port}/mutate-pods"
    connector = aiohttp.TCPConnector(ssl=False, limit=64)  # latency, not trust, is measured here
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            body = {**review, "request": {**review["request"], "uid": f"u{i}"}}
            t0 = time.perf_counter()
            async with session.post(url, json=body) as resp:
                answer = await resp.json()
            latencies.append(time.perf_counter() - t0)
            assert answer["response"]["uid"] == f"u{i}" and answer["response"]["allowed"]

        # Warm up: the API server keeps its connections to a webhook alive, so handshakes are not measured.
        await asyncio.gather(*(one(-1 - i) for i in range(16)))
        latencies.clear()
        tasks = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return latencies


async def histogram(b: Bench, name: str, q: float = 0.99, labels: str = "") -> float:
    """The upper bound of the bucket holding the ``q`` quantile of a daemon histogram (the series whose labels
    contain ``labels``, e.g. 'action="CreateContainerGroup"')."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{b.metrics_port}/metrics") as r:
        text = await r.text()
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{") and labels in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0
    return next((bound for bound, count in buckets if count >= q * total), float("nan"))


def deployment(replicas: int, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["sleep", "86400"],
                            "resources": {"requests": {"cpu": cpu}},
                        }
                    ]
                },
            },
        },
    }


class PodWatch:
    """This process's own view of the namespace's pods: when each was first Unschedulable, Running, deleted."""

    def __init__(self, kube: KubeAPI) -> None:
        self.kube = kube
        self.pods: dict[str, dict[str, Any]] = {}
        self.unschedulable: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.bound: dict[str, float] = {}  # first seen on the virtual node
        self.deleted: list[tuple[float, str, str]] = []  # (when, name, node), in the order deletions began
        self.deleting: set[str] = set()

    async def run(self) -> None:
        path = f"/api/v1/namespaces/{NS}/pods"
        listing = await self.kube.get(path)
        rv = listing["metadata"]["resourceVersion"]
        while True:
            query = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": 600}
            async for event in self.kube.watch_lines(path, query, timeout=630):
                pod = event["object"]
                rv = pod["metadata"].get("resourceVersion", rv)
                self.seen(event["type"], pod)

    def seen(self, kind: str, pod: dict[str, Any]) -> None:
        name, now = pod["metadata"]["name"], time.monotonic()
        # A deletion counts when the ReplicaSet makes it (deletionTimestamp), not when the pod is gone: a worker
        # pod goes at once, a serverless one after its container group.
        if (kind == "DELETED" or pod["metadata"].get("deletionTimestamp")) and name not in self.deleting:
            self.deleting.add(name)
            self.deleted.append((now, name, str(pod["spec"].get("nodeName") or "")))
        if kind == "DELETED":
            self.pods.pop(name, None)
            return
        self.pods[name] = pod
        status = pod.get("status") or {}
        if any(c.get("reason") == "Unschedulable" for c in status.get("conditions") or []):
            self.unschedulable.setdefault(name, now)
        if status.get("phase") == "Running":
            self.running.setdefault(name, now)
        if pod["spec"].get("nodeName") == NODE:
            self.bound.setdefault(name, now)

    def on(self, node_is_virtual: bool) -> int:
        return sum(
            1
            for p in self.pods.values()
            if p["spec"].get("nodeName")
            and (p["spec"]["nodeName"] == NODE) == node_is_virtual
            and not p["metadata"].get("deletionTimestamp")
        )


async def until(check: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s")


async def register_webhook(kube: KubeAPI, port: int) -> None:
    """The shipped webhook configuration (by URL, as `make run` registers it) and the burst namespace."""
    from vk_sandbox.up import elastic_webhook_configuration

    await kube.request(
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        body=elastic_webhook_configuration(port),
    )
    await kube.request(
        "POST",
        "/api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"vk-eci.io/mode": "burst"}}},
    )


def control_plane_cpu(b: Bench) -> dict[str, float]:
    """CPU seconds of the real control plane's processes so far, by component ({} for the sandbox, in-process)."""
    cpu_seconds = getattr(b.apiserver, "cpu_seconds", None)
    return dict(cpu_seconds()) if cpu_seconds is not None else {}


async def scale(kube: KubeAPI, replicas: int) -> None:
    await kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{APP}",
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )


async def run(args: argparse.Namespace) -> int:
    try:
        from vk_sandbox.apiserver.workers import WorkerSpec
    except ImportError:
        print("this sandbox has no worker nodes (vk_sandbox.apiserver.workers): nothing to burst from", file=sys.stderr)
        return 2
    from bench.daemon_burst import free_port

    webhook_port = free_port()
    targets: list[tuple[str, str, bool]] = []
    with contextlib.ExitStack() as stack:
        if args.workdir:
            tmp = str(args.workdir)
            Path(tmp).mkdir(parents=True, exist_ok=True)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vk-bench-burst-"))
        async with bench_stack(
            Path(tmp),
            worker_nodes=WorkerSpec(count=args.workers, cpu=args.worker_cpu, pods=110),
            real=args.control_plane == "real",
            extra={"elastic.webhook_port": webhook_port},
            setup=lambda kube: register_webhook(kube, webhook_port),
        ) as b:
            rows = await phases(b, args, webhook_port, targets)
    print(
        f"## Elastic burst: {args.workers} workers x {args.worker_cpu} CPU, 0 -> {args.replicas} x {args.cpu}, "
        f"{args.control_plane} control plane\n"
    )
    print(table(rows))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)\n")
    for target, measured, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}: {target} (measured {measured})")
    return 0 if all(ok for _, _, ok in targets) else 1


async def phases(
    b: Bench, args: argparse.Namespace, webhook_port: int, targets: list[tuple[str, str, bool]]
) -> list[tuple[str, str]]:
    """Run the three parts; ``targets`` gets (target, measured, met) for each."""
    rows: list[tuple[str, str]] = []
    lat = await webhook_load_elsewhere(webhook_port, args.webhook_rate, args.webhook_seconds)
    p99 = pct(lat, 0.99) * 1000
    served = await histogram(b, "vk_elastic_webhook_duration_seconds")
    rows += [
        (f"webhook: reviews at {args.webhook_rate:g}/s", str(len(lat))),
        ("webhook latency at the client p50 / p99 (ms)", f"{statistics.median(lat) * 1000:.2f} / {p99:.2f}"),
        ("webhook time in the daemon p99 (ms, histogram bucket bound)", f"<= {served * 1000:g}"),
    ]
    targets.append(("webhook latency at the client p99 <= 5 ms", f"{p99:.2f} ms", p99 <= 5))

    watch = PodWatch(b.kube)
    watching = asyncio.ensure_future(watch.run())
    try:
        await b.kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body=deployment(0, args.cpu))
        cpu0, own_cpu0, plane0 = b.cpu_seconds(), time.process_time(), control_plane_cpu(b)
        t0 = time.monotonic()
        await scale(b.kube, args.replicas)
        await until(lambda: len(watch.running) >= args.replicas, args.timeout, f"{args.replicas} pods Running")
        all_running = time.monotonic() - t0
        cpu, own_cpu = b.cpu_seconds() - cpu0, time.process_time() - own_cpu0
        plane = {name: t - plane0.get(name, 0.0) for name, t in control_plane_cpu(b).items()}
        if args.workdir:
            times = {"unschedulable": watch.unschedulable, "bound": watch.bound, "running": watch.running}
            (Path(args.workdir) / "pod-times.json").write_text(json.dumps(times))
        bursts = [watch.running[n] - t for n, t in watch.unschedulable.items() if n in watch.running]
        to_bound = [watch.bound[n] - t for n, t in watch.unschedulable.items() if n in watch.bound]
        to_running = [watch.running[n] - t for n, t in watch.bound.items() if n in watch.running]
        on_virtual, on_workers = watch.on(True), watch.on(False)
        burst_p99 = pct(bursts, 0.99)
        create = 'action="CreateContainerGroup"'
        rows += [
            ("scale 0 -> replicas: all Running (s)", f"{all_running:.1f}"),
            ("pods on workers / on the virtual node", f"{on_workers} / {on_virtual}"),
            ("burst pods: Unschedulable -> Running p50 / p99 (s)", f"{pct(bursts, 0.5):.2f} / {burst_p99:.2f}"),
            (
                "  of which Unschedulable -> bound p50 / p99 (s)",
                f"{pct(to_bound, 0.5):.2f} / {pct(to_bound, 0.99):.2f}",
            ),
            ("  and bound -> Running p50 / p99 (s)", f"{pct(to_running, 0.5):.2f} / {pct(to_running, 0.99):.2f}"),
            (
                "  the daemon's own Unschedulable -> bound p50 / p99 (s, bucket bounds)",
                f"<= {await histogram(b, 'vk_elastic_burst_seconds', 0.5):g} / "
                f"<= {await histogram(b, 'vk_elastic_burst_seconds'):g}",
            ),
            (
                "  the daemon's CreateContainerGroup call p50 / p99 (s, bucket bounds)",
                f"<= {await histogram(b, 'vk_eci_call_duration_seconds', 0.5, create)} / "
                f"<= {await histogram(b, 'vk_eci_call_duration_seconds', 0.99, create)}",
            ),
            (
                "  the daemon's group Running -> pod status written p50 / p99 (s, bucket bounds)",
                f"<= {await histogram(b, 'vk_status_propagation_seconds', 0.5)} / "
                f"<= {await histogram(b, 'vk_status_propagation_seconds')}",
            ),
            ("daemon CPU during the burst (s)", f"{cpu:.1f}"),
            ("daemon RSS (MB)", f"{b.rss_mb():.0f}"),
            *(
                [
                    ("this process's CPU during the burst (s: simulator, watches)", f"{own_cpu:.1f}"),
                    (
                        "control plane CPU during the burst (s)",
                        ", ".join(f"{name} {t:.1f}" for name, t in sorted(plane.items()) if t >= 0.05),
                    ),
                ]
                if plane
                else [
                    (
                        "this process's CPU during the burst (s: API server, scheduler, simulator, workers)",
                        f"{own_cpu:.1f}",
                    )
                ]
            ),
            ("bursts counted by the daemon", f"{await b.metric('vk_elastic_bursts_total'):.0f}"),
            ("webhook reviews answered by the daemon", f"{await b.metric('vk_elastic_webhook_requests_total'):.0f}"),
        ]
        targets.append(("burst pods Unschedulable -> Running p99 <= 5 s", f"{burst_p99:.2f} s", burst_p99 <= 5))

        serverless_before = {n for n, p in watch.pods.items() if p["spec"].get("nodeName") == NODE}
        mark = len(watch.deleted)
        t1 = time.monotonic()
        await scale(b.kube, args.scale_to)
        await until(
            lambda: (
                len(watch.pods) - len(watch.deleting & set(watch.pods)) <= args.scale_to
                and len(watch.pods) <= args.scale_to
            ),
            args.timeout,
            f"scaled to {args.scale_to}",
        )
        scale_in = time.monotonic() - t1
        order = [node for _, _, node in watch.deleted[mark:]]
        first_worker = next((i for i, n in enumerate(order) if n != NODE), len(order))
        serverless_after_worker = sum(1 for n in order[first_worker:] if n == NODE)
        left = len(serverless_before & set(watch.pods))
        rows += [
            (f"scale {args.replicas} -> {args.scale_to} (s)", f"{scale_in:.1f}"),
            ("deleted: serverless / on workers", f"{order.count(NODE)} / {len(order) - order.count(NODE)}"),
            # The real ReplicaSet's deletions of one scale-in arrive in any order: there the order says nothing.
            *(
                [("serverless pods deleted after the first worker pod", str(serverless_after_worker))]
                if args.control_plane == "sandbox"
                else []
            ),
            ("serverless pods left", str(left)),
        ]
        if args.control_plane == "real":
            # The real ReplicaSet deletes the pods it picked concurrently: the order says nothing, the choice does.
            targets.append(
                (
                    "scale-in: every serverless pod among those the ReplicaSet picked",
                    f"{left} serverless pods left",
                    left == 0 or len(order) - order.count(NODE) == 0,
                )
            )
        else:
            targets.append(
                (
                    "scale-in: every serverless pod deleted before any worker pod",
                    f"{serverless_after_worker} deleted after the first worker pod",
                    serverless_after_worker == 0,
                )
            )
    finally:
        watching.cancel()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--worker-cpu", default="4")
    ap.add_argument("--replicas", type=int, default=500)
    ap.add_argument("--cpu", default="250m")
    ap.add_argument("--scale-to", type=int, default=50)
    ap.add_argument("--webhook-rate", type=float, default=200)
    ap.add_argument("--webhook-seconds", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--workdir", type=Path, help="keep the stack's files (the daemon's log, per-pod times) here")
    ap.add_argument(
        "--control-plane",
        choices=("sandbox", "real"),
        default="sandbox",
        help="the sandbox API server with hollow-kubelet workers, or upstream's control plane with kwok's workers "
        "(built by `make controlplane`)",
    )
    ap.add_argument("--webhook-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.webhook_client:
        print(json.dumps(asyncio.run(webhook_load(args.webhook_client, args.webhook_rate, args.webhook_seconds))))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
