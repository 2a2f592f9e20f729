"""Benchmark: many steady pods (not a test).

    .venv/bin/python bench/daemon_steady.py --pods 10000 --measure-seconds 120

Brings --pods pods to Running through the whole stack (see bench/daemon_burst.py for the set-up), lets
things settle, then measures over --measure-seconds while nothing changes: ECI calls per minute (target
<= 60), pod status writes per minute (target 0), the daemon's RSS (target <= 500 MB) and CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_burst import VK, Bench, bench_stack, table

PROBE = Path(__file__).resolve().with_name("heap_probe.py")


async def heap_report(b: Bench, directory: Path) -> Path:
    """Ask the probed daemon (bench/heap_probe.py) for a heap report; return its file."""
    before = set(directory.glob("heap-*.txt"))
    b.proc.send_signal(signal.SIGUSR1)
    for _ in range(600):  # a snapshot of 10,000 pods' heap takes a while
        new = set(directory.glob("heap-*.txt")) - before
        if new:
            await asyncio.sleep(1.0)  # let the writer finish
            return new.pop()
        await asyncio.sleep(0.5)
    raise TimeoutError("the daemon wrote no heap report")


async def run_steady(pods: int, measure: float, settle: float, timeout: float, heap: Path | None = None) -> int:
    command = (sys.executable, str(PROBE), str(heap)) if heap is not None else (VK,)
    with tempfile.TemporaryDirectory(prefix="vk-bench-") as tmp:
        # A probed daemon is slower: without HA a late Lease renewal cannot end it (exit 3) mid-run.
        extra = {"ha.enabled": False} if heap is not None else None
        async with bench_stack(Path(tmp), workers=64, command=command, extra=extra) as b:
            t0 = time.monotonic()
            creating = asyncio.ensure_future(b.create_pods(pods, concurrency=100))
            await b.wait_running(pods, timeout)
            await creating
            ramp = time.monotonic() - t0
            await asyncio.sleep(settle)
            calls0, cpu0 = b.eci_calls(), b.cpu_seconds()
            writes0 = await b.metric("vk_pod_status_writes_total")
            start = time.monotonic()
            await asyncio.sleep(measure)
            span = time.monotonic() - start
            calls = b.eci_calls() - calls0
            cpu = b.cpu_seconds() - cpu0
            writes = await b.metric("vk_pod_status_writes_total") - writes0
            per_min = 60.0 / span
            rss = b.rss_mb()
            n_calls = sum(calls.values())
            rows = [
                ("pods Running", str(pods)),
                ("ramp-up to all Running (s)", f"{ramp:.0f}"),
                ("measured window (s)", f"{span:.0f}"),
                ("ECI calls per minute (target ≤ 60)", f"{n_calls * per_min:.1f}"),
                ("status writes per minute (target 0)", f"{writes * per_min:.1f}"),
                ("daemon RSS (MB, target ≤ 500)", f"{rss:.0f}"),
                ("daemon CPU (% of one core)", f"{100 * cpu / span:.1f}"),
            ]
            print(f"## {pods} steady pods\n")
            print(table(rows))
            print()
            print(table([(k, f"{v * per_min:.1f}") for k, v in sorted(calls.items())], ("ECI action", "Calls/min")))
            print(f"\nload average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
            if heap is not None:
                print(f"heap report (traced, so RSS above is not comparable): {await heap_report(b, heap)}")
            ok = n_calls * per_min <= 60 and writes == 0 and rss <= 500
            return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--measure-seconds", type=float, default=120)
    ap.add_argument("--settle-seconds", type=float, default=20)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument(
        "--heap-report",
        type=Path,
        metavar="DIR",
        help="run the daemon under bench/heap_probe.py (tracemalloc) and write its top allocators to DIR at the end",
    )
    args = ap.parse_args()
    return asyncio.run(run_steady(args.pods, args.measure_seconds, args.settle_seconds, args.timeout, args.heap_report))


if __name__ == "__main__":
    sys.exit(main())
