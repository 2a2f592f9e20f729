"""High availability: two `vk-provider run` processes on one node name, and two virtual nodes in one sandbox.

Each replica has its own kubeconfig user and its own AccessKey, so the sandbox counts its API writes
(``write_requests`` by user) and its ECI calls (``calls_by_key``) apart. The leader is killed (SIGKILL)
in the middle of a 200-pod burst, paused past its Lease (SIGSTOP, SIGCONT) or stopped (SIGTERM); the
standby must take over without a duplicate group, without the node turning NotReady, and the paused
leader must write nothing once it resumes.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import NODE, REAL, Stack, StackFactory, daemon_flags, running_ready
from tests.e2e.processes import daemon_env, groups_by_uid, log_line, log_tail, node_ready, start_daemon, stop_daemon
from tests.kubectl import Kubectl
from tests.waiting import eventually
from vk_provider.app import Daemon
from vk_provider.eci.client import changes_something
from vk_provider.settings import load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

LEASE = f"/apis/coordination.k8s.io/v1/namespaces/default/leases/vk-eci-{NODE}"
# Short timings so that a takeover after a kill takes seconds (the SIGTERM handover uses the defaults).
FAST = {"ha.lease_duration_seconds": 4, "ha.renew_deadline_seconds": 2.5, "ha.retry_period_seconds": 0.5}
BURST = 200


@dataclass
class Replica:
    name: str
    env: dict[str, str]
    log: Path
    key_id: str
    user: str
    metrics: str = ""
    kubelet_port: int = 0
    proc: asyncio.subprocess.Process | None = None
    exit_codes: list[int] = field(default_factory=list)

    async def start(self) -> None:
        """Start the process and learn from its log the ports it bound (it binds port 0 for both)."""
        since = self.log.stat().st_size if self.log.exists() else 0
        self.proc = await start_daemon(self.env, self.log)
        started = await log_line(self.proc, self.log, "daemon started", since=since)
        self.metrics, self.kubelet_port = str(started["metrics"]), int(started["kubelet_port"])

    async def metric_values(self) -> dict[str, float]:
        async with aiohttp.ClientSession() as http, http.get(self.metrics) as r:
            text = await r.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def log_tail(self) -> str:
        return log_tail(self.log)

    async def standing_by(self) -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(self.metrics.replace("/metrics", "/readyz")) as r:
                return r.status == 200 and "standby" in await r.text()
        except aiohttp.ClientError:
            return False


def make_replica(stack: Stack, tmp_path: Path, name: str, **extra: Any) -> Replica:
    key_id, secret = f"AK-{name}", f"secret-of-{name}"
    stack.sim.access_keys[key_id] = secret  # the simulator accepts several AccessKeys and counts them apart
    directory = tmp_path / name
    directory.mkdir()
    user = f"replica-{name}"
    kubeconfig = stack.apiserver.user_kubeconfig(directory / "kubeconfig", user=user, groups=["system:masters"])
    # A serving certificate from the cluster CA, as the CSR flow would give each replica.
    cert, key = stack.apiserver.ca.issue(
        f"system:node:{NODE}", ["system:nodes"], ip_addresses=["127.0.0.1"], client=False, server=True
    )
    (directory / "tls.crt").write_bytes(cert)
    (directory / "tls.key").write_bytes(key)
    env = daemon_env(
        stack,
        directory,
        **{
            "kube.kubeconfig": str(kubeconfig),
            "eci.access_key_id": key_id,
            "eci.access_key_secret": secret,
            "kubelet.tls_mode": "files",
            "kubelet.cert_file": str(directory / "tls.crt"),
            "kubelet.key_file": str(directory / "tls.key"),
            "ha.identity": name,
            "ha.namespace": "default",
            "ha.standby_poll_interval_seconds": 2,
            **extra,
        },
    )
    return Replica(name, env, directory / "daemon.log", key_id, user)


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        if r.proc is not None:
            await stop_daemon(r.proc)


async def holder(stack: Stack) -> str | None:
    lease = await stack.kube.get_or_none(LEASE)
    return None if lease is None else str(lease["spec"].get("holderIdentity") or "")


async def leads(stack: Stack, r: Replica) -> None:
    async def check() -> bool:
        return await holder(stack) == r.name and await node_ready(stack)

    await eventually(
        check,
        timeout=30,
        interval=0.2,
        what=lambda: f"{r.name} to lead with the node Ready; its log ends:\n{r.log_tail()}",
    )


async def leader_and_standby(
    stack: Stack, tmp_path: Path, replicas: list[Replica], **flags: Any
) -> tuple[Replica, Replica]:
    """Replica a started first and leading (the node Ready), then b standing by with its watch synced."""
    a, b = make_replica(stack, tmp_path, "a", **flags), make_replica(stack, tmp_path, "b", **flags)
    replicas += [a, b]
    await a.start()
    await leads(stack, a)
    await b.start()
    await eventually(
        b.standing_by, timeout=30, interval=0.2, what=lambda: f"b standing by; its log ends:\n{b.log_tail()}"
    )
    return a, b


def eci_writes(stack: Stack, r: Replica) -> int:
    return sum(n for action, n in stack.sim.calls_by_key.get(r.key_id, {}).items() if changes_something(action))


async def kubelet_port_of_node(stack: Stack) -> int:
    node = await stack.kube.get(f"/api/v1/nodes/{NODE}")
    return int(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])


def sleeper(name: str, node: str = NODE) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]},
    }


class ReadyWatch:
    """Samples the node's Ready condition until stopped: a failover must never show NotReady."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.samples: Counter[bool] = Counter()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples[await node_ready(self.stack)] += 1
            await asyncio.sleep(0.1)

    async def stop(self) -> Counter[bool]:
        self._task.cancel()
        return self.samples


