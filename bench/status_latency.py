"""Benchmark: status latency per pod, and the daemon's CPU per pod, through the whole stack (not a test).

    .venv/bin/python bench/status_latency.py --pods 500
    .venv/bin/python bench/status_latency.py --pods 2000 --profile realistic --published-limits

Set-up as bench/daemon_burst.py (API server and simulator in this process, the daemon a `vk-provider run`
subprocess). Creates --pods pods bound to the node, watches them, and takes from the simulator's
``/_sim/transitions`` when each group was created and turned Running, so that per pod it measures:

- bind → CreateContainerGroup received by the simulator,
- group Running on ECI → pod Running in the API server (as this process's watch sees it),
- bind → pod Running,

as p50/p99/max, then the daemon's CPU from the first bind to the last pod Running (per pod), its API server
requests per pod in that span (writes among them; each pod write also costs a watch event), the ECI
calls per pod and, over --idle-seconds with nothing changing, the ECI calls per minute (--spot: of spot pods,
which the spot notice checks look after). With --delete it
deletes every pod and measures delete → group gone. With --published-limits the simulator throttles as
ECI publishes (vk_sandbox.eci.faults.PUBLISHED_LIMITS) and the daemon runs with its default rate limits;
otherwise the daemon's limits are set out of the way (1000/s). Both clocks are this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_burst import NODE, Bench, bench_stack, table

from vk_provider.eci.names import TAG_POD, TAG_UID
from vk_provider.settings import ECISettings
from vk_sandbox.eci.faults import PUBLISHED_LIMITS


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    return f"{pct(values, 0.5) * 1000:.0f} / {pct(values, 0.99) * 1000:.0f} / {max(values) * 1000:.0f}"


async def watch_running(b: Bench, running: dict[str, float], stop: asyncio.Event) -> None:
    """Record when this process first sees each pod of the node Running (Unix seconds), until ``stop``."""
    rv = ""
    while not stop.is_set():
        query: dict[str, Any] = {"fieldSelector": f"spec.nodeName={NODE}", "watch": "true"}
        if rv:
            query["resourceVersion"] = rv
        with_timeout = {"timeoutSeconds": "300", **query}
        async for event in b.kube.watch_lines("/api/v1/pods", with_timeout, timeout=320):
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            rv = meta.get("resourceVersion") or rv
            if event.get("type") == "ERROR":
                rv = ""
                break
            uid = meta.get("uid")
            if uid and (obj.get("status") or {}).get("phase") == "Running":
                running.setdefault(uid, time.time())
            if stop.is_set():
                return


async def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {}
    qps = 1000.0
    if args.published_limits:
        qps = 20.0
        settings["eci.rate_limit_burst"] = ECISettings.model_fields["rate_limit_burst"].default  # the default
    else:
        settings["eci.rate_limits_per_minute"] = {"*": 600_000, "DescribeContainerGroups": 600_000}
    for item in args.set:
        path, _, value = item.partition("=")
        settings[path] = json.loads(value) if value[:1] in "0123456789[{-tf" else value
    annotations = {"k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo"} if args.spot else None
    with tempfile.TemporaryDirectory(prefix="vk-bench-") as tmp:
        async with bench_stack(Path(tmp), workers=args.workers, qps=qps, profile=args.profile, extra=settings) as b:
            if args.published_limits:
                await b.sim.set_faults(PUBLISHED_LIMITS)
            running: dict[str, float] = {}
            stop = asyncio.Event()
            watcher = asyncio.ensure_future(watch_running(b, running, stop))
            await asyncio.sleep(0.5)  # the watch is open
            spy = None
            if args.py_spy:  # sample the daemon's every thread while the pods are created (py-spy from PyPI)
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(b.proc.pid),
                    "--rate", "250", "--gil", "--format", "raw", "--output", args.py_spy, "--nonblocking",
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.0)
            calls0, cpu0, bed0 = b.eci_calls(), b.cpu_seconds(), time.process_time()
            daemon_user = f"system:node:{NODE}"
            requests0 = b.apiserver.requests.get(daemon_user, 0)
            writes0 = b.apiserver.write_requests.get(daemon_user, 0)
            t0 = time.time()
            if args.rate > 0:  # a steady trickle of pods instead of a burst
                bound = {}
                for i in range(args.pods):
                    bound.update(await b.create_pods(1, start=i, annotations=annotations))
                    await asyncio.sleep(max(0.0, t0 + (i + 1) / args.rate - time.time()))
            else:
                bound = await b.create_pods(args.pods, concurrency=args.concurrency, annotations=annotations)
            await wait_until(lambda: len(running) >= args.pods, args.timeout, "not all pods Running in time")
            all_running = time.time() - t0
            cpu = b.cpu_seconds() - cpu0
            bed = time.process_time() - bed0
            calls = b.eci_calls() - calls0
            requests = b.apiserver.requests.get(daemon_user, 0) - requests0
            writes = b.apiserver.write_requests.get(daemon_user, 0) - writes0
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await spy.wait()
            throttled = b.sim.stats()["faults_injected"].get("Throttling", 0)
            by_uid = {rec["tags"].get(TAG_UID): rec["times"] for rec in b.sim.transitions()["transitions"].values()}
            to_create = [by_uid[u]["Created"] - t for u, t in bound.items() if u in by_uid]
            lag = [running[u] - by_uid[u]["Running"] for u in bound if u in by_uid and "Running" in by_uid[u]]
            total = [running[u] - t for u, t in bound.items() if u in running]
            n_calls = sum(calls.values())
            rows = [
                ("pods", str(args.pods)),
                ("simulator profile", args.profile + (", ECI's published limits" if args.published_limits else "")),
                ("first bind → all pods Running (s)", f"{all_running:.1f}"),
                ("bind → CreateContainerGroup received, p50 / p99 / max (ms)", spread(to_create)),
                ("group Running on ECI → pod Running in the API server, p50 / p99 / max (ms)", spread(lag)),
                ("bind → pod Running, p50 / p99 / max (ms)", spread(total)),
                ("daemon CPU, first bind → all Running (s)", f"{cpu:.2f}"),
                ("daemon CPU per pod (ms)", f"{1000 * cpu / args.pods:.2f}"),
                ("test bed CPU (API server, simulator, this watch; one process) (s)", f"{bed:.2f}"),
                ("ECI calls per pod", f"{n_calls / args.pods:.2f}"),
                (
                    "daemon's API server requests per pod (of them writes)",
                    f"{requests / args.pods:.2f} ({writes / args.pods:.2f})",
                ),
                ("Throttling answers", str(throttled)),
            ]
            if args.idle_seconds > 0:
                await asyncio.sleep(args.settle_seconds)
                idle0 = b.eci_calls()
                start = time.monotonic()
                await asyncio.sleep(args.idle_seconds)
                span = time.monotonic() - start
                idle = b.eci_calls() - idle0
                rows.append((f"idle ECI calls per minute (over {span:.0f} s)", f"{sum(idle.values()) * 60 / span:.1f}"))
                for action, n in sorted(idle.items()):
                    rows.append((f"idle {action} per minute", f"{n * 60 / span:.1f}"))
            if args.delete:
                asked: dict[str, float] = {}
                sem = asyncio.Semaphore(args.concurrency)
                names = {
                    r["tags"].get(TAG_UID): r["tags"].get(TAG_POD) for r in b.sim.transitions()["transitions"].values()
                }
                pods = {u: n for u, n in names.items() if u in bound}

                async def delete(uid: str) -> None:
                    async with sem:
                        asked[uid] = time.time()
                        await b.kube.request("DELETE", f"/api/v1/namespaces/default/pods/{pods[uid]}")

                t1 = time.time()
                await asyncio.gather(*(delete(u) for u in pods))

                def gone() -> bool:
                    times = b.sim.transitions()["transitions"]
                    return sum("Gone" in r["times"] for r in times.values()) >= len(asked)

                await wait_until(gone, args.timeout, "not all groups gone in time")
                all_gone = time.time() - t1
                recs = {r["tags"].get(TAG_UID): r["times"] for r in b.sim.transitions()["transitions"].values()}
                del_sent = [recs[u]["Terminating"] - t for u, t in asked.items() if "Terminating" in recs[u]]
                rows.append(("first delete → all groups gone (s)", f"{all_gone:.1f}"))
                rows.append(("delete → DeleteContainerGroup received, p50 / p99 / max (ms)", spread(del_sent)))
            stop.set()
            watcher.cancel()
            how = f"{args.rate:g} pods/s" if args.rate > 0 else "a burst"
            print(f"## Status latency, {args.pods} pods, {how} ({args.profile} profile)\n")
            print(table(rows))
            print()
            print(table([(k, str(v)) for k, v in sorted(calls.items())], ("ECI action (bind → all Running)", "Calls")))
            return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--profile", choices=("fast", "realistic"), default="fast")
    ap.add_argument("--published-limits", action="store_true")
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=50, help="concurrent pod POSTs")
    ap.add_argument("--rate", type=float, default=0, help="pods per second (default: all at once)")
    ap.add_argument("--idle-seconds", type=float, default=0)
    ap.add_argument("--spot", action="store_true", help="spot pods (eci-spot-strategy: SpotAsPriceGo)")
    ap.add_argument("--settle-seconds", type=float, default=10)
    ap.add_argument("--delete", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="a daemon setting")
    ap.add_argument("--py-spy", metavar="FILE", help="sample the daemon from bind to Running into FILE (collapsed)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
