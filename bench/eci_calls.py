"""ECI calls per pod: create N pods through ECIProvider against the simulator (virtual runtime) and
count the simulator's calls until every pod is Running, then count calls in a quiet window.

    .venv/bin/python bench/eci_calls.py --pods 500 --quiet-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

from pydantic import SecretStr

from vk_provider.eci.provider import ECIProvider
from vk_provider.provider import PodResources
from vk_provider.settings import ECISettings
from vk_sandbox.eci.server import ECISimulator


def _total(stats: dict[str, Any]) -> int:
    return sum(stats["calls"].values())


async def main(pods: int, quiet: float, latency: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        async with ECISimulator(directory=d, runtime="virtual", latency_profile=latency) as sim:
            settings = ECISettings(
                endpoint=sim.endpoint,
                region=sim.region,
                access_key_id=sim.access_key_id,
                access_key_secret=SecretStr(sim.access_key_secret),
                vswitch_ids=["vsw-a"],
                security_group_id="sg-a",
            )
            provider = ECIProvider(settings, node_name="bench")
            await provider.start()
            await provider.poller.resync()
            base = _total(sim.stats())
            started = time.monotonic()
            specs = [
                {
                    "metadata": {"name": f"p{i}", "namespace": "bench", "uid": f"uid-{i}"},
                    "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]},
                }
                for i in range(pods)
            ]
            await asyncio.gather(*(provider.create_pod(p, PodResources()) for p in specs))
            running: set[str] = set()
            async for bp in provider.status_changes():
                if bp.status["phase"] == "Running":
                    running.add(bp.uid)
                if len(running) == pods:
                    break
            elapsed = time.monotonic() - started
            stats = sim.stats()
            burst_calls = _total(stats) - base
            print(f"{pods} pods Running in {elapsed:.1f} s; {burst_calls} ECI calls = {burst_calls / pods:.2f} per pod")
            print("  by action:", {k: v for k, v in stats["calls"].items() if v})
            # Let the SinceSecond window slide past the burst, then count a quiet period.
            await asyncio.sleep(settings.status_poll_interval_seconds * 2 + 10)
            before = dict(sim.stats()["calls"])
            await asyncio.sleep(quiet)
            after = sim.stats()["calls"]
            idle = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
            n = sum(idle.values())
            print(f"quiet {quiet:.0f} s: {n} calls = {n * 60 / quiet:.1f} calls/min {idle}")
            await provider.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--quiet-seconds", type=float, default=15)
    ap.add_argument("--latency", default="fast")
    args = ap.parse_args()
    asyncio.run(main(args.pods, args.quiet_seconds, args.latency))
