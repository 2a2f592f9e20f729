"""The virtual Node: registration, conditions, status patches, the Lease and backend outages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.kube.fakes import FakeKube
from tests.waiting import eventually
from vk_provider.kube.client import KubeError
from vk_provider.metrics import REGISTRY
from vk_provider.node.controller import NodeController
from vk_provider.settings import NodeSettings

NODE = "/api/v1/nodes/vk"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vk"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ping:
    def __init__(self) -> None:
        self.fail = False

    async def __call__(self) -> None:
        if self.fail:
            raise ConnectionError("ECI unreachable")


def make(kube: FakeKube, *, ready: list[bool] | None = None, **settings: Any) -> tuple[NodeController, Clock, Ping]:
    flags = ready if ready is not None else [True]
    clock, ping = Clock(), Ping()
    opts: dict[str, Any] = {"name": "vk", "internal_ip": "10.0.0.9", "zone": "cn-hangzhou-k", "labels": {"team": "a"}}
    opts.update(settings)
    ctl = NodeController(
        kube,  # type: ignore[arg-type]
        NodeSettings(**opts),
        region="cn-hangzhou",
        kubelet_port=10250,
        ping=ping,
        pods_ready=lambda: flags[0],
        clock=clock,
    )
    return ctl, clock, ping


def conds(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in kube.objects[NODE]["status"]["conditions"]}


async def test_register_creates_a_complete_node() -> None:
    """A new Node carries labels, taint, capacity, addresses, the kubelet port and nodeInfo; NotReady until synced."""
    kube = FakeKube()
    ready = [False]
    ctl, _, _ = make(kube, ready=ready)
    await ctl.register()
    node = kube.objects[NODE]
    labels = node["metadata"]["labels"]
    assert labels["type"] == "virtual-kubelet" and labels["kubernetes.io/role"] == "agent"
    assert labels["kubernetes.io/hostname"] == "vk" and labels["team"] == "a"
    assert labels["topology.kubernetes.io/region"] == "cn-hangzhou"
    assert labels["topology.kubernetes.io/zone"] == "cn-hangzhou-k"
    assert node["spec"]["taints"] == [
        {"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}
    ]
    st = node["status"]
    assert st["capacity"]["pods"] == "10000" and st["allocatable"] == st["capacity"]
    assert {"type": "InternalIP", "address": "10.0.0.9"} in st["addresses"]
    # The API server dials Hostname first and a virtual node's name resolves nowhere: it carries the IP.
    assert {"type": "Hostname", "address": "10.0.0.9"} in st["addresses"]
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert st["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert set(conds(kube)) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"}
    assert conds(kube)["Ready"]["status"] == "False"
    assert not ctl.ready_written.is_set()
    ready[0] = True
    await ctl.patch_status()
    assert conds(kube)["Ready"]["status"] == "True" and ctl.ready_written.is_set()


async def test_adopting_keeps_others_conditions_and_taints() -> None:
    """An existing Node is adopted: foreign conditions and taints survive, our taint is not duplicated."""
    kube = FakeKube()
    kube.put(
        NODE,
        {
            "metadata": {"name": "vk", "uid": "node-uid", "labels": {"keep": "me"}},
            "spec": {
                "taints": [
                    {"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"},
                    {"key": "other", "effect": "NoSchedule"},
                ]
            },
            "status": {"conditions": [{"type": "CustomOK", "status": "True"}]},
        },
    )
    ctl, _, _ = make(kube)
    await ctl.register()
    node = kube.objects[NODE]
    assert node["metadata"]["labels"]["keep"] == "me"
    assert len(node["spec"]["taints"]) == 2
    assert "CustomOK" in conds(kube) and conds(kube)["Ready"]["status"] == "True"
    assert ctl.uid == "node-uid"


async def test_transition_time_moves_only_on_change() -> None:
    """Heartbeats move lastHeartbeatTime but not lastTransitionTime unless the status flips."""
    kube = FakeKube()
    ready = [True]
    ctl, _, _ = make(kube, ready=ready)
    await ctl.register()
    first = conds(kube)["Ready"]["lastTransitionTime"]
    ctl._last_conditions["Ready"]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    await ctl.patch_status()
    assert conds(kube)["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    ready[0] = False
    await ctl.patch_status()
    assert conds(kube)["Ready"]["lastTransitionTime"] not in ("2020-01-01T00:00:00Z", None)
    assert first


async def test_lease_is_created_then_renewed() -> None:
    """The Lease lives in kube-node-lease, lasts 40 s, is owned by the Node, and is renewed in place."""
    kube = FakeKube()
    ctl, _, _ = make(kube)
    await ctl.register()
    await ctl.renew_lease()
    lease = kube.objects[LEASE]
    assert lease["spec"]["holderIdentity"] == "vk" and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == ctl.uid
    first = lease["spec"]["renewTime"]
    await asyncio.sleep(0.002)  # time passing is the subject: the next renewTime must differ
    await ctl.renew_lease()
    assert kube.objects[LEASE]["spec"]["renewTime"] != first
    assert len(kube.writes("PUT", "/leases/vk")) == 1


async def test_backend_outage_never_makes_the_node_not_ready() -> None:
    """Failed pings keep Ready True; past the grace NetworkUnavailable turns True; recovery clears it."""
    kube = FakeKube()
    ctl, clock, ping = make(kube, backend_outage_grace_seconds=300)
    await ctl.register()
    ping.fail = True
    assert await ctl.ping_once() is False
    await ctl.patch_status()
    assert conds(kube)["Ready"]["status"] == "True"
    assert conds(kube)["NetworkUnavailable"]["status"] == "False"
    clock.now += 301
    await ctl.ping_once()
    assert ctl.changed.is_set()
    await ctl.patch_status()
    assert conds(kube)["Ready"]["status"] == "True"
    assert conds(kube)["NetworkUnavailable"]["status"] == "True"
    assert conds(kube)["NetworkUnavailable"]["reason"] == "BackendUnreachable"
    ping.fail = False
    await ctl.ping_once()
    await ctl.patch_status()
    assert conds(kube)["NetworkUnavailable"]["status"] == "False"


async def test_a_short_outage_and_its_end_are_written_at_once() -> None:
    """Within the grace only the Ready message changes; both its start and its end still poke a write."""
    kube = FakeKube()
    ctl, _, ping = make(kube, backend_outage_grace_seconds=300)
    await ctl.register()
    await ctl.patch_status()
    ping.fail = True
    ctl.changed.clear()
    await ctl.ping_once()
    assert ctl.changed.is_set()
    await ctl.patch_status()
    assert "unreachable" in conds(kube)["Ready"]["message"]
    ping.fail = False
    ctl.changed.clear()
    await ctl.ping_once()
    assert ctl.changed.is_set()
    await ctl.patch_status()
    assert conds(kube)["Ready"]["message"] == "virtual kubelet is ready; ECI API reachable"


async def test_status_loop_writes_on_change_and_periodically() -> None:
    """run_status writes at once when poked with a change, and again after the interval."""
    kube = FakeKube()
    ready = [False]
    ctl, _, _ = make(kube, ready=ready, status_interval_seconds=0.2)
    await ctl.register()
    writes = ctl.status_writes
    task = asyncio.create_task(ctl.run_status())
    try:
        await asyncio.sleep(0)
        ready[0] = True
        ctl.notify()
        async with asyncio.timeout(0.15):
            await ctl.ready_written.wait()
        await eventually(
            lambda: ctl.status_writes >= writes + 2, timeout=2, interval=0.02, what="two more status writes"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_capacity_from_quota() -> None:
    """With capacity_from_quota, cpu/memory/pods come from the provider's quota; a failing quota keeps settings."""
    kube = FakeKube()

    async def quota() -> dict[str, str]:
        return {"cpu": "512", "pods": "300", "bogus": "x"}

    ctl = NodeController(
        kube,  # type: ignore[arg-type]
        NodeSettings(name="vk", capacity_from_quota=True),
        region="r",
        kubelet_port=1,
        ping=Ping(),
        pods_ready=lambda: True,
        quota=quota,
    )
    await ctl.register()
    cap = kube.objects[NODE]["status"]["capacity"]
    assert cap["cpu"] == "512" and cap["pods"] == "300" and cap["memory"] == "40Ti" and "bogus" not in cap

    async def broken() -> dict[str, str]:
        raise ConnectionError("down")

    ctl2 = NodeController(
        FakeKube(),  # type: ignore[arg-type]
        NodeSettings(name="vk", capacity_from_quota=True),
        region="r",
        kubelet_port=1,
        ping=Ping(),
        pods_ready=lambda: True,
        quota=broken,
    )
    await ctl2._load_quota()
    assert ctl2.capacity()["cpu"] == "10000"