def api_writes(stack: Stack, user: str) -> int | None:
    """Write requests the API server saw from ``user``: the sandbox counts them; the real API server has no such
    counter (its audit log would have), so there the ECI calls, counted by the simulator, carry the check."""
    return None if REAL else stack.apiserver.write_requests.get(user, 0)


async def test_sigkill_of_the_leader_mid_burst(
    make_stack: StackFactory, tmp_path: Path, replicas: list[Replica], kubectl_env: dict[str, str]
) -> None:
    """The standby takes over: every pod Running, one group per pod, the node Ready all along, kubectl exec
    through the new leader; the standby wrote nothing while it stood by."""
    stack = await make_stack(runtime="virtual", daemon=False)
    a, b = await leader_and_standby(stack, tmp_path, replicas, **FAST)
    ready = ReadyWatch(stack)

    sem = asyncio.Semaphore(25)

    async def create(i: int) -> None:
        async with sem:
            await stack.create_pod(sleeper(f"burst-{i:03d}"))

    creator = asyncio.gather(*(create(i) for i in range(BURST)))

    async def some_groups() -> bool:
        return sum(groups_by_uid(stack).values()) >= 40

    await eventually(some_groups, timeout=30, interval=0.2, what="the first groups")
    standby = await b.metric_values()
    assert standby["vk_leader"] == 0.0
    assert standby.get("vk_pod_status_writes_total", 0.0) == 0.0
    assert eci_writes(stack, b) == 0 and api_writes(stack, b.user) in (0, None)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    assert await a.proc.wait() == -signal.SIGKILL
    killed_at = sum(groups_by_uid(stack).values())
    await creator
    assert killed_at < BURST, "the burst finished before the kill; the test proved nothing"

    async def b_leads() -> bool:
        return await holder(stack) == "b"

    await eventually(b_leads, timeout=30, interval=0.2, what="b to take the Lease")

    async def all_running() -> bool:
        pods = await stack.kube.get("/api/v1/namespaces/default/pods")
        return sum(1 for p in pods["items"] if running_ready(p)) == BURST

    await eventually(all_running, timeout=120, interval=0.2, what=f"{BURST} pods Running after the takeover")
    samples = await ready.stop()
    pods = (await stack.kube.get("/api/v1/namespaces/default/pods"))["items"]
    live = groups_by_uid(stack)
    assert set(live) == {p["metadata"]["uid"] for p in pods}
    assert {uid: n for uid, n in live.items() if n != 1} == {}, "duplicate groups"
    assert samples[False] == 0 and samples[True] > 10, f"the node was seen NotReady: {samples}"

    # The node follows the leader: the API server's exec proxy reaches b.
    assert await kubelet_port_of_node(stack) == b.kubelet_port
    kubectl = Kubectl(kubectl_env, stack.apiserver.kubeconfig_path)
    out = await kubectl.ok("exec", "burst-000", "--", "echo", "through the new leader", timeout=60)
    assert out.strip() == "through the new leader"
    leader = await b.metric_values()
    assert leader["vk_leader"] == 1.0
    assert leader['vk_leader_transitions_total{transition="acquired"}'] == 1.0
    assert leader["vk_leader_takeover_seconds_count"] == 1.0


async def test_a_paused_leader_writes_nothing_after_it_resumes(
    make_stack: StackFactory, tmp_path: Path, replicas: list[Replica]
) -> None:
    """SIGSTOP past the Lease, the standby takes over and works, SIGCONT: the old leader makes no API write
    and no changing ECI call, and exits with code 3."""
    stack = await make_stack(runtime="virtual", daemon=False)
    a, b = await leader_and_standby(stack, tmp_path, replicas, **FAST)
    for i in range(5):
        await stack.create_pod(sleeper(f"before-{i}"))
    for i in range(5):
        await stack.wait_pod(f"before-{i}", running_ready, timeout=30)

    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)

    async def b_leads() -> bool:
        return await holder(stack) == "b"

    await eventually(b_leads, timeout=30, interval=0.2, what="b to take the Lease from the paused leader")
    # Work the paused leader's stale queue and watch would act on when it resumes.
    for i in range(3):
        await stack.create_pod(sleeper(f"after-{i}"))
    await stack.delete_pod("before-0")
    for i in range(3):
        await stack.wait_pod(f"after-{i}", running_ready, timeout=30)
    await stack.wait_pod("before-0", lambda p: p is None, timeout=30)
    eci_before, api_before = eci_writes(stack, a), api_writes(stack, a.user)

    a.proc.send_signal(signal.SIGCONT)
    assert await asyncio.wait_for(a.proc.wait(), 40) == 3, "a lost leader exits with code 3"
    await asyncio.sleep(0.5)  # anything it had sent would have arrived by now
    assert eci_writes(stack, a) == eci_before
    assert api_writes(stack, a.user) == api_before
    assert await holder(stack) == "b" and await node_ready(stack)
    assert await kubelet_port_of_node(stack) == b.kubelet_port
    log = a.log.read_text()
    assert "leadership lost" in log


