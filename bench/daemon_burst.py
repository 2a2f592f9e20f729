"""Benchmark: a burst of pods through the whole stack (not a test).

    .venv/bin/python bench/daemon_burst.py --pods 500

Starts the sandbox API server and the ECI simulator (virtual runtime, "fast" latency profile) in this
process and the daemon as a real `vk-provider run` subprocess, creates --pods pods at once, and measures
the time until every pod is Running, the ECI calls per pod (from the simulator's /_sim/stats counters),
and the daemon's CPU time and RSS. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from vk_provider.kube.client import KubeAPI
from vk_provider.settings import FIELDS
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.workers import WorkerSpec
from vk_sandbox.eci.server import ECISimulator

NODE = "vk-bench"
REAL_USER = "vk-bench-daemon"  # the daemon's user on the real control plane (not a node: NodeRestriction)
VK = str(Path(sys.executable).with_name("vk-provider"))
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_pod(i: int, *, command: list[str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The benchmarks' pod number ``i``, bound to the node: one busybox container ``main`` running ``command``
    (by default a long sleep)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{i:05d}", "annotations": annotations or {}},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "main", "image": "busybox", "command": command or ["sleep", "86400"]}],
        },
    }


@dataclass
class Bench:
    apiserver: SandboxAPIServer
    sim: ECISimulator
    kube: KubeAPI
    proc: asyncio.subprocess.Process
    metrics_port: int
    flags: dict[str, Any]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def eci_calls(self) -> Counter[str]:
        return Counter(self.sim.stats()["calls"])

    async def metric(self, name: str) -> float:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def phases(self) -> Counter[str]:
        pods = await self.kube.get("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={NODE}"})
        return Counter((p.get("status") or {}).get("phase") for p in pods.get("items") or [])

    async def create_pods(
        self,
        count: int,
        *,
        start: int = 0,
        concurrency: int = 50,
        command: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, float]:
        """Create pods bound to the node (one busybox container ``main`` running ``command``, by default a long
        sleep); return when each was created (bound), by pod UID (Unix seconds)."""
        sem = asyncio.Semaphore(concurrency)
        bound: dict[str, float] = {}

        async def one(i: int) -> None:
            async with sem:
                made = await self.kube.request(
                    "POST",
                    "/api/v1/namespaces/default/pods",
                    body=bench_pod(i, command=command, annotations=annotations),
                )
                bound[made["metadata"]["uid"]] = time.time()

        await asyncio.gather(*(one(i) for i in range(start, start + count)))
        return bound

    async def wait_running(self, count: int, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if (await self.phases()).get("Running", 0) >= count:
                return time.monotonic() - started
            await asyncio.sleep(0.25 if count <= 1000 else 2.0)  # listing 10k pods is not free
        raise TimeoutError(f"not all {count} pods Running within {timeout}s: {dict(await self.phases())}")


def daemon_flags(
    sim: ECISimulator,
    kubeconfig: Path,
    directory: Path,
    *,
    metrics_port: int,
    qps: float,
    workers: int,
    node: str = NODE,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings of a benchmarked `vk-provider run` against the simulator, on loopback."""
    return {
        "kube.kubeconfig": str(kubeconfig),
        "node.name": node,
        "node.internal_ip": "127.0.0.1",
        "eci.endpoint": sim.endpoint,
        "eci.region": sim.region,
        "eci.access_key_id": sim.access_key_id,
        "eci.access_key_secret": sim.access_key_secret,
        "eci.vswitch_ids": ["vsw-bench"],
        "eci.security_group_id": "sg-bench",
        "eci.cluster_name": "bench",
        # As the shipped ConfigMap sets it (kube-dns's address, here the sandbox's Service range's tenth as
        # kubeadm gives it): without it every ClusterFirst pod gets a NotSupported dnsPolicy Warning.
        "eci.cluster_dns": ["10.96.0.10"],
        "eci.rate_limit_qps": qps,
        "eci.rate_limit_burst": int(qps),
        "kubelet.port": free_port(),
        "kubelet.bind_address": "127.0.0.1",
        "kubelet.cert_dir": str(directory / "certs"),
        "metrics.port": metrics_port,
        "metrics.bind_address": "127.0.0.1",
        "pods.workers": workers,
        "log.level": "warning",
        "log.format": "json",
        **(extra or {}),
    }


