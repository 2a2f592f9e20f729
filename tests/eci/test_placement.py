"""Creating a group through its NoStock plan, and the ContainerGroupScheduled event (placement.py): against
the ECI simulator, the scripted ECI endpoint, and on hand-made index entries."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eci.conftest import FakeECI, error, make_pod, make_settings, settings_for, until
from vk_provider.eci.index import Entry
from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.placement import plan_for
from vk_provider.eci.provider import ECIProvider
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import PermanentError
from vk_provider.provider import BackendPod, PodResources
from vk_sandbox.eci.server import ECISimulator


async def test_no_stock_tries_the_next_spec(provider: ECIProvider, sim: ECISimulator) -> None:
    """With 1-2Gi out of stock, a pod listing 1-2Gi,2-4Gi in eci-use-specs runs on 2-4Gi, with a NoStock event."""
    await sim.set_faults({"no_stock": {"specs": ["1-2"]}})
    pod = make_pod(
        "spot", ["sh", "-c", "sleep 30"], meta={"annotations": {"k8s.aliyun.com/eci-use-specs": "1-2Gi,2-4Gi"}}
    )
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-spot", lambda b: b.status["phase"] == "Running")
    assert any(e.reason == "NoStock" for e in bp.events)
    assert sim.stats()["calls"]["CreateContainerGroup"] == 2


async def test_no_stock_without_alternative_fails(provider: ECIProvider, sim: ECISimulator) -> None:
    """When every planned spec is out of stock the pod fails with the service's NoStock reason."""
    await sim.set_faults({"no_stock": {"specs": ["2-4"]}})
    pod = make_pod("nostock", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-nostock", lambda b: b.status["phase"] == "Failed")
    assert bp.status["reason"] == "NoStock"
    assert bp.status["message"].endswith("; tried 2-4Gi in vsw-a, no attempt left")
    assert not any(e.reason == "ContainerGroupScheduled" for e in bp.events)


async def test_no_stock_on_every_spec_and_vswitch_lists_them_all(sim: ECISimulator) -> None:
    """Two specs and two vSwitches, all out of stock: six attempts, and the failure lists every one."""
    await sim.set_faults({"no_stock": {"specs": ["1-2", "2-4"]}})
    p = ECIProvider(settings_for(sim, vswitch_ids=["vsw-a", "vsw-b"]), node_name="vk")
    await p.start()
    try:
        pod = make_pod(
            "all", ["sh", "-c", "sleep 30"], meta={"annotations": {"k8s.aliyun.com/eci-use-specs": "1-2Gi,2-4Gi"}}
        )
        await p.create_pod(pod, PodResources())
        bp = await until(p, "uid-all", lambda b: b.status["phase"] == "Failed", timeout=30)
    finally:
        for left in await p.backend_pods():
            await p.delete_group(left.group_id)
        await p.close()
    assert bp.status["reason"] == "NoStock"
    assert bp.status["message"].endswith(
        "; tried 1-2Gi in vsw-a,vsw-b; 1-2Gi in vsw-a; 1-2Gi in vsw-b; 2-4Gi in vsw-a,vsw-b; 2-4Gi in vsw-a; "
        "2-4Gi in vsw-b, no attempt left"
    )
    assert [e.reason for e in bp.events].count("NoStock") >= 5


async def test_created_group_gets_an_event_with_its_size_and_zone(provider: ECIProvider, sim: ECISimulator) -> None:
    """Once ECI has placed a group, the pod gets one Normal ContainerGroupScheduled event naming the size
    billed (vCPU, GiB) and the zone and vSwitch. Once the status stream has handed it over (the controller
    mirrors it once) the index holds it no more, nor the plan and request that only a NoStock retry needs."""
    pod = make_pod("sized", ["sh", "-c", "sleep 30"])
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1", "memory": "3Gi"}}
    await provider.create_pod(pod, PodResources())
    entry = provider.index.get("uid-sized")
    assert entry is not None and entry.plan and entry.request is not None
    published: list[BackendPod] = []

    def running(b: BackendPod) -> bool:
        published.append(b)
        return bool(b.status["phase"] == "Running")

    bp = await until(provider, "uid-sized", running)
    zone = sim.engine.groups[bp.group_id].zone
    assert zone
    scheduled = [e for b in published for e in b.events if e.reason == "ContainerGroupScheduled"]
    assert len(scheduled) == 1
    assert scheduled[0].type == "Normal"
    assert scheduled[0].message == f"container group {bp.group_id} runs as 1 vCPU, 4 GiB in zone {zone}, vSwitch vsw-a"
    entry = provider.index.get("uid-sized")
    assert entry is not None and entry.events == [] and entry.plan == () and entry.request is None
    again = await provider.backend_pod(pod)
    assert again is not None
    assert "ContainerGroupScheduled" not in [e.reason for e in again.events]


async def test_synchronous_no_stock_tries_next_spec_with_a_new_token(fake_eci: FakeECI) -> None:
    """A NoStock error from CreateContainerGroup moves to the next spec with its own ClientToken."""
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": [], "NextToken": ""}))
    fake_eci.script(
        "CreateContainerGroup",
        error("RecommendEmpty.InstanceTypeNoStock", "no stock"),
        (200, {"ContainerGroupId": "eci-2"}),
    )
    provider = ECIProvider(make_settings(fake_eci.endpoint), node_name="vk")
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "d",
            "uid": "u-1",
            "annotations": {"k8s.aliyun.com/eci-use-specs": "1-2Gi,2-4Gi"},
        },
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    try:
        await provider.create_pod(pod, PodResources())
    finally:
        await provider.close()
    creates = [p for a, p in fake_eci.calls if a == "CreateContainerGroup"]
    assert [(c["Cpu"], c["Memory"]) for c in creates] == [("1.0", "2.0"), ("2.0", "4.0")]
    assert creates[0]["ClientToken"] != creates[1]["ClientToken"]
    entry = provider.index.get("u-1")
    assert entry.group_id == "eci-2" and [e.reason for e in entry.events] == ["NoStock"]