async def test_pending_adoption_keeps_the_node_ready_and_says_why() -> None:
    """Ready waits for the first adoption listing; if it fails (ECI down at start) Ready=True anyway, with a
    message naming the pending adoption; the adoption state changing is worth an immediate write; once
    adopted the plain message returns."""
    kube = FakeKube()
    pending: list[tuple[str, str] | None] = [("listing", "listing existing ECI container groups for adoption")]
    ctl = NodeController(
        kube,  # type: ignore[arg-type]
        NodeSettings(name="vk"),
        region="r",
        kubelet_port=1,
        ping=Ping(),
        pods_ready=lambda: True,
        adoption_pending=lambda: pending[0],
    )
    await ctl.register()
    ready = conds(kube)["Ready"]
    assert ready["status"] == "False" and "listing existing ECI container groups" in ready["message"]
    assert not ctl.ready_written.is_set()
    written = ctl._written_sig
    pending[0] = ("failing", "existing ECI container groups not adopted yet: listing them failed (x), retrying")
    assert ctl._signature() != written
    await ctl.patch_status()
    ready = conds(kube)["Ready"]
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert "not adopted yet" in ready["message"] and "creating and deleting" in ready["message"]
    assert ctl.ready_written.is_set()
    pending[0] = ("failing", "existing ECI container groups not adopted yet: listing them failed (y), retrying")
    assert ctl._signature() == ctl._written_sig  # a new error text alone waits for the heartbeat
    pending[0] = None
    await ctl.patch_status()
    assert conds(kube)["Ready"]["message"] == "virtual kubelet is ready; ECI API reachable"


