"""Benchmark: spot reclamation of many replicas at once through the whole stack (not a test).

    .venv/bin/python -m bench.spot --deployments 5 --replicas 100 --reclaim 100

Starts the sandbox API server, the ECI simulator (virtual runtime, "fast" latency profile) and the daemon
as a real `vk-provider run` subprocess (default settings: status poll 3 s, spot notice poll 10 s), creates
the spot Deployments and waits until every replica runs, then reclaims --reclaim groups at once with a
--notice-seconds notice (the simulator's ``spot_reclaim`` fault). It measures, from the notice:

- the time until each replacement pod is Running (p50, p99, max): the daemon must see the notice, evict
  the pod, the ReplicaSet create a new one and the daemon start its group;
- a probe pod created at the notice: how long it takes to run meanwhile (does the reclaim stall the daemon?);
- lost replicas after the release: Deployments' ready replicas short of the spec, and reclaimed pods that
  were not evicted before the release (they end BidFailed instead).

Exits non-zero when p99 is over --target-p99 seconds or a replica is lost. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.daemon_burst import NODE, Bench, bench_stack, table

TOLERATE = [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}]
INSTANCE_ID = "k8s.aliyun.com/eci-instance-id"


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "bench": "spot"},
                    "annotations": {"k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo"},
                },
                "spec": {
                    "nodeName": NODE,
                    "tolerations": TOLERATE,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "86400"]}],
                },
            },
        },
    }


def running(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return st.get("phase") == "Running" and ready and not pod["metadata"].get("deletionTimestamp")


async def spot_pods(b: Bench) -> list[dict[str, Any]]:
    out = await b.kube.get("/api/v1/namespaces/default/pods", query={"labelSelector": "bench=spot"})
    return list(out.get("items") or [])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def run(deployments: int, replicas: int, reclaim: int, notice: float, timeout: float, target: float) -> int:
    total = deployments * replicas
    with tempfile.TemporaryDirectory(prefix="vk-bench-spot-") as tmp:
        async with bench_stack(Path(tmp)) as b:
            for i in range(deployments):
                await b.kube.request(
                    "POST", "/apis/apps/v1/namespaces/default/deployments", body=deployment(f"spot-{i}", replicas)
                )
            started = time.monotonic()
            while True:
                pods = await spot_pods(b)
                placed = [p for p in pods if running(p) and (p["metadata"].get("annotations") or {}).get(INSTANCE_ID)]
                if len(placed) >= total:
                    break
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"only {len(placed)} of {total} spot replicas running")
                await asyncio.sleep(0.5)
            up_in = time.monotonic() - started
            before = {p["metadata"]["uid"] for p in pods}
            victims = placed[:reclaim]
            victim_names = {p["metadata"]["name"] for p in victims}
            groups = [p["metadata"]["annotations"][INSTANCE_ID] for p in victims]
            cpu0 = b.cpu_seconds()
            t0 = time.monotonic()
            await b.sim.set_faults({"spot_reclaim": {"group_ids": groups, "notice_seconds": notice}})
            probe = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe"},
                "spec": {
                    "nodeName": NODE,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "86400"]}],
                },
            }
            await b.kube.request("POST", "/api/v1/namespaces/default/pods", body=probe)
            probe_in: float | None = None
            replaced_at: dict[str, float] = {}
            evicted_at: dict[str, float] = {}
            while time.monotonic() - t0 < max(timeout, notice + 30):
                now = time.monotonic() - t0
                pods = await spot_pods(b)
                names = {p["metadata"]["name"] for p in pods}
                for p in pods:
                    if p["metadata"]["uid"] not in before and running(p):
                        replaced_at.setdefault(p["metadata"]["uid"], now)
                for name in victim_names - names:
                    evicted_at.setdefault(name, now)
                if probe_in is None:
                    got = await b.kube.get_or_none("/api/v1/namespaces/default/pods/probe")
                    if got and running(got):
                        probe_in = now
                if len(replaced_at) >= reclaim and now > notice + 5 and probe_in is not None:
                    break
                await asyncio.sleep(0.25)
            cpu = b.cpu_seconds() - cpu0
            pods = await spot_pods(b)
            live = [p for p in pods if running(p)]
            bid_failed = [p for p in pods if (p.get("status") or {}).get("reason") == "BidFailed"]
            late = [n for n, t in evicted_at.items() if t > notice]
            not_evicted = len(victim_names - set(evicted_at))
            times = sorted(replaced_at.values())[:reclaim]
            lost = total - len(live)
            rows = [
                ("spot replicas (Deployments x replicas)", f"{total} ({deployments} x {replicas})"),
                ("all replicas Running after create (s)", f"{up_in:.1f}"),
                ("groups reclaimed at once; notice (s)", f"{reclaim}; {notice:g}"),
                ("replacements Running", f"{len(times)} of {reclaim}"),
                ("notice -> replacement Running p50 (s)", f"{pct(times, 0.5):.1f}" if times else "-"),
                ("notice -> replacement Running p99 (s)", f"{pct(times, 0.99):.1f}" if times else "-"),
                ("notice -> replacement Running max (s)", f"{max(times):.1f}" if times else "-"),
                ("reclaimed pods evicted before the release", f"{len(evicted_at) - len(late)} of {reclaim}"),
                ("reclaimed pods ended BidFailed", str(len(bid_failed))),
                ("lost replicas (running short of the spec)", str(lost)),
                ("probe pod created at the notice: Running in (s)", f"{probe_in:.1f}" if probe_in else "never"),
                ("daemon CPU from the notice (s)", f"{cpu:.1f}"),
                ("daemon RSS (MB)", f"{b.rss_mb():.0f}"),
            ]
            print(f"## Spot reclamation of {reclaim} of {total} replicas (virtual runtime, fast latency)\n")
            print(table(rows))
            ok = len(times) == reclaim and pct(times, 0.99) <= target and lost == 0 and not_evicted == 0
            return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deployments", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--reclaim", type=int, default=100)
    ap.add_argument("--notice-seconds", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--target-p99", type=float, default=30.0)
    a = ap.parse_args()
    return asyncio.run(run(a.deployments, a.replicas, a.reclaim, a.notice_seconds, a.timeout, a.target_p99))


if __name__ == "__main__":
    sys.exit(main())