async def test_synchronous_no_stock_on_the_last_attempt_fails_with_no_stock(fake_eci: FakeECI) -> None:
    """CreateContainerGroup refusing the last planned attempt for lack of stock is a PermanentError with
    reason NoStock (the pod fails with it), its message listing what was tried."""
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": [], "NextToken": ""}))
    fake_eci.script("CreateContainerGroup", error("RecommendEmpty.InstanceTypeNoStock", "no stock", 403))
    provider = ECIProvider(make_settings(fake_eci.endpoint, vswitch_ids=["vsw-a", "vsw-b"]), node_name="vk")
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "d",
            "uid": "u-1",
            "annotations": {"k8s.aliyun.com/eci-use-specs": "1-2Gi,ecs.c6.large"},
        },
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    try:
        with pytest.raises(PermanentError) as info:
            await provider.create_pod(pod, PodResources())
    finally:
        await provider.close()
    assert info.value.reason == "NoStock"
    assert info.value.message == (
        "ECI CreateContainerGroup failed: RecommendEmpty.InstanceTypeNoStock: no stock; tried 1-2Gi in vsw-a,vsw-b; "
        "1-2Gi in vsw-a; 1-2Gi in vsw-b; ecs.c6.large in vsw-a,vsw-b; ecs.c6.large in vsw-a; ecs.c6.large in vsw-b, "
        "no attempt left"
    )
    assert [a for a in fake_eci.actions() if a == "CreateContainerGroup"] == ["CreateContainerGroup"] * 6
    assert "u-1" not in provider.index


