"""Benchmark: leader failover under load (not a test).

    .venv/bin/python -m bench.failover --pods 1000 --kills 10

Starts the sandbox API server and the ECI simulator (virtual runtime, "fast" latency) in this process and
two `vk-provider run` replicas of one virtual node (default ``ha.*`` timings: lease 15 s, renew 10 s,
retry 2 s). Once --pods pods run, it kills (SIGKILL) the leader --kills times while a pod is created
every --create-interval seconds, and measures for each kill:

- kill → Lease acquired by the standby (the Lease's acquireTime minus the kill's wall time; both
  replicas share this machine's clock), which the lease duration bounds from below by design;
- Lease acquired → the container group of the first pod created after the kill exists in the simulator
  (the takeover proper: the new leader's catch-up poll, adoption, Node write, workers, its create), and
  → that pod Running (plus the group starting and the next status poll, every 3 s);
- kill → that pod Running.

For comparison it first measures the same stack without a failover: a pod created while the leader runs,
→ its group created and → Running (the baseline of the last two measures).

The killed replica is restarted as the next standby, and the next kill waits until it stands by with a
warm index. Prints Markdown tables (p50/p99 over the kills).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from bench.daemon_burst import VK, daemon_env, daemon_flags, free_port, table
from vk_provider.kube.client import KubeAPI
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.eci.server import ECISimulator

NODE = "vk-failover"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/default/leases/vk-eci-{NODE}"


@dataclass
class Replica:
    name: str
    env: dict[str, str]
    log: Path
    metrics_port: int
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(VK, "run", env=self.env, stdout=out, stderr=out)

    async def standing_by(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{self.metrics_port}/readyz") as r,
            ):
                return r.status == 200 and "standby" in await r.text()
        except aiohttp.ClientError:
            return False

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def micro_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def until(check: Any, timeout: float, what: str, period: float = 0.05) -> float:
    """Poll ``check`` until true; the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(period)
    raise TimeoutError(f"timed out waiting for {what}")


@asynccontextmanager
async def stack(directory: Path) -> AsyncIterator[tuple[ECISimulator, KubeAPI, list[Replica]]]:
    async with (
        SandboxAPIServer(directory=directory / "apiserver") as apiserver,
        ECISimulator(directory=directory / "eci", runtime="virtual", latency_profile="fast") as sim,
    ):
        kubeconfig = apiserver.user_kubeconfig(
            directory / "node.kubeconfig", user=f"system:node:{NODE}", groups=["system:nodes", "system:masters"]
        )
        replicas = []
        for name in ("a", "b"):
            metrics_port = free_port()
            flags = daemon_flags(
                sim,
                kubeconfig,
                directory / name,
                metrics_port=metrics_port,
                qps=1000,
                workers=32,
                node=NODE,
                extra={
                    "ha.namespace": "default",
                    "log.level": "info",
                    "elastic.webhook_port": free_port(),
                    "elastic.webhook_bind_address": "127.0.0.1",
                },
            )
            env = daemon_env(flags)
            env["POD_NAME"] = name
            (directory / name).mkdir()
            replicas.append(Replica(name, env, directory / name / "daemon.log", metrics_port))
        cfg = k8s_client.Configuration()
        await k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig_path), client_configuration=cfg)
        kube = KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=60)
        try:
            yield sim, kube, replicas
        finally:
            for r in replicas:
                await r.stop()
            await kube.close()


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "86400"]}]},
    }


async def create_many(kube: KubeAPI, names: list[str], concurrency: int = 50) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with sem:
            await kube.request("POST", "/api/v1/namespaces/default/pods", body=pod(name))

    await asyncio.gather(*(one(n) for n in names))


async def running_count(kube: KubeAPI) -> int:
    pods = await kube.get("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={NODE}"})
    return sum(1 for p in pods.get("items") or [] if (p.get("status") or {}).get("phase") == "Running")


async def phase(kube: KubeAPI, name: str) -> str | None:
    obj = await kube.get_or_none(f"/api/v1/namespaces/default/pods/{name}")
    return None if obj is None else (obj.get("status") or {}).get("phase")


