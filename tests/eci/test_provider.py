"""ECIProvider end to end against the ECI simulator (process runtime): the real SDK, real signing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.eci.conftest import FakeECI, error, make_settings
from vk_provider.eci.models import ContainerGroup, ContainerState
from vk_provider.eci.provider import _NO_STATE, ECIProvider, _Entry, _held, _published
from vk_provider.eci.status import container_group_to_pod_status, group_events, is_no_stock
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import InvalidInput, NotFound, NotSupported, PermanentError, TransientError
from vk_provider.provider import BackendPod, LogOptions, PodResources
from vk_provider.settings import ECISettings
from vk_sandbox.eci.server import ECISimulator


@pytest.fixture
async def sim(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ECISimulator]:
    """The simulator; virtual runtime unless a test asks for real processes (indirect parameter)."""
    async with ECISimulator(directory=tmp_path / "eci", runtime=getattr(request, "param", "virtual")) as s:
        yield s


PROCESS = pytest.mark.parametrize("sim", ["process"], indirect=True)


def settings_for(sim: ECISimulator, **kw: Any) -> ECISettings:
    base: dict[str, Any] = {
        "endpoint": sim.endpoint,
        "region": sim.region,
        "access_key_id": sim.access_key_id,
        "access_key_secret": SecretStr(sim.access_key_secret),
        "vswitch_ids": ["vsw-a"],
        "security_group_id": "sg-a",
        "status_poll_interval_seconds": 0.2,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
    }
    base.update(kw)
    return ECISettings(**base)


@pytest.fixture
async def provider(sim: ECISimulator) -> AsyncIterator[ECIProvider]:
    p = ECIProvider(settings_for(sim), node_name="vk", log_poll_interval_seconds=0.2, stats_cache_seconds=0)
    await p.start()
    yield p
    # Delete what the test left behind and wait for it, so no container process outlives the test.
    for bp in await p.list_pods():
        await p.delete_group(bp.group_id)
    deadline = time.monotonic() + 15
    while sum(sim.stats()["groups"].values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await p.close()


def make_pod(name: str, command: list[str], *, uid: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid or f"uid-{name}", **spec.pop("meta", {})},
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": command}], **spec},
    }


async def until(provider: ECIProvider, uid: str, pred: Any, timeout: float = 20) -> BackendPod:
    async def watch() -> BackendPod:
        async for bp in provider.status_changes():
            if bp.uid == uid and pred(bp):
                return bp
        raise AssertionError("status stream ended")

    return await asyncio.wait_for(watch(), timeout)


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
        assert [p.uid for p in await other.list_pods()] == ["uid-web"]
    finally:
        await other.close()
    assert sim.stats()["calls"]["CreateContainerGroup"] == 1


async def test_calls_per_pod_for_a_burst(provider: ECIProvider, sim: ECISimulator) -> None:
    """Twenty pods reach Running with at most 3 ECI calls per pod (create + shared polling)."""
    await provider.resync()
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


@PROCESS
async def test_logs_follow_without_loss_or_duplicates(provider: ECIProvider) -> None:
    """logs -f returns every line exactly once across polls and ends when the container exits."""
    script = "for i in $(seq 1 12); do echo line-$i; sleep 0.1; done"
    pod = make_pod("logger", ["sh", "-c", script], restartPolicy="Never")
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-logger", lambda b: b.status["phase"] in ("Running", "Succeeded"))
    out = b""

    async def follow() -> None:
        nonlocal out
        async for chunk in provider.container_logs(pod, "app", LogOptions(follow=True)):
            out += chunk

    await asyncio.wait_for(follow(), 20)
    assert out.decode().splitlines() == [f"line-{i}" for i in range(1, 13)]


async def test_logs_unknown_container_is_not_found(provider: ECIProvider) -> None:
    """Logs of a container the pod does not have raise NotFound."""
    pod = make_pod("nolog", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    with pytest.raises(NotFound):
        async for _ in provider.container_logs(pod, "nope", LogOptions()):
            pass


@PROCESS
async def test_exec_carries_output_and_exit_code(provider: ECIProvider) -> None:
    """exec pumps stdin to the process and returns stdout, stderr and the exit code (`head -n 1`, since
    ECI's exec stream cannot pass stdin's end to a command without a TTY)."""
    pod = make_pod("ex", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-ex", lambda b: b.status["phase"] == "Running")
    sess = await provider.exec(pod, "app", ["sh", "-c", "head -n 1; echo err >&2; exit 3"], stdin=True, tty=False)
    try:
        await sess.write_stdin(b"from-stdin\n")
        await sess.close_stdin()
        got: dict[int, bytes] = {1: b"", 2: b""}
        async for ch, data in sess.output():
            got[ch] += data
        assert got == {1: b"from-stdin\n", 2: b"err\n"}
        assert await sess.exit_code() == 3
    finally:
        await sess.close()


async def test_attach_is_not_supported(provider: ECIProvider) -> None:
    """attach raises NotSupported with a reason instead of hanging."""
    with pytest.raises(NotSupported, match="attach"):
        await provider.attach(make_pod("a", ["true"]), "app", stdin=False, tty=False)


async def test_delete_then_gone(provider: ECIProvider) -> None:
    """delete_pod starts deletion; get_pod turns None once the group is gone; deleting again is fine."""
    pod = make_pod("del", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-del", lambda b: b.status["phase"] == "Running")
    await provider.delete_pod(pod)
    deadline = time.monotonic() + 15
    while await provider.get_pod(pod) is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    await provider.delete_pod(pod)
    await provider.delete_group("eci-doesnotexist")


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
        for left in await p.list_pods():
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
    billed (vCPU, GiB) and the zone and vSwitch."""
    pod = make_pod("sized", ["sh", "-c", "sleep 30"])
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1", "memory": "3Gi"}}
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-sized", lambda b: b.status["phase"] == "Running")
    zone = sim.engine.groups[bp.group_id].zone
    assert zone
    scheduled = [e for e in bp.events if e.reason == "ContainerGroupScheduled"]
    assert len(scheduled) == 1
    assert scheduled[0].type == "Normal"
    assert scheduled[0].message == f"container group {bp.group_id} runs as 1 vCPU, 4 GiB in zone {zone}, vSwitch vsw-a"
    # Later status changes carry the same event (the controller mirrors it once), never a second one.
    again = await provider.get_pod(pod)
    assert again is not None
    assert [e.reason for e in again.events].count("ContainerGroupScheduled") == 1


