"""Leader election against the sandbox API server's Leases: acquire, stand by, take over, release, fence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from vk_provider.election import LeaderElector, lease_name, lease_namespace, replica_identity
from vk_provider.fence import Fence
from vk_provider.kube.client import KubeAPI
from vk_provider.settings import HASettings
from vk_sandbox.apiserver.server import SandboxAPIServer

HA = HASettings(lease_duration_seconds=2, renew_deadline_seconds=1.0, retry_period_seconds=0.2)
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/vk-eci-n"


class Clock:
    """time.monotonic, plus a jump forward (a process stopped and resumed)."""

    def __init__(self) -> None:
        self.jump = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.jump


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeAPI]:
    async with SandboxAPIServer(directory=tmp_path / "apiserver", controllers=False) as srv:
        cfg = k8s_client.Configuration()
        await k8s_config.load_kube_config(config_file=str(srv.kubeconfig_path), client_configuration=cfg)
        api = KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=5)
        yield api
        await api.close()


def elector(kube: KubeAPI, identity: str, clock: Clock | None = None) -> LeaderElector:
    fence = Fence(clock or time.monotonic)
    return LeaderElector(
        kube, HA, namespace="default", name="vk-eci-n", identity=identity, fence=fence, clock=clock or time.monotonic
    )


async def run(e: LeaderElector) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(e.run())


async def test_one_replica_leads_and_a_second_stands_by(kube: KubeAPI) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    ta = await run(a)
    await asyncio.wait_for(a.leading.wait(), 5)
    tb = await run(b)
    try:
        lease = await kube.get(LEASE)
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 2
        assert a.fence.allowed() and not b.fence.allowed()
        first = lease["spec"]["renewTime"]
        await asyncio.sleep(3 * HA.lease_duration_seconds)  # renewals keep the standby out, for longer than a lease
        lease = await kube.get(LEASE)
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["renewTime"] != first
        assert not b.leading.is_set() and not b.fence.allowed()
    finally:
        ta.cancel()
        tb.cancel()


async def test_a_dead_leader_is_replaced_after_the_lease_and_its_fence_closed_first(kube: KubeAPI) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    ta = await run(a)
    await asyncio.wait_for(a.leading.wait(), 5)
    tb = await run(b)
    await asyncio.sleep(0.5)  # b has seen the record
    ta.cancel()  # a dies: no more renewals
    died = time.monotonic()
    await asyncio.wait_for(b.leading.wait(), 10)
    took = time.monotonic() - died
    try:
        assert not a.fence.allowed(), "the old leader's fence closed by its renew deadline, before the takeover"
        assert HA.lease_duration_seconds - HA.retry_period_seconds <= took <= HA.lease_duration_seconds + 1.5
        lease = await kube.get(LEASE)
        assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
        assert b.previous_holder == "a"
    finally:
        tb.cancel()


async def test_release_hands_over_within_a_poll(kube: KubeAPI) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    ta = await run(a)
    await asyncio.wait_for(a.leading.wait(), 5)
    tb = await run(b)
    await asyncio.sleep(0.3)
    ta.cancel()
    released = time.monotonic()
    await a.release()
    assert not a.fence.allowed()
    lease = await kube.get(LEASE)
    assert lease["spec"]["holderIdentity"] in ("", "b")  # released; the standby may have taken it already
    await asyncio.wait_for(b.leading.wait(), 5)
    try:
        assert time.monotonic() - released < HA.retry_period_seconds  # a standby reads every retry/2
        assert not a.lost.is_set()
    finally:
        tb.cancel()


async def test_a_paused_leader_resumes_fenced_and_never_writes_the_lease_again(kube: KubeAPI) -> None:
    clock = Clock()
    a = elector(kube, "a", clock)
    ta = await run(a)
    await asyncio.wait_for(a.leading.wait(), 5)
    await asyncio.sleep(HA.retry_period_seconds * 2)
    clock.jump = HA.lease_duration_seconds + 1  # as if SIGSTOPped past the lease, then SIGCONTed
    assert not a.fence.allowed(), "closed at once on resuming, before the elector ran"
    rv = (await kube.get(LEASE))["metadata"]["resourceVersion"]
    await asyncio.wait_for(a.lost.wait(), 5)
    await asyncio.sleep(HA.retry_period_seconds * 2)
    assert (await kube.get(LEASE))["metadata"]["resourceVersion"] == rv, "the lost leader wrote the Lease"
    assert ta.done()
    await a.release()  # a lost leader does not release what it no longer holds
    assert (await kube.get(LEASE))["metadata"]["resourceVersion"] == rv


async def test_a_leader_whose_lease_was_taken_loses_at_its_next_renewal(kube: KubeAPI) -> None:
    a = elector(kube, "a")
    ta = await run(a)
    await asyncio.wait_for(a.leading.wait(), 5)
    lease = await kube.get(LEASE)
    lease["spec"]["holderIdentity"] = "intruder"
    await kube.request("PUT", LEASE, body=lease)
    await asyncio.wait_for(a.lost.wait(), 5)
    assert not a.fence.allowed() and ta.done()


def test_defaults_name_the_lease_after_the_node_and_identities_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "vk-eci-7d9f")
    monkeypatch.setenv("POD_NAMESPACE", "vk-system")
    ha = HASettings()
    assert lease_name(ha, "virtual-node-eci-0") == "vk-eci-virtual-node-eci-0"
    assert lease_namespace(ha) == "vk-system"
    one, two = replica_identity(ha), replica_identity(ha)
    assert one.startswith("vk-eci-7d9f-") and one != two
    monkeypatch.delenv("POD_NAMESPACE")
    assert lease_namespace(ha, Path("/nonexistent")) == "default"
    assert lease_namespace(HASettings(namespace="x")) == "x"


def test_timings_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew_deadline_seconds < lease_duration_seconds"):
        HASettings(lease_duration_seconds=10, renew_deadline_seconds=10)


def test_the_lost_leadership_exit_code_is_the_one_cli_lists() -> None:
    from vk_provider import app, cli

    assert app.EXIT_LOST_LEADERSHIP == cli.EXIT_LOST_LEADERSHIP == 3
    assert (app.EXIT_OK, app.EXIT_FAILURE) == (cli.EXIT_OK, cli.EXIT_FAILURE)