async def holder(kube: KubeAPI) -> str:
    lease = await kube.get_or_none(LEASE)
    return "" if lease is None else str((lease.get("spec") or {}).get("holderIdentity") or "")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(pods: int, kills: int, create_interval: float, timeout: float, warm_seconds: float) -> int:
    tmp = tempfile.mkdtemp(prefix="vk-failover-")
    try:
        code = await _run(Path(tmp), pods, kills, create_interval, timeout, warm_seconds)
    except BaseException:
        print(f"failed; the replicas' logs are kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return code


async def _run(tmp: Path, pods: int, kills: int, create_interval: float, timeout: float, warm_seconds: float) -> int:
    async with stack(tmp) as (sim, kube, replicas):
        first, second = replicas
        await first.start()

        async def first_leads() -> bool:
            return (await holder(kube)).startswith(first.name + "-")

        await until(first_leads, 60, "the first leader", 0.2)
        await second.start()
        await until(second.standing_by, 60, "the standby", 0.2)
        t0 = time.monotonic()
        await create_many(kube, [f"p-{i:05d}" for i in range(pods)])

        async def all_running() -> bool:
            return await running_count(kube) >= pods

        await until(all_running, timeout, f"{pods} pods Running", 1.0 if pods > 1000 else 0.25)
        print(f"{pods} pods Running in {time.monotonic() - t0:.1f} s", flush=True)
        base_created: list[float] = []
        base_running: list[float] = []
        for k in range(5):
            posted = time.monotonic()
            base_uid = (await kube.request("POST", "/api/v1/namespaces/default/pods", body=pod(f"base-{k}")))[
                "metadata"
            ]["uid"]

            async def base_group(base_uid: str = base_uid) -> bool:
                return any(dict(g.tags).get("vk-eci/uid") == base_uid for g in sim.engine.groups.values())

            base_created.append(await until(base_group, 60, "a baseline group") - posted)

            async def base_up(k: int = k) -> bool:
                return await phase(kube, f"base-{k}") == "Running"

            base_running.append(await until(base_up, 60, "a baseline pod Running") - posted)
        print(
            f"baseline without failover: group created {statistics.median(base_created):.2f} s, "
            f"Running {statistics.median(base_running):.2f} s after the POST (median of 5); {kills} kills follow",
            flush=True,
        )

        # Pods keep being created throughout, one every create_interval (bounded by the kills' count).
        created = 0
        stop_creating = asyncio.Event()

        async def trickle() -> None:
            nonlocal created
            while not stop_creating.is_set() and created < kills * 200:
                await kube.request("POST", "/api/v1/namespaces/default/pods", body=pod(f"t-{created:05d}"))
                created += 1
                await asyncio.sleep(create_interval)

        trickler = asyncio.ensure_future(trickle())
        acquired_s: list[float] = []
        first_pod_s: list[float] = []
        created_s: list[float] = []
        kill_to_pod_s: list[float] = []
        by_name = {r.name: r for r in replicas}
        try:
            for k in range(kills):
                leader = by_name[(await holder(kube)).split("-")[0]]
                standby = next(r for r in replicas if r is not leader)
                await asyncio.sleep(warm_seconds)  # the standby's index warm, pods being created
                await until(standby.standing_by, 120, f"{standby.name} standing by before kill {k + 1}", 0.5)
                assert leader.proc is not None
                killed_wall, killed = time.time(), time.monotonic()
                leader.proc.send_signal(signal.SIGKILL)
                await leader.proc.wait()
                probe = f"probe-{k:02d}"
                probe_uid = (await kube.request("POST", "/api/v1/namespaces/default/pods", body=pod(probe)))[
                    "metadata"
                ]["uid"]

                async def taken(standby: Replica = standby) -> bool:
                    return (await holder(kube)).startswith(standby.name + "-")

                await until(taken, 120, "the takeover")
                lease = await kube.get(LEASE)
                acquired = micro_time(lease["spec"]["acquireTime"]) - killed_wall

                async def group_created(probe_uid: str = probe_uid) -> bool:
                    return any(dict(g.tags).get("vk-eci/uid") == probe_uid for g in sim.engine.groups.values())

                await until(group_created, 120, f"{probe}'s group")
                created_s.append(time.time() - killed_wall - acquired)

                async def probe_running(probe: str = probe) -> bool:
                    return await phase(kube, probe) == "Running"

                running_at = await until(probe_running, 120, f"{probe} Running")
                acquired_s.append(acquired)
                kill_to_pod_s.append(running_at - killed)
                first_pod_s.append(running_at - killed - acquired)
                print(
                    f"kill {k + 1}: acquired after {acquired:.2f} s, probe's group created {created_s[-1]:.2f} s "
                    f"and probe Running "
                    f"{first_pod_s[-1]:.2f} s later ({kill_to_pod_s[-1]:.2f} s after the kill)",
                    flush=True,
                )
                await leader.start()  # back as the standby
                await until(leader.standing_by, 120, "the restarted standby", 0.2)
        finally:
            stop_creating.set()
            await trickler
        total = pods + created + kills + 5
        await until(lambda: _all(kube, total), timeout, "every pod Running", 1.0)
        rows = [
            ("pods running at the kills", f"{pods} (+{created} created during the kills)"),
            ("kills", str(kills)),
            ("kill → Lease acquired, p50 / p99 (s)", f"{pct(acquired_s, 0.5):.2f} / {pct(acquired_s, 0.99):.2f}"),
            (
                "Lease acquired → first new pod's group created, p50 / p99 (s)",
                f"{pct(created_s, 0.5):.2f} / {pct(created_s, 0.99):.2f}",
            ),
            (
                "Lease acquired → first new pod Running, p50 / p99 (s)",
                f"{pct(first_pod_s, 0.5):.2f} / {pct(first_pod_s, 0.99):.2f}",
            ),
            (
                "kill → first new pod Running, p50 / p99 (s)",
                f"{pct(kill_to_pod_s, 0.5):.2f} / {pct(kill_to_pod_s, 0.99):.2f}",
            ),
            ("mean kill → acquired (s)", f"{statistics.mean(acquired_s):.2f}"),
            (
                "baseline, no failover: POST → group created / → Running, median of 5 (s)",
                f"{statistics.median(base_created):.2f} / {statistics.median(base_running):.2f}",
            ),
        ]
        print(f"\n## Failover: {kills} leader kills at {pods} pods (virtual runtime, fast latency)\n")
        print(table(rows))
        target = 5.0 if pods <= 1000 else 30.0
        return 0 if pct(created_s, 0.99) <= target else 1


async def _all(kube: KubeAPI, total: int) -> bool:
    return await running_count(kube) >= total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--create-interval", type=float, default=0.5, help="seconds between pods created during kills")
    ap.add_argument("--warm-seconds", type=float, default=5.0, help="wait before each kill")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    return asyncio.run(run(args.pods, args.kills, args.create_interval, args.timeout, args.warm_seconds))


if __name__ == "__main__":
    sys.exit(main())