def lease_count(result: str) -> float:
    return REGISTRY.get_sample_value("vk_lease_renewals_total", {"result": result}) or 0.0


async def test_lease_renewal_failures_are_counted_too() -> None:
    """vk_lease_renewals_total counts every attempt: ok, a refusal by HTTP status, a timeout, a connection
    error, and a failed read of the Lease; run_lease survives all of them."""
    kube = FakeKube()
    ctl, _, _ = make(kube, lease_interval_seconds=0.01)
    await ctl.register()
    before = {r: lease_count(r) for r in ("ok", "403", "500", "timeout", "error")}
    await ctl.renew_lease()
    kube.fail_next[("PUT", LEASE)] = KubeError(403, "Forbidden", "leases is forbidden")
    with pytest.raises(KubeError):
        await ctl.renew_lease()
    kube.fail_next[("GET", LEASE)] = KubeError(500, "InternalError", "etcd timeout")  # the read fails
    with pytest.raises(KubeError):
        await ctl.renew_lease()
    real = kube.request
    failures: list[BaseException] = [TimeoutError(), ConnectionResetError("reset by peer"), ValueError("bad JSON")]

    async def flaky(method: str, path: str, **kw: Any) -> dict[str, Any]:
        if path == LEASE and failures:
            raise failures.pop(0)
        return await real(method, path, **kw)

    kube.request = flaky  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises((TimeoutError, ConnectionResetError, ValueError)):
            await ctl.renew_lease()
    after = {r: lease_count(r) - before[r] for r in before}
    assert after == {"ok": 1, "403": 1, "500": 1, "timeout": 1, "error": 2}
    # The loop logs and keeps going.
    failures.append(TimeoutError())
    task = asyncio.create_task(ctl.run_lease())
    try:
        await eventually(
            lambda: lease_count("ok") - before["ok"] >= 2, timeout=2, interval=0.01, what="two more renewals"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert lease_count("timeout") - before["timeout"] == 2
