"""End-to-end fixtures: an API server, the ECI simulator and the daemon, in one event loop.

Three tiers run the same tests, chosen by VK_E2E_TIER: ``sandbox`` (default) is the sandbox API server, fresh per
test; ``real`` is upstream's etcd, kube-apiserver, kube-controller-manager and kube-scheduler (tests/controlplane), one
cluster per session, emptied after each test; ``live`` is the user's cluster (KUBECONFIG) and real ECI, from
``python -m tests.e2e.live`` (``make e2e-live``), where tests marked ``simulator`` are skipped. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.approver import approve_serving_csrs
from tests.controlplane.launcher import ControlPlane
from tests.e2e import live
from tests.waiting import eventually
from vk_provider.app import Daemon
from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.settings import Settings, load_settings
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.workers import WorkerSpec
from vk_sandbox.eci.server import ECISimulator

DAEMON_USER = "vk-eci-e2e"
TIERS = ("sandbox", "real", "live")
TIER = os.environ.get("VK_E2E_TIER", "sandbox")
if TIER not in TIERS:
    raise pytest.UsageError(f"VK_E2E_TIER={TIER!r}: expected one of {', '.join(TIERS)}")
REAL = TIER == "real"
LIVE = TIER == "live"
if LIVE and live.missing(os.environ):
    raise pytest.UsageError(f"VK_E2E_TIER=live: set {', '.join(live.missing(os.environ))} ({live.DOCS})")
NODE = live.run_name(os.environ) if LIVE else "vk-e2e"
KUBELET_ADDRESS = live.kubelet_address(os.environ) if LIVE else None
NAMESPACES = itertools.count(1)  # the live tier's namespaces: <run>-1, <run>-2, ...
SLOW = 10 if LIVE else 1  # real ECI pulls images and starts groups in tens of seconds: waits stretch by this much


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the live tier, skip what needs the simulator, and what needs the API server to reach the daemon's kubelet
    port unless VK_LIVE_KUBELET_ADDRESS says how."""
    if not LIVE:
        return
    for item in items:
        if item.get_closest_marker("simulator"):
            item.add_marker(pytest.mark.skip(reason="needs the ECI simulator (live tier)"))
        elif item.get_closest_marker("kubelet_proxy") and KUBELET_ADDRESS is None:
            item.add_marker(
                pytest.mark.skip(reason="set VK_LIVE_KUBELET_ADDRESS: the API server must reach the daemon")
            )