def daemon_env(flags: dict[str, Any]) -> dict[str, str]:
    """This process's environment without VK_* settings and proxies, plus ``flags`` as VK_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VK_") and "proxy" not in k.lower()}
    for path, value in flags.items():
        env[FIELDS[path].env] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env


@contextlib.asynccontextmanager
async def bench_stack(
    directory: Path,
    *,
    workers: int = 32,
    qps: float = 1000,
    profile: str = "fast",
    runtime: str = "virtual",
    worker_nodes: WorkerSpec | None = None,
    real: bool = False,
    extra: dict[str, Any] | None = None,
    setup: Callable[[KubeAPI], Awaitable[None]] | None = None,
    command: Sequence[str] = (VK,),
) -> AsyncIterator[Bench]:
    """The API server and the simulator in this process, the daemon a subprocess. ``qps`` is the daemon's
    write rate limit (and burst); ``extra`` overrides any daemon setting by path; ``setup`` runs (as admin)
    before the daemon starts; ``runtime`` is the simulator's ("process": real container processes);
    ``command`` is what runs ``vk-provider`` (bench/heap_probe.py wraps it); ``worker_nodes`` adds worker nodes.
    ``real``: upstream's control plane (tests/controlplane, built by `make controlplane`) in processes of its own
    instead of the sandbox API server, kwok running the worker nodes; the daemon runs as a cluster-admin user that
    is not a node (NodeRestriction) and this process approves its serving certificate, as an operator would."""
    async with contextlib.AsyncExitStack() as stack:
        apiserver: Any
        if real:
            from tests.controlplane.launcher import ControlPlane

            apiserver = ControlPlane(directory / "cluster")
            stack.callback(apiserver.stop)
            await asyncio.to_thread(apiserver.start)
            if worker_nodes is not None:
                await asyncio.to_thread(apiserver.add_workers, worker_nodes)
            kubeconfig = apiserver.user_kubeconfig(
                directory / "daemon.kubeconfig", user=REAL_USER, groups=["system:masters"]
            )
        else:
            apiserver = await stack.enter_async_context(
                SandboxAPIServer(directory=directory / "apiserver", workers=worker_nodes)
            )
            kubeconfig = apiserver.user_kubeconfig(
                directory / "node.kubeconfig", user=f"system:node:{NODE}", groups=["system:nodes", "system:masters"]
            )
        sim = await stack.enter_async_context(
            ECISimulator(directory=directory / "eci", runtime=runtime, latency_profile=profile)
        )
        metrics_port = free_port()
        flags = daemon_flags(
            sim,
            kubeconfig,
            directory,
            metrics_port=metrics_port,
            qps=qps,
            workers=workers,
            extra={
                "elastic.webhook_port": free_port(),
                "elastic.webhook_bind_address": "127.0.0.1",
                **({"kubelet.csr_poll_seconds": 0.2} if real else {}),
                **(extra or {}),
            },
        )
        env = daemon_env(flags)
        cfg = k8s_client.Configuration()
        await k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig_path), client_configuration=cfg)
        kube = KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=60)
        stack.push_async_callback(kube.close)
        if real:
            from tests.controlplane.approver import approve_serving_csrs

            approver = asyncio.create_task(approve_serving_csrs(kube, REAL_USER))
            stack.callback(approver.cancel)
        if setup is not None:
            await setup(kube)
        with (directory / "daemon.log").open("ab") as out:
            proc = await asyncio.create_subprocess_exec(*command, "run", env=env, stdout=out, stderr=out)
        bench = Bench(apiserver, sim, kube, proc, metrics_port, flags)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                node = await kube.get_or_none(f"/api/v1/nodes/{NODE}")
                conds = ((node or {}).get("status") or {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    break
                await asyncio.sleep(0.2)
            else:
                raise TimeoutError("the node never became Ready")
            yield bench
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def table(rows: list[tuple[str, str]], head: tuple[str, str] = ("Measure", "Value")) -> str:
    out = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    out += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out)


async def run_burst(pods: int, timeout: float) -> int:
    with tempfile.TemporaryDirectory(prefix="vk-bench-") as tmp:
        async with bench_stack(Path(tmp)) as b:
            calls0, cpu0 = b.eci_calls(), b.cpu_seconds()
            t0 = time.monotonic()
            creating = asyncio.ensure_future(b.create_pods(pods))
            elapsed = await b.wait_running(pods, timeout)
            await creating
            total = time.monotonic() - t0
            created_in = elapsed  # measured from the first POST
            calls = b.eci_calls() - calls0
            cpu = b.cpu_seconds() - cpu0
            n_calls = sum(calls.values())
            rows = [
                ("pods", str(pods)),
                ("first POST → all Running (s)", f"{created_in:.1f}"),
                ("wall time incl. client creates (s)", f"{total:.1f}"),
                ("ECI calls (total)", str(n_calls)),
                ("ECI calls per pod", f"{n_calls / pods:.2f}"),
                ("daemon CPU (s)", f"{cpu:.1f}"),
                ("daemon RSS (MB)", f"{b.rss_mb():.0f}"),
                ("status writes", f"{await b.metric('vk_pod_status_writes_total'):.0f}"),
            ]
            print(f"## Burst of {pods} pods (virtual runtime, fast latency)\n")
            print(table(rows))
            print()
            print(table([(k, str(v)) for k, v in sorted(calls.items())], ("ECI action", "Calls")))
            return 0 if created_in <= 30 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    return asyncio.run(run_burst(args.pods, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