async def test_sigterm_hands_over_within_two_seconds(
    make_stack: StackFactory, tmp_path: Path, replicas: list[Replica]
) -> None:
    """With the default timings (lease 15 s, retry 2 s): the stopping leader releases the Lease and the standby
    takes it within 2 s; events on the Node say so."""
    stack = await make_stack(runtime="virtual", daemon=False)
    a, b = await leader_and_standby(stack, tmp_path, replicas)
    await stack.create_pod(sleeper("steady"))
    await stack.wait_pod("steady", running_ready, timeout=30)

    assert a.proc is not None
    transitions = (await stack.kube.get(LEASE))["spec"].get("leaseTransitions") or 0
    a.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()

    async def b_leads() -> bool:
        return await holder(stack) == "b"

    await eventually(b_leads, timeout=10, interval=0.02, what="the handover")
    took = time.monotonic() - sent
    assert await asyncio.wait_for(a.proc.wait(), 30) == 0
    assert took < 2.0, f"handover took {took:.2f}s"

    # The Lease shows b as soon as its write is stored; b sets the gauge when the answer reaches it, just after.
    async def b_says_it_leads() -> bool:
        return (await b.metric_values())["vk_leader"] == 1.0

    await eventually(b_says_it_leads, timeout=5, interval=0.05, what="b's vk_leader gauge at 1")
    lease = await stack.kube.get(LEASE)
    assert lease["spec"]["leaseTransitions"] == transitions + 1

    async def events_say_so() -> bool:
        evs = await stack.kube.get(
            "/api/v1/namespaces/default/events", query={"fieldSelector": f"involvedObject.name={NODE}"}
        )
        reasons = {e.get("reason") for e in evs.get("items") or []}
        return {"LeaderElected", "LeaderReleased"} <= reasons

    await eventually(
        events_say_so, timeout=20, interval=0.2, what="LeaderElected and LeaderReleased events on the node"
    )
    assert await node_ready(stack)
    await stack.delete_pod("steady")
    await stack.wait_pod("steady", lambda p: p is None, timeout=30)


async def test_two_virtual_nodes_each_lead_and_collect_only_their_own_groups(make_stack: StackFactory) -> None:
    """One installation, two nodes (one per zone): each its own Lease and leader; each GC, run often and with
    no minimum age, leaves the other node's groups (whose pods it does not watch) alone."""
    stack = await make_stack(runtime="virtual", daemon=False)
    daemons: list[Daemon] = []
    nodes = ("vk-zone-a", "vk-zone-b")
    try:
        for zone, node in zip(("cn-hangzhou-a", "cn-hangzhou-b"), nodes, strict=True):
            flags = daemon_flags(
                stack.apiserver,
                stack.sim,
                stack.apiserver.directory.parent / node,
                **{
                    "node.name": node,
                    "node.zone": zone,
                    "kube.kubeconfig": str(stack.apiserver.kubeconfig_path),
                    "kubelet.tls_mode": "self-signed",
                    "pods.gc_interval_seconds": 0.3,
                    "pods.gc_min_age_seconds": 0,
                    "ha.namespace": "default",
                },
            )
            d = Daemon(load_settings(flags))
            daemons.append(d)
            await d.start()
        for d in daemons:
            await d.wait_ready(timeout=30)
        for node in nodes:
            for i in range(4):
                await stack.create_pod(sleeper(f"{node}-{i}", node=node))
        for node in nodes:
            for i in range(4):
                await stack.wait_pod(f"{node}-{i}", running_ready, timeout=30)
        before = {node: groups_by_uid(stack, node) for node in nodes}
        assert all(len(groups) == 4 for groups in before.values())
        for d in daemons:
            assert d.pods is not None
            assert await d.pods.gc.sweep() == 0
        await asyncio.sleep(1.0)  # several periodic GC rounds of both nodes
        assert {node: groups_by_uid(stack, node) for node in nodes} == before
        for d, node in zip(daemons, nodes, strict=True):
            lease = await stack.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/default/leases/vk-eci-{node}")
            assert d.elector is not None and lease["spec"]["holderIdentity"] == d.elector.identity
            obj = await stack.kube.get(f"/api/v1/nodes/{node}")
            assert obj["metadata"]["labels"]["topology.kubernetes.io/zone"] == d.settings.node.zone
    finally:
        for d in daemons:
            await d.stop()