async def test_usage_is_batched(provider: ECIProvider, sim: ECISimulator) -> None:
    """pod_usage reports running pods' containers from one DescribeMultiContainerGroupMetric call."""
    pod = make_pod("use", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-use", lambda b: b.status["phase"] == "Running")
    usage = await provider.pod_usage()
    assert [(u.name, [c.name for c in u.containers]) for u in usage] == [("use", ["app"])]
    assert sim.stats()["calls"]["DescribeMultiContainerGroupMetric"] == 1


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
    """quota() turns ListUsage limits into node capacity strings for cpu and pods."""
    q = await provider.quota()
    assert set(q) == {"cpu", "pods"} and all(v.isdigit() for v in q.values())


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


async def test_list_pods_answers_from_the_index_between_resyncs(provider: ECIProvider, sim: ECISimulator) -> None:
    """After a full resync, list_pods costs no ECI call until the resync interval passes."""
    await provider.create_pod(make_pod("idx", ["sleep", "30"]), PodResources())
    await provider.resync()
    before = sim.stats()["calls"]["DescribeContainerGroups"]
    assert [p.uid for p in await provider.list_pods()] == ["uid-idx"]
    assert sim.stats()["calls"]["DescribeContainerGroups"] == before


async def test_group_deleted_behind_our_back_is_forgotten_on_resync(provider: ECIProvider) -> None:
    """A group deleted outside the provider disappears from the index at the next full resync."""
    pod = make_pod("ghost", ["sleep", "30"])
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-ghost", lambda b: b.status["phase"] == "Running")
    await provider.client.call("DeleteContainerGroup", {"ContainerGroupId": bp.group_id})
    entry = provider._by_uid["uid-ghost"]
    entry.created_at -= 60  # old enough not to be mistaken for a group created during the listing
    deadline = time.monotonic() + 10
    while any(p.uid == "uid-ghost" for p in await provider.resync()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert await provider.get_pod(pod) is None


async def test_quiet_polls_do_not_redescribe(provider: ECIProvider, sim: ECISimulator) -> None:
    """Once a group is Running and described, further incremental polls make no DescribeContainerGroups call."""
    await provider.create_pod(make_pod("quiet", ["sleep", "30"]), PodResources())
    await until(provider, "uid-quiet", lambda b: b.status["phase"] == "Running")
    await provider.poll_once()
    before = sim.stats()["calls"]["DescribeContainerGroups"]
    await provider.poll_once()
    await provider.poll_once()
    assert sim.stats()["calls"]["DescribeContainerGroups"] == before


async def test_usage_is_cached_for_the_scrape_interval(sim: ECISimulator) -> None:
    """Within stats_cache_seconds a second pod_usage makes no ECI call."""
    p = ECIProvider(settings_for(sim), node_name="vk", stats_cache_seconds=60)
    await p.start()
    try:
        await p.create_pod(make_pod("cache", ["sleep", "30"]), PodResources())
        await until(p, "uid-cache", lambda b: b.status["phase"] == "Running")
        first = await p.pod_usage()
        second = await p.pod_usage()
        assert first is second and sim.stats()["calls"]["DescribeMultiContainerGroupMetric"] == 1
    finally:
        await p.close()


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


async def test_group_deleted_behind_our_back_leaves_on_presence_check(provider: ECIProvider, sim: ECISimulator) -> None:
    """A group deleted outside the provider leaves list_pods at the next presence check, without a full resync."""
    pod = make_pod("ghost2", ["sleep", "30"])
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-ghost2", lambda b: b.status["phase"] == "Running")
    await provider.resync()
    await provider.client.call("DeleteContainerGroup", {"ContainerGroupId": bp.group_id})
    provider._by_uid["uid-ghost2"].created_at -= 60
    deadline = time.monotonic() + 10
    before = sim.stats()["calls"]["DescribeContainerGroups"]
    while any(p.uid == "uid-ghost2" for p in await provider.list_pods()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
        await provider.presence_check()
    assert sim.stats()["calls"]["DescribeContainerGroups"] == before  # no full resync was needed


async def test_port_forward_dials_the_pod_ip(provider: ECIProvider) -> None:
    """port_forward connects straight to podIP:port (the simulator's pods live on 127.0.0.1)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        pod = make_pod("pf", ["sleep", "30"])
        await provider.create_pod(pod, PodResources())
        await until(provider, "uid-pf", lambda b: b.status["phase"] == "Running")
        reader, writer = await provider.port_forward(pod, port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        writer.close()
        await writer.wait_closed()
        with pytest.raises(InvalidInput):
            await provider.port_forward(pod, 70000)
    finally:
        server.close()
        await server.wait_closed()


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
    entry = provider._by_uid["u-1"]
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
    assert "u-1" not in provider._by_uid


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


def _entry_for(provider: ECIProvider, annotations: dict[str, str] | None = None) -> _Entry:
    pod = {
        "metadata": {"name": "p", "namespace": "d", "uid": "u-1", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    req = translate_pod(pod, PodResources(), provider.settings, "vk").request
    sizes = [(size, ["vsw-a"]) for size in req.sizes]
    entry = _Entry(uid="u-1", namespace="d", name="p", group_id="eci-1", request=req, plan=sizes, tried=1)
    provider._by_uid["u-1"] = entry
    return entry


def test_scheduled_event_waits_for_placement_and_is_sent_once() -> None:
    """No event while the group is Scheduling (or Pending without a zone); then exactly one."""
    provider = ECIProvider(make_settings("http://127.0.0.1:9"), node_name="vk")
    entry = _entry_for(provider)
    for unplaced in (_placed(Status="Scheduling", ZoneId=""), _placed(ZoneId="")):
        entry.group = unplaced
        assert not [e for e in provider._backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    entry.group = _placed()
    first = [e for e in provider._backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    entry.group = _placed(Status="Running")
    again = [e for e in provider._backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    assert len(first) == 1 and again == first
    assert first[0].message == "container group eci-1 runs as 2 vCPU, 4 GiB in zone cn-hangzhou-k, vSwitch vsw-a"


def test_scheduled_event_names_instance_type_and_spot() -> None:
    """An instance type and a spot strategy are named, as ECI reports them."""
    provider = ECIProvider(make_settings("http://127.0.0.1:9"), node_name="vk")
    entry = _entry_for(provider, {"k8s.aliyun.com/eci-use-specs": "ecs.c6.large"})
    entry.group = _placed(Status="Running", InstanceType="ecs.c6.large", SpotStrategy="SpotAsPriceGo", Memory=4.0)
    events = [e for e in provider._backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]
    assert [e.message for e in events] == [
        "container group eci-1 runs as instance type ecs.c6.large (2 vCPU, 4 GiB), spot (SpotAsPriceGo) "
        "in zone cn-hangzhou-k, vSwitch vsw-a"
    ]


def test_adopted_group_is_not_announced_again() -> None:
    """A group found after a restart (no create request in memory) was announced by the daemon that made it."""
    provider = ECIProvider(make_settings("http://127.0.0.1:9"), node_name="vk")
    entry = _Entry(uid="u-1", namespace="d", name="p", group_id="eci-1", group=_placed(Status="Running"))
    assert not [e for e in provider._backend_pod(entry).events if e.reason == "ContainerGroupScheduled"]


async def test_index_keeps_a_placed_group_lean(provider: ECIProvider, sim: ECISimulator) -> None:
    """Held for every pod, an index entry drops what nothing reads again: the create request once the group
    is placed (only a NoStock retry needs it), the group's tags (the identity is in the entry), and keeps
    fingerprints as short digests. Lookups, status and update still work from it."""
    pod = make_pod("lean", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    entry = provider._by_uid["uid-lean"]
    assert entry.request is not None  # not placed yet: a NoStock retry may still need it
    published: list[BackendPod] = []

    def running(bp: BackendPod) -> bool:
        published.append(bp)
        return bool(bp.status["phase"] == "Running")

    await until(provider, "uid-lean", running)
    # The status stream carried the group's own (Normal) events; the index keeps only Warning ones.
    assert any(e.reason == "Scheduled" for bp in published for e in bp.events)
    entry = provider._by_uid["uid-lean"]
    assert entry.request is None and entry.scheduled_announced
    assert entry.group is not None and entry.group.Tags == []
    assert all(e.Type == "Warning" for e in entry.group.Events)
    assert isinstance(entry.group.model_fields_set, frozenset)
    assert entry.group.Containers[0].PreviousState is _NO_STATE
    assert isinstance(entry.fingerprint, bytes) and len(entry.fingerprint) == 16
    assert all(isinstance(fp, bytes) and len(fp) == 16 for fp in provider._status_fp.values())
    again = await provider.get_pod(pod)
    assert again is not None and again.uid == "uid-lean" and again.status["phase"] == "Running"
    assert [(p.namespace, p.name, p.uid) for p in await provider.list_pods()] == [("default", "lean", "uid-lean")]
    # A resync re-reads the group with its tags: identical, so nothing is published again.
    await provider.resync()
    assert provider._by_uid["uid-lean"].fingerprint == entry.fingerprint
    pod["spec"]["containers"][0]["image"] = "busybox:1.36"
    await provider.update_pod(pod, PodResources())
    assert sim.stats()["calls"]["UpdateContainerGroup"] == 1


def test_a_held_group_maps_like_the_described_one() -> None:
    """_held and _published keep every field the provider reads: the pod status maps the same, a NoStock
    failure is still recognised from the Warning events, and only Normal events and tags are dropped."""
    wire = {
        "ContainerGroupId": "eci-1",
        "Status": "ScheduleFailed",
        "IntranetIp": "10.0.0.9",
        "CreationTime": "2026-01-01T00:00:00Z",
        "Tags": [{"Key": "vk-eci/uid", "Value": "u-1"}],
        "Events": [
            {"Type": "Normal", "Reason": "Scheduling", "Message": "scheduling", "Count": 1},
            {"Type": "Warning", "Reason": "NoStock", "Message": "no stock", "Count": 2},
        ],
        "Containers": [
            {
                "Name": "app",
                "Image": "busybox",
                "CurrentState": {"State": "Waiting", "Reason": "Pending"},
                "PreviousState": {},
            }
        ],
    }
    now = datetime(2026, 1, 1, tzinfo=UTC)
    described = ContainerGroup.model_validate(wire)
    held = _published(_held(ContainerGroup.model_validate(wire), events=True))
    assert container_group_to_pod_status(held, None, now=now) == container_group_to_pod_status(described, None, now=now)
    assert is_no_stock(held)
    assert [e.reason for e in group_events(held)] == ["NoStock"]
    assert held.Tags == [] and held.Containers[0].PreviousState is _NO_STATE
    assert held.Containers[0].CurrentState == described.Containers[0].CurrentState
    assert held.model_fields_set == described.model_fields_set
    assert _held(ContainerGroup.model_validate(wire), events=False).Events == held.Events
    assert ContainerState() == _NO_STATE
    with pytest.raises(AttributeError):
        held.Status = "Running"  # held groups are read-only
