"""Benchmark: the sandbox scheduler places N pending pods on M nodes; target under 10 s for 5,000 on 50.

Run: .venv/bin/python -m bench.scheduler [--pods 5000] [--nodes 50] [--target-seconds 10]

An in-process SandboxAPIServer (controllers on, no hollow workers, so only the scheduler works) gets M Ready nodes
with real allocatable (16 CPU, 64Gi, 110 pods each), then N pods requesting 100m/128Mi are written to the store at
once, before the scheduler gets a turn: the clock runs from the first write until every pod is bound, so it covers
filtering, scoring, the two binding writes and the Scheduled event of each pod. A second phase asks for more than
fits: N/10 extra 8-CPU pods, every one of them must end Unschedulable with the FitError message. Prints a Markdown
table; exit 1 when a target is missed or a pod ends in the wrong state.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vk_sandbox.apiserver.server import SandboxAPIServer

NODE_CPU, NODE_MEMORY, NODE_PODS = "16", "64Gi", "110"


def node(i: int) -> dict[str, Any]:
    resources = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS}
    return {
        "metadata": {"name": f"bench-node-{i:03d}", "labels": {"kubernetes.io/hostname": f"bench-node-{i:03d}"}},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]
        },
    }


async def wait_for(check: Any, timeout: float) -> float:
    """Seconds until ``check()`` is true (polling at 50 ms); raises TimeoutError past ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def run(pods: int, nodes: int, target: float) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        async with SandboxAPIServer(directory=Path(tmp)) as srv:
            store = srv.store
            store.create_now("namespaces", {"metadata": {"name": "bench"}})
            for i in range(nodes):
                store.create_now("nodes", node(i))
            await asyncio.sleep(0.2)  # the scheduler has seen the nodes

            def bound() -> int:
                return sum(1 for p in store.all_objects("pods") if (p.get("spec") or {}).get("nodeName"))

            started = time.monotonic()
            for i in range(pods):
                store.create_now("pods", pod(f"p-{i:05d}", "100m", "128Mi"))
            written = time.monotonic() - started
            try:
                await wait_for(lambda: bound() == pods, timeout=max(60.0, 6 * target))
            except TimeoutError:
                print(f"only {bound()} of {pods} pods bound", file=sys.stderr)
                return 1
            elapsed = time.monotonic() - started
            per_node = [
                sum(1 for p in store.all_objects("pods") if p["spec"].get("nodeName") == f"bench-node-{i:03d}")
                for i in range(nodes)
            ]

            # Phase 2: pods that fit nowhere all get the FitError message.
            big = max(1, pods // 10)
            started2 = time.monotonic()
            for i in range(big):
                store.create_now("pods", pod(f"big-{i:05d}", "17", "1Gi"))

            def explained() -> int:
                return sum(
                    1
                    for p in store.all_objects("pods")
                    if p["metadata"]["name"].startswith("big-")
                    and any(
                        c.get("reason") == "Unschedulable" and "Insufficient cpu" in (c.get("message") or "")
                        for c in (p.get("status") or {}).get("conditions") or []
                    )
                )

            try:
                await wait_for(lambda: explained() == big, timeout=120.0)
            except TimeoutError:
                print(f"only {explained()} of {big} unschedulable pods explained", file=sys.stderr)
                return 1
            elapsed2 = time.monotonic() - started2

    ok = elapsed < target
    print("| metric | value |")
    print("|---|---|")
    print(f"| pods bound | {pods:,} on {nodes} nodes |")
    print(f"| writing the pods to the store | {written:.2f} s |")
    print(f"| first write to all bound | **{elapsed:.2f} s** ({pods / elapsed:,.0f} pods/s); target < {target:g} s |")
    print(f"| pods per node (min / max) | {min(per_node)} / {max(per_node)} |")
    rate2 = big / elapsed2
    print(f"| unschedulable pods explained (FitError + event) | {big:,} in {elapsed2:.2f} s ({rate2:,.0f}/s) |")
    print(f"| result | {'ok' if ok else 'MISSED the target'} |")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--target-seconds", type=float, default=10.0)
    args = ap.parse_args()
    if args.pods < 1 or args.nodes < 1 or args.pods > args.nodes * int(NODE_PODS):
        ap.error(f"--pods must be between 1 and {int(NODE_PODS)} x --nodes")
    return asyncio.run(run(args.pods, args.nodes, args.target_seconds))


if __name__ == "__main__":
    sys.exit(main())