def deployment(
    name: str, replicas: int, pod_spec: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods labelled ``app: <name>`` with this spec (and template annotations)."""
    template: dict[str, Any] = {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
    if annotations:
        template["metadata"]["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


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


def live_daemon_flags(directory: Path, **extra: Any) -> dict[str, Any]:
    """The live tier's daemon: real ECI from the environment; the kubelet port where VK_LIVE_KUBELET_ADDRESS says the
    API server reaches it (a CSR-signed certificate), else on loopback with a self-signed one."""
    flags: dict[str, Any] = {
        **live.live_flags(os.environ, NODE),
        "kubelet.cert_dir": str(directory / "kubelet-certs"),
        "metrics.port": 0,
        "metrics.bind_address": "127.0.0.1",
    }
    if KUBELET_ADDRESS is None:
        flags.update(
            {"node.internal_ip": "127.0.0.1", "kubelet.port": free_port(), "kubelet.bind_address": "127.0.0.1"}
        )
        flags["kubelet.tls_mode"] = "self-signed"
    else:
        flags.update({"node.internal_ip": KUBELET_ADDRESS[0], "kubelet.port": KUBELET_ADDRESS[1]})
        flags["kubelet.bind_address"] = "0.0.0.0"
    flags.update(extra)
    return flags


@dataclass
class Stack:
    """What a test gets. On the live tier there is no simulator and no API server of ours: ``sim`` and ``apiserver``
    say so when touched (mark such tests ``simulator``)."""

    _apiserver: SandboxAPIServer | ControlPlane | None
    _sim: ECISimulator | None
    daemon: Daemon | None
    kube: KubeAPI
    settings: Settings
    namespace: str = "default"  # the live tier gives each test its own (deleted after it)

    @property
    def sim(self) -> ECISimulator:
        if self._sim is None:
            raise RuntimeError("stack.sim: the live tier has no ECI simulator; mark this test @pytest.mark.simulator")
        return self._sim

    @property
    def apiserver(self) -> SandboxAPIServer | ControlPlane:
        if self._apiserver is None:
            raise RuntimeError("stack.apiserver: the live tier's cluster is not ours; mark this test simulator")
        return self._apiserver

    async def create_pod(self, pod: dict[str, Any], ns: str | None = None) -> dict[str, Any]:
        ns = ns or self.namespace
        pod = {"apiVersion": "v1", "kind": "Pod", **pod}
        spec = pod.setdefault("spec", {})
        spec.setdefault("nodeName", NODE)
        spec.setdefault(
            "tolerations", [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}]
        )
        return await self.kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)

    async def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.request("POST", path, body=obj)

    async def pod(self, name: str, ns: str | None = None) -> dict[str, Any] | None:
        return await self.kube.get_or_none(f"/api/v1/namespaces/{ns or self.namespace}/pods/{name}")

    async def wait_pod(
        self, name: str, check: Callable[[dict[str, Any] | None], bool], *, ns: str | None = None, timeout: float = 30
    ) -> dict[str, Any] | None:
        last: dict[str, Any] | None = None
        ns = ns or self.namespace

        async def matches() -> bool:
            nonlocal last
            last = await self.pod(name, ns)
            return check(last)

        def what() -> str:
            return f"pod {ns}/{name} to match; last status: {(last or {}).get('status')}"

        await eventually(matches, timeout=timeout * SLOW, interval=0.1 * SLOW, what=what)
        return last

    async def events(self, name: str, ns: str | None = None) -> list[dict[str, Any]]:
        out = await self.kube.get(
            f"/api/v1/namespaces/{ns or self.namespace}/events", query={"fieldSelector": f"involvedObject.name={name}"}
        )
        return list(out.get("items") or [])

    async def wait_event(
        self, name: str, reason: str, *, ns: str | None = None, timeout: float = 30, contains: str = ""
    ) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []
        ns = ns or self.namespace

        async def found() -> dict[str, Any] | None:
            seen[:] = await self.events(name, ns)
            matching = (e for e in seen if e.get("reason") == reason)
            return next((e for e in matching if contains.lower() in str(e.get("message")).lower()), None)

        def what() -> str:
            return f"a {reason} event on {ns}/{name}; got {[e.get('reason') for e in seen]}"

        return await eventually(found, timeout=timeout * SLOW, interval=0.1 * SLOW, what=what)

    async def logs(self, name: str, container: str | None = None, ns: str | None = None) -> str:
        query = {"container": container} if container else None
        return await self.kube.get_text(f"/api/v1/namespaces/{ns or self.namespace}/pods/{name}/log", query=query)

    async def delete_pod(self, name: str, ns: str | None = None, grace: int | None = None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        try:
            await self.kube.request("DELETE", f"/api/v1/namespaces/{ns or self.namespace}/pods/{name}", body=body)
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
    return await live.kube_api(str(apiserver.kubeconfig_path))


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
    after it (on the real tier the cluster is emptied instead). ``workers`` adds that many worker nodes of that
    capacity on either tier: the sandbox's hollow kubelets, or Nodes that kwok runs on the real tier
    (tests/controlplane/workers.py), Ready and schedulable before the test goes on. Test folders that import this
    fixture run on the sandbox tier only."""
    real_cluster: ControlPlane | None = request.getfixturevalue("real_cluster") if REAL else None
    cleanups: list[Callable[[], Awaitable[Any]]] = []

    async def live_factory(runtime: str = "virtual", daemon: bool = True, **flags: Any) -> Stack:
        assert daemon, "the live tier always runs the daemon (daemon=False tests are marked simulator)"
        settings = load_settings(live_daemon_flags(tmp_path, **flags))
        kube = await live.kube_api(os.environ["KUBECONFIG"])
        cleanups.append(kube.close)
        namespace = f"{NODE}-{next(NAMESPACES)}"
        labels = {live.RUN_LABEL: NODE}
        await kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace, "labels": labels}})
        cleanups.append(lambda: live.delete(kube, f"/api/v1/namespaces/{namespace}"))
        if KUBELET_ADDRESS is not None:  # the operator's part: approve the serving CSR of this run's node
            approver = asyncio.create_task(approve_serving_csrs(kube, None, prefix=f"csr-{NODE}-"))
            cleanups.append(lambda: cancel(approver))
        d = Daemon(settings)
        await d.start()
        cleanups.append(d.stop)
        # Before the daemon stops: the test's pods deleted, so the daemon deletes their groups (the runner's cleanup
        # deletes whatever is left, by the run's tag).
        cleanups.append(lambda: delete_pods_on_node(kube))
        await d.wait_ready(timeout=60)
        await d.wait_serving(timeout=60)
        return Stack(None, None, d, kube, settings, namespace)

    async def factory(
        runtime: str = "virtual", daemon: bool = True, workers: WorkerSpec | None = None, **flags: Any
    ) -> Stack:
        apiserver: SandboxAPIServer | ControlPlane
        if real_cluster is not None:
            apiserver = real_cluster
            if workers is not None and workers.count:
                await asyncio.to_thread(real_cluster.add_workers, workers)  # kwok's nodes; reset deletes them
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
        yield live_factory if LIVE else factory
    finally:
        for fn in reversed(cleanups):
            try:
                await fn()
            except Exception:
                pass
        if real_cluster is not None:
            await asyncio.to_thread(real_cluster.reset)  # a failure here is the test's error: the next needs it


async def delete_pods_on_node(kube: KubeAPI, timeout: float = 180) -> None:
    """Delete the pods bound to this run's node, in every namespace, and wait until they are gone."""

    async def pods() -> list[dict[str, Any]]:
        found = await kube.get("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={NODE}"})
        return list(found.get("items") or [])

    for pod in await pods():
        await live.delete(kube, f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}")

    async def gone() -> bool:
        return not await pods()

    await eventually(gone, timeout=timeout, interval=2, what=f"the pods on node {NODE} to be deleted")


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