async def test_single_attempt_no_stock_fails_with_no_stock(fake_eci: FakeECI) -> None:
    """With one size and one vSwitch there is nothing to try next: NoStock at once, not ProviderFailed."""
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": [], "NextToken": ""}))
    fake_eci.script("CreateContainerGroup", error("NoStock", "The resource is out of stock"))
    provider = ECIProvider(make_settings(fake_eci.endpoint), node_name="vk")
    pod = {
        "metadata": {"name": "p", "namespace": "d", "uid": "u-1"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    try:
        with pytest.raises(PermanentError) as info:
            await provider.create_pod(pod, PodResources())
    finally:
        await provider.close()
    assert info.value.reason == "NoStock"
    assert info.value.message.endswith("; tried 2-4Gi in vsw-a, no attempt left")


def _placed(**fields: Any) -> ContainerGroup:
    base: dict[str, Any] = {
        "ContainerGroupId": "eci-1",
        "Status": "Pending",
        "ZoneId": "cn-hangzhou-k",
        "VSwitchId": "vsw-a",
        "Cpu": 2.0,
        "Memory": 4.0,
    }
    base.update(fields)
    return ContainerGroup(**base)


def _entry_for(provider: ECIProvider, annotations: dict[str, str] | None = None) -> Entry:
    pod = {
        "metadata": {"name": "p", "namespace": "d", "uid": "u-1", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    req = translate_pod(pod, PodResources(), provider.settings, "vk").request
    sizes = [(size, ["vsw-a"]) for size in req.sizes]
    entry = Entry(uid="u-1", namespace="d", name="p", group_id="eci-1", request=req, plan=sizes, tried=1)
    provider.index.put(entry)
    return entry


def test_scheduled_event_waits_for_placement_and_is_sent_once() -> None:
    """No event while the group is Scheduling (or Pending without a zone); then exactly one."""
    provider = ECIProvider(make_settings("http://127.0.0.1:9"), node_name="vk")
    entry = _entry_for(provider)
    for unplaced in (_placed(Status="Scheduling", ZoneId=""), _placed(ZoneId="")):
        entry.hold(unplaced)
        assert not [e for e in provider.feed.backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    entry.hold(_placed())
    first = [e for e in provider.feed.backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    entry.hold(_placed(Status="Running"))
    again = [e for e in provider.feed.backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    assert len(first) == 1 and again == first
    assert first[0].message == "container group eci-1 runs as 2 vCPU, 4 GiB in zone cn-hangzhou-k, vSwitch vsw-a"


def test_scheduled_event_names_instance_type_and_spot() -> None:
    """An instance type and a spot strategy are named, as ECI reports them."""
    provider = ECIProvider(make_settings("http://127.0.0.1:9"), node_name="vk")
    entry = _entry_for(provider, {"k8s.aliyun.com/eci-use-specs": "ecs.c6.large"})
    entry.hold(_placed(Status="Running", InstanceType="ecs.c6.large", SpotStrategy="SpotAsPriceGo", Memory=4.0))
    events = [e for e in provider.feed.backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    assert [e.message for e in events] == [
        "container group eci-1 runs as instance type ecs.c6.large (2 vCPU, 4 GiB), spot (SpotAsPriceGo) "
        "in zone cn-hangzhou-k, vSwitch vsw-a"
    ]


def test_adopted_group_is_not_announced_again() -> None:
    """A group found after a restart (no create request in memory) was announced by the daemon that made it."""
    provider = ECIProvider(make_settings("http://127.0.0.1:9"), node_name="vk")
    entry = Entry(uid="u-1", namespace="d", name="p", group_id="eci-1")
    entry.hold(_placed(Status="Running"))
    assert not [e for e in provider.feed.backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]


def test_spot_fallback_plans_pay_as_you_go_after_the_spot_attempts() -> None:
    """eci-spot-fallback: the spot attempts, then the same ones as NoSpot (no SpotDuration either); without it
    every attempt is spot, with SpotDuration sent."""
    ann = {
        "k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo",
        "k8s.aliyun.com/eci-spot-duration": "0",
        "k8s.aliyun.com/eci-use-specs": "1-2Gi,2-4Gi",
    }
    pod = make_pod("s", ["sleep", "1"], meta={"annotations": ann})
    req = translate_pod(pod, PodResources(), make_settings("http://127.0.0.1:1"), "vk").request
    assert [size.describe() for size, _ in plan_for(req)] == ["1-2Gi", "2-4Gi"]
    assert req.to_params()["SpotStrategy"] == "SpotAsPriceGo" and req.to_params()["SpotDuration"] == 0
    pod["metadata"]["annotations"]["k8s.aliyun.com/eci-spot-fallback"] = "true"
    req = translate_pod(pod, PodResources(), make_settings("http://127.0.0.1:1"), "vk").request
    plan = plan_for(req)
    assert [size.describe() for size, _ in plan] == ["1-2Gi", "2-4Gi", "1-2Gi pay-as-you-go", "2-4Gi pay-as-you-go"]
    last = req.to_params(size=plan[-1][0], vswitch_ids=plan[-1][1])
    assert "SpotStrategy" not in last and "SpotDuration" not in last


async def test_spot_fallback_runs_pay_as_you_go_without_spot_stock(provider: ECIProvider, sim: ECISimulator) -> None:
    """With no spot stock, a spot pod with eci-spot-fallback runs as a NoSpot group after a NoStock event."""
    await sim.set_faults({"no_stock": {"spot": True}})
    ann = {"k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo", "k8s.aliyun.com/eci-spot-fallback": "true"}
    await provider.create_pod(make_pod("fb", ["sleep", "30"], meta={"annotations": ann}), PodResources())
    bp = await until(provider, "uid-fb", lambda b: b.status["phase"] == "Running")
    assert any(e.reason == "NoStock" and "pay-as-you-go" in e.message for e in bp.events)
    assert sim.engine.groups[bp.group_id].spot_strategy == "NoSpot"
