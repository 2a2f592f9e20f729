"""ECIProvider end to end against the ECI simulator: the real SDK, real signing. The front's own work —
create (adoption by a second provider), update, delete, ping and quota; the rooms behind it (index, poller,
placement, streams, listing) have their own tests."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from tests.eci.conftest import make_pod, until
from tests.waiting import eventually
from vk_provider.eci.provider import ECIProvider
from vk_provider.errors import TransientError
from vk_provider.provider import PodResources
from vk_provider.settings import ECISettings
from vk_sandbox.eci.server import ECISimulator


async def test_create_reaches_running_and_is_idempotent(provider: ECIProvider, sim: ECISimulator) -> None:
    """A created pod reaches Running with a podIP; a second create_pod makes no second group."""
    pod = make_pod("web", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-web", lambda b: b.status["phase"] == "Running")
    assert bp.status["podIP"] and bp.status["containerStatuses"][0]["state"]["running"]
    await provider.create_pod(pod, PodResources())
    assert sim.stats()["calls"]["CreateContainerGroup"] == 1
    # A restarted provider adopts the group instead of creating another one.
    other = ECIProvider(provider.settings, node_name="vk")
    try:
        await other.create_pod(pod, PodResources())
        assert [p.uid for p in await other.backend_pods()] == ["uid-web"]
    finally:
        await other.close()
    assert sim.stats()["calls"]["CreateContainerGroup"] == 1


async def test_calls_per_pod_for_a_burst(provider: ECIProvider, sim: ECISimulator) -> None:
    """Twenty pods reach Running with at most 3 ECI calls per pod (create + shared polling)."""
    await provider.poller.resync()
    before = sum(sim.stats()["calls"].values())
    pods = [make_pod(f"b{i}", ["sh", "-c", "sleep 30"]) for i in range(20)]
    await asyncio.gather(*(provider.create_pod(p, PodResources()) for p in pods))
    running: set[str] = set()

    async def watch() -> None:
        async for bp in provider.status_changes():
            if bp.status["phase"] == "Running":
                running.add(bp.uid)
            if len(running) == 20:
                return

    await asyncio.wait_for(watch(), 30)
    calls = sum(sim.stats()["calls"].values()) - before
    assert calls / 20 <= 3, calls


async def test_delete_then_gone(provider: ECIProvider) -> None:
    """delete_pod starts deletion; backend_pod turns None once the group is gone; deleting again is fine."""
    pod = make_pod("del", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-del", lambda b: b.status["phase"] == "Running")
    await provider.delete_pod(pod)

    async def gone() -> bool:
        return await provider.backend_pod(pod) is None

    await eventually(gone, timeout=15, interval=0.2, what="the deleted group to be gone")
    await provider.delete_pod(pod)
    await provider.delete_group("eci-doesnotexist")


async def test_ping_and_throttling_survive(provider: ECIProvider, sim: ECISimulator) -> None:
    """ping succeeds against the simulator, and a create under 50% throttling still succeeds by retrying."""
    provider._last_call_ok = 0.0  # force a real call
    before = sim.stats()["calls"].get("DescribeContainerGroupStatus", 0)
    await provider.ping()
    assert sim.stats()["calls"]["DescribeContainerGroupStatus"] == before + 1
    await sim.set_faults({"throttle": {"rate": 0.5, "code": "Throttling.User"}, "seed": 7})
    await provider.create_pod(make_pod("thr", ["sh", "-c", "sleep 30"]), PodResources())
    await sim.set_faults({"throttle": None})
    assert sim.stats()["calls"]["CreateContainerGroup"] >= 1


async def test_quota_from_list_usage(provider: ECIProvider) -> None:
    """quota() turns ListUsage's documented Attributes.MaxCpu into the node's cpu capacity (no other quota
    is documented)."""
    assert await provider.quota() == {"cpu": "100000"}


async def test_update_pod_changes_the_image(provider: ECIProvider, sim: ECISimulator) -> None:
    """A changed container image on a running pod becomes one UpdateContainerGroup call; same image, none."""
    pod = make_pod("upd", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-upd", lambda b: b.status["phase"] == "Running")
    await provider.update_pod(pod, PodResources())
    assert "UpdateContainerGroup" not in sim.stats()["calls"]
    pod["spec"]["containers"][0]["image"] = "busybox:1.36"
    await provider.update_pod(pod, PodResources())
    assert sim.stats()["calls"]["UpdateContainerGroup"] == 1


async def test_ping_raises_when_unreachable() -> None:
    """ping against an endpoint nobody serves raises TransientError (the node then counts the outage)."""
    settings = ECISettings(
        endpoint="http://127.0.0.1:9", access_key_id="a", access_key_secret=SecretStr("b"), max_retries=0
    )
    p = ECIProvider(settings, node_name="vk")
    try:
        with pytest.raises(TransientError):
            await p.ping()
    finally:
        await p.close()
