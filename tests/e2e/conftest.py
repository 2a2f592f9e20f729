"""End-to-end fixtures: an API server, the ECI simulator and the daemon, in one event loop.

Two tiers run the same tests, chosen by VK_E2E_TIER: ``sandbox`` (default) is the sandbox API server, fresh per test;
``real`` is upstream's etcd, kube-apiserver, kube-controller-manager and kube-scheduler (tests/controlplane), one
cluster per session, emptied after each test. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from tests.controlplane.approver import approve_serving_csrs
from tests.controlplane.launcher import ControlPlane
from tests.waiting import eventually
from vk_provider.app import Daemon
from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.settings import Settings, load_settings
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.workers import WorkerSpec
from vk_sandbox.eci.server import ECISimulator

NODE = "vk-e2e"
DAEMON_USER = "vk-eci-e2e"
TIERS = ("sandbox", "real")
TIER = os.environ.get("VK_E2E_TIER", "sandbox")
if TIER not in TIERS:
    raise pytest.UsageError(f"VK_E2E_TIER={TIER!r}: expected one of {', '.join(TIERS)}")
REAL = TIER == "real"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_flags(
    apiserver: SandboxAPIServer | ControlPlane, sim: ECISimulator, directory: Path, **extra: Any
) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "node.name": NODE,
        "node.internal_ip": "127.0.0.1",
        "eci.endpoint": sim.endpoint,
        "eci.region": sim.region,
        "eci.access_key_id": sim.access_key_id,
        "eci.access_key_secret": sim.access_key_secret,
        "eci.vswitch_ids": ["vsw-e2e"],
        "eci.security_group_id": "sg-e2e",
        "eci.cluster_name": "e2e",
        "eci.status_poll_interval_seconds": 0.5,
        "kubelet.port": free_port(),
        "kubelet.bind_address": "127.0.0.1",
        "kubelet.cert_dir": str(directory / "kubelet-certs"),
        "metrics.port": 0,
        "metrics.bind_address": "127.0.0.1",
        "elastic.webhook_port": 0,
        "elastic.webhook_bind_address": "127.0.0.1",
        "pods.retry_base_seconds": 0.2,
        "pods.retry_max_seconds": 2.0,
    }
    flags.update(extra)
    return flags


@dataclass
class Stack:
    apiserver: SandboxAPIServer | ControlPlane
    sim: ECISimulator
    daemon: Daemon | None
    kube: KubeAPI
    settings: Settings

    async def create_pod(self, pod: dict[str, Any], ns: str = "default") -> dict[str, Any]:
        pod = {"apiVersion": "v1", "kind": "Pod", **pod}
        spec = pod.setdefault("spec", {})
        spec.setdefault("nodeName", NODE)
        spec.setdefault(
            "tolerations", [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}]
        )
        return await self.kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)

    async def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.request("POST", path, body=obj)

    async def pod(self, name: str, ns: str = "default") -> dict[str, Any] | None:
        return await self.kube.get_or_none(f"/api/v1/namespaces/{ns}/pods/{name}")

    async def wait_pod(
        self, name: str, check: Callable[[dict[str, Any] | None], bool], *, ns: str = "default", timeout: float = 30
    ) -> dict[str, Any] | None:
        last: dict[str, Any] | None = None

        async def matches() -> bool:
            nonlocal last
            last = await self.pod(name, ns)
            return check(last)

        def what() -> str:
            return f"pod {ns}/{name} to match; last status: {(last or {}).get('status')}"

        await eventually(matches, timeout=timeout, interval=0.1, what=what)
        return last

    async def events(self, name: str, ns: str = "default") -> list[dict[str, Any]]:
        out = await self.kube.get(
            f"/api/v1/namespaces/{ns}/events", query={"fieldSelector": f"involvedObject.name={name}"}
        )
        return list(out.get("items") or [])

    async def wait_event(
        self, name: str, reason: str, *, ns: str = "default", timeout: float = 30, contains: str = ""
    ) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []

        async def found() -> dict[str, Any] | None:
            seen[:] = await self.events(name, ns)
            matching = (e for e in seen if e.get("reason") == reason)
            return next((e for e in matching if contains.lower() in str(e.get("message")).lower()), None)

        def what() -> str:
            return f"a {reason} event on {ns}/{name}; got {[e.get('reason') for e in seen]}"

        return await eventually(found, timeout=timeout, interval=0.1, what=what)

    async def logs(self, name: str, container: str | None = None, ns: str = "default") -> str:
        query = {"container": container} if container else None
        return await self.kube.get_text(f"/api/v1/namespaces/{ns}/pods/{name}/log", query=query)

    async def delete_pod(self, name: str, ns: str = "default", grace: int | None = None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await self.kube.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", body=body)
        except KubeError as exc:
            if not exc.not_found:
                raise


def running_ready(pod: dict[str, Any] | None) -> bool:
    if not pod:
        return False
    st = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return st.get("phase") == "Running" and ready and bool(st.get("podIP"))


def phase_is(*phases: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda p: bool(p) and (p or {}).get("status", {}).get("phase") in phases


async def admin_api(apiserver: SandboxAPIServer | ControlPlane) -> KubeAPI:
    cfg = k8s_client.Configuration()
    await k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig_path), client_configuration=cfg)
    return KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=30)


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane | None]:
    """The real tier's control plane, one per session; None on the sandbox tier."""
    if not REAL:
        yield None
        return
    cluster = ControlPlane(tmp_path_factory.mktemp("controlplane")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StackFactory]:
    """Start an API server (sandbox tier) + simulator (+ daemon unless daemon=False) for one test; all torn down
    after it (on the real tier the cluster is emptied instead). Test folders that import this fixture run on the
    sandbox tier only."""
    real_cluster: ControlPlane | None = request.getfixturevalue("real_cluster") if REAL else None
    cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def factory(
        runtime: str = "virtual", daemon: bool = True, workers: WorkerSpec | None = None, **flags: Any
    ) -> Stack:
        apiserver: SandboxAPIServer | ControlPlane
        if real_cluster is not None:
            apiserver = real_cluster
        else:
            apiserver = SandboxAPIServer(directory=tmp_path / "apiserver", workers=workers)
            await apiserver.__aenter__()
            cleanups.append(lambda: apiserver.__aexit__(None, None, None))
        sim = ECISimulator(directory=tmp_path / "eci", runtime=runtime)
        await sim.__aenter__()
        cleanups.append(lambda: sim.__aexit__(None, None, None))
        # The daemon runs as a cluster-admin user that is not a node: a real API server's NodeRestriction admission
        # refuses a node identity the Node labels the daemon sets (kubernetes.io/role). The operator's approver
        # approves its serving CSR; the sandbox CA or the real controller-manager signs it.
        daemon_kubeconfig = apiserver.user_kubeconfig(
            tmp_path / "daemon.kubeconfig", user=DAEMON_USER, groups=["system:masters"]
        )
        flags.setdefault("kube.kubeconfig", str(daemon_kubeconfig))
        flags.setdefault("kubelet.csr_poll_seconds", 0.2)
        settings = load_settings(daemon_flags(apiserver, sim, tmp_path, **flags))
        kube = await admin_api(apiserver)
        cleanups.append(kube.close)
        approver = asyncio.create_task(approve_serving_csrs(kube, DAEMON_USER))
        cleanups.append(lambda: cancel(approver))
        d: Daemon | None = None
        if daemon:
            d = Daemon(settings)
            await d.start()
            cleanups.append(d.stop)
            await d.wait_ready(timeout=30)
            await d.wait_serving(timeout=20)
        return Stack(apiserver, sim, d, kube, settings)

    try:
        yield factory
    finally:
        for fn in reversed(cleanups):
            try:
                await fn()
            except Exception:
                pass
        if real_cluster is not None:
            await asyncio.to_thread(real_cluster.reset)  # a failure here is the test's error: the next needs it


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
