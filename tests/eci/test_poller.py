"""The poller (poller.py). Its periodic listings (full resync, presence check) run as paced sweeps: at most
one page per tick next to the incremental poll. Against the scripted ECI endpoint, with the poller's sleep
replaced by a step the test controls, so every tick's calls can be counted. Then the index it keeps,
against the ECI simulator: backend_pods between resyncs, groups deleted behind our back, quiet polls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.eci.conftest import FakeECI, Reply, error, make_pod, make_settings, until
from tests.waiting import eventually
from vk_provider.eci import names
from vk_provider.eci.index import Entry
from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.poller import PRESENCE, RESYNC
from vk_provider.eci.provider import ECIProvider
from vk_provider.provider import PodResources
from vk_sandbox.eci.server import ECISimulator

NODE = "vk"


def _group(gid: str, *, spot: bool = False) -> dict[str, Any]:
    n = gid.removeprefix("eci-")
    tags = {
        names.TAG_CLUSTER: "test-cluster",
        names.TAG_NODE: NODE,
        names.TAG_NAMESPACE: "default",
        names.TAG_POD: f"p-{n}",
        names.TAG_UID: f"uid-{n}",
    }
    return {
        "ContainerGroupId": gid,
        "Status": "Running",
        "SpotStrategy": "SpotAsPriceGo" if spot else "NoSpot",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "Containers": [{"Name": "app", "Image": "busybox", "Ready": True, "CurrentState": {"State": "Running"}}],
    }


@dataclass
class World:
    """This node's groups as the fake endpoint lists them, in small pages so a few groups make many pages."""

    ids: list[str]
    page: int = 3
    changed: set[str] = field(default_factory=set)  # reported by the next incremental poll
    fail: dict[str, int] = field(default_factory=dict)  # "resync"/"presence" -> fail that page number (1-based)
    spot: set[str] = field(default_factory=set)  # ids of spot groups

    def _page(self, kind: str, params: dict[str, str]) -> tuple[list[str], str, bool]:
        """(ids of the page, NextToken, whether to refuse it); the token is the last id of the page."""
        ids = sorted(self.ids)
        after = params.get("NextToken", "")
        start = next((i for i, g in enumerate(ids) if g > after), len(ids)) if after else 0
        chunk = ids[start : start + self.page]
        more = start + self.page < len(ids)
        refuse = self.fail.get(kind) == start // self.page + 1
        if refuse:
            del self.fail[kind]
        return chunk, chunk[-1] if more and chunk else "", refuse

    def describe(self, params: dict[str, str]) -> Reply:
        if "ContainerGroupIds" in params:
            wanted = json.loads(params["ContainerGroupIds"])
            groups = [_group(g, spot=g in self.spot) for g in wanted if g in self.ids]
            return 200, {"ContainerGroups": groups, "NextToken": ""}
        chunk, token, refuse = self._page(RESYNC, params)
        if refuse:
            return error("InvalidParameter", "page refused")
        return 200, {"ContainerGroups": [_group(g, spot=g in self.spot) for g in chunk], "NextToken": token}

    def status(self, params: dict[str, str]) -> Reply:
        if "SinceSecond" in params:
            data = [{"ContainerGroupId": g, "Status": "Running", "Reason": "again"} for g in sorted(self.changed)]
            self.changed.clear()
            return 200, {"Data": data, "NextToken": ""}
        chunk, token, refuse = self._page(PRESENCE, params)
        if refuse:
            return error("InvalidParameter", "page refused")
        return 200, {"Data": [{"ContainerGroupId": g, "Status": "Running"} for g in chunk], "NextToken": token}


NOTICES = "notices"


def kind_of(action: str, params: dict[str, str]) -> str:
    if action == "DescribeContainerGroupEvents":
        return NOTICES
    if action == "DescribeContainerGroupStatus":
        return "poll" if "SinceSecond" in params else PRESENCE
    if action == "DescribeContainerGroups":
        return "describe" if "ContainerGroupIds" in params else RESYNC
    return action


class Ticker:
    """The poller's sleep: each tick ends in it; ``step`` lets exactly one more tick run."""

    def __init__(self, fake: FakeECI) -> None:
        self.fake = fake
        self.marks: list[int] = []  # len(fake.calls) at the end of each tick
        self._asleep = asyncio.Event()
        self._go = asyncio.Event()

    async def sleep(self, _seconds: float) -> None:
        self.marks.append(len(self.fake.calls))
        self._asleep.set()
        await self._go.wait()
        self._go.clear()

    async def first(self) -> None:
        await asyncio.wait_for(self._asleep.wait(), 10)

    async def step(self, n: int = 1) -> None:
        for _ in range(n):
            self._asleep.clear()
            self._go.set()
            await asyncio.wait_for(self._asleep.wait(), 10)

    def tick(self, i: int) -> list[str]:
        """The calls of tick ``i`` (0 = the first), by kind."""
        start = self.marks[i - 1] if i else 0
        return [kind_of(a, p) for a, p in self.fake.calls[start : self.marks[i]]]


Started = tuple[ECIProvider, World, Ticker]


@pytest.fixture
def start(fake_eci: FakeECI) -> Callable[..., Any]:
    """start(groups, spot=0) -> (provider, world, ticker) with the poller past its first tick; the first
    ``spot`` groups are spot groups."""

    async def go(groups: int, spot: int = 0, **settings: Any) -> Started:
        world = World(ids=[f"eci-{i:02d}" for i in range(groups)])
        world.spot = set(world.ids[:spot])
        fake_eci.script("DescribeContainerGroups", world.describe)
        fake_eci.script("DescribeContainerGroupStatus", world.status)
        fake_eci.script("DescribeContainerGroupEvents", (200, {"Data": [], "NextToken": ""}))
        base: dict[str, Any] = {
            "status_poll_interval_seconds": 0.01,
            "presence_check_interval_seconds": 1000,
            "full_resync_interval_seconds": 1000,
        }
        base.update(settings)
        ticker = Ticker(fake_eci)
        provider = ECIProvider(make_settings(fake_eci.endpoint, **base), node_name=NODE, sleep=ticker.sleep)
        await provider.start()
        await ticker.first()
        return provider, world, ticker

    return go


def make_due(provider: ECIProvider, *kinds: str) -> None:
    """Age the last listing of each kind past its interval (and the index's entries past the 30 s grace)."""
    old = time.monotonic() - 5000
    for kind in kinds:
        if kind == RESYNC:
            provider.poller._last_resync = old
        else:
            provider.poller._last_presence = old
    for entry in provider.index.entries():
        entry.created_at = old


async def test_initial_resync_is_one_burst(fake_eci: FakeECI) -> None:
    """The first tick is the whole resync at full speed (every page, no poll), and a backend_pods made while
    it runs (adoption) takes its result instead of listing again."""
    world = World(ids=[f"eci-{i:02d}" for i in range(10)])
    fake_eci.script("DescribeContainerGroups", world.describe)
    fake_eci.script("DescribeContainerGroupStatus", world.status)
    fake_eci.delay["DescribeContainerGroups"] = 0.3  # the first page is slow
    ticker = Ticker(fake_eci)
    provider = ECIProvider(make_settings(fake_eci.endpoint), node_name=NODE, sleep=ticker.sleep)
    try:
        await provider.start()
        await eventually(
            lambda: "DescribeContainerGroups" in fake_eci.actions(), timeout=10, what="the resync's slow first page"
        )
        adopted = await provider.backend_pods()
        await ticker.first()
        assert len(adopted) == 10
        assert ticker.tick(0) == [RESYNC] * 4
        assert provider.poller.synced and len(provider.index) == 10
        await ticker.step()
        assert ticker.tick(1) == ["poll"]
    finally:
        await provider.close()


async def test_concurrent_bursts_share_one_listing(start: Any) -> None:
    """Two resyncs asked together make one listing: the second caller takes the first one's result."""
    provider, _, ticker = await start(10)
    try:
        before = len(ticker.fake.calls)
        await asyncio.gather(provider.poller.resync(), provider.poller.resync())
        assert len(provider.index) == 10
        assert [kind_of(x, p) for x, p in ticker.fake.calls[before:]] == [RESYNC] * 4
    finally:
        await provider.close()


async def test_periodic_resync_takes_one_page_per_tick(start: Any) -> None:
    """A due resync of 4 pages spreads over 4 ticks, each with its incremental poll; backend_pods answers from
    the index meanwhile; the sweep's end marks the resync done."""
    provider, _, ticker = await start(10)
    try:
        make_due(provider, RESYNC)
        before = provider.poller._last_resync
        await ticker.step()
        assert ticker.tick(1) == ["poll", RESYNC]
        calls = len(ticker.fake.calls)
        assert len(await provider.backend_pods()) == 10  # no burst while the paced resync is under way
        assert len(ticker.fake.calls) == calls
        await ticker.step(3)
        assert [ticker.tick(i) for i in (2, 3, 4)] == [["poll", RESYNC]] * 3
        assert provider.poller._last_resync is not None and before is not None and provider.poller._last_resync > before
        assert RESYNC not in provider.poller._sweeps and len(provider.index) == 10
        await ticker.step(2)
        assert [ticker.tick(i) for i in (5, 6)] == [["poll"], ["poll"]]
    finally:
        await provider.close()


async def test_both_sweeps_take_pages_in_turn(start: Any) -> None:
    """With the resync and the presence check both due, they alternate pages; no tick makes more than one poll
    and one sweep page, plus the describe of a group whose status really changed."""
    provider, world, ticker = await start(10)
    try:
        make_due(provider, RESYNC, PRESENCE)
        await ticker.step(2)
        world.changed.add("eci-03")
        await ticker.step(6)
        ticks = [ticker.tick(i) for i in range(1, 9)]
        pages = [k for t in ticks for k in t if k in (RESYNC, PRESENCE)]
        assert pages == [RESYNC, PRESENCE] * 4
        for t in ticks:
            assert t.count("poll") == 1 and len([k for k in t if k in (RESYNC, PRESENCE)]) == 1
            assert set(t) <= {"poll", RESYNC, PRESENCE, "describe"} and t.count("describe") <= 1
        assert ticks[2] == ["poll", "describe", RESYNC]  # eci-03's change, described on the next tick's poll
        assert not provider.poller._sweeps
        await ticker.step()
        assert ticker.tick(9) == ["poll"]
    finally:
        await provider.close()


async def test_spot_notice_checks_take_the_sweeps_slot_not_more_calls(start: Any) -> None:
    """With spot groups, a notice check (DescribeContainerGroupEvents) comes every other slow tick (interval 2
    ticks) in the slot of the sweep page: no tick makes more than one poll and one other call, a due presence
    check takes the ticks in between, and the idle ticks after it alternate poll + notices and poll alone."""
    provider, _, ticker = await start(10, spot=2, spot_notice_poll_interval_seconds=0.02)
    try:
        make_due(provider, PRESENCE)
        await ticker.step(8)
        ticks = [ticker.tick(i) for i in range(1, 9)]
        for t in ticks:
            assert t[0] == "poll" and len(t) <= 2 and set(t[1:]) <= {PRESENCE, NOTICES}, ticks
        assert [t[1:] for t in ticks[:4]] == [[NOTICES], [PRESENCE], [NOTICES], [PRESENCE]]
        assert sum(t.count(NOTICES) for t in ticks) == 4
        assert PRESENCE not in provider.poller._sweeps  # its 4 pages were done in the ticks between
        await ticker.step(4)
        assert [ticker.tick(i) for i in range(9, 13)] == [["poll", NOTICES], ["poll"]] * 2
    finally:
        await provider.close()


async def test_no_spot_group_no_notice_call(start: Any) -> None:
    """Without a spot group no DescribeContainerGroupEvents is made at all; the tick after a group turns out
    to be a spot one checks for notices at once, in that tick's slot."""
    provider, world, ticker = await start(10, spot_notice_poll_interval_seconds=0.01)
    try:
        await ticker.step(6)
        assert [ticker.tick(i) for i in range(1, 7)] == [["poll"]] * 6
        world.spot.add("eci-04")
        world.changed.add("eci-04")
        await ticker.step(2)
        assert ticker.tick(7) == ["poll", "describe", NOTICES]
        assert ticker.tick(8) == ["poll", NOTICES]  # interval = one slow tick
        assert NOTICES not in ticker.tick(0)
    finally:
        await provider.close()


async def test_presence_sweep_forgets_groups_deleted_outside(start: Any) -> None:
    """A group deleted behind our back stays in the index while the presence sweep pages run, then leaves
    it when the sweep ends (after a describe by id confirmed it is gone); a group the index did not know is
    described and learned."""
    provider, world, ticker = await start(10)
    try:
        make_due(provider, PRESENCE)
        world.ids.remove("eci-05")
        world.ids.append("eci-99")  # made by someone with our tags; no poll reports it
        await ticker.step(3)
        assert "uid-05" in {bp.uid for bp in await provider.backend_pods()}
        await ticker.step()
        assert ticker.tick(4) == ["poll", PRESENCE, "describe"]
        described = [json.loads(p["ContainerGroupIds"]) for a, p in ticker.fake.calls if "ContainerGroupIds" in p]
        assert sorted(described[-1]) == ["eci-05", "eci-99"]
        uids = {bp.uid for bp in await provider.backend_pods()}
        assert "uid-05" not in uids and "uid-99" in uids and len(uids) == 10
        assert PRESENCE not in provider.poller._sweeps
    finally:
        await provider.close()


async def test_a_failed_sweep_page_does_not_stop_polling(start: Any) -> None:
    """A presence page refused by ECI abandons the sweep (nothing is forgotten); polls go on every tick and
    the sweep starts again from its first page later, then completes."""
    provider, world, ticker = await start(10, status_poll_interval_seconds=0.01)
    try:
        make_due(provider, PRESENCE)
        world.ids.remove("eci-05")
        world.fail[PRESENCE] = 2
        await ticker.step(2)
        assert ticker.tick(1) == ["poll", PRESENCE]
        assert ticker.tick(2) == ["poll", PRESENCE]  # refused
        assert PRESENCE not in provider.poller._sweeps and PRESENCE in provider.poller._sweep_retry_at
        assert "uid-05" in provider.index
        provider.poller._sweep_retry_at[PRESENCE] = time.monotonic() + 60
        await ticker.step(2)
        assert [ticker.tick(i) for i in (3, 4)] == [["poll"], ["poll"]]
        provider.poller._sweep_retry_at[PRESENCE] = 0.0  # "later" has come
        start_at = len(ticker.fake.calls)
        await ticker.step(4)
        first = next(p for a, p in ticker.fake.calls[start_at:] if kind_of(a, p) == PRESENCE)
        assert "NextToken" not in first  # from the first page again
        assert [ticker.tick(i) for i in (5, 6, 7)] == [["poll", PRESENCE]] * 2 + [["poll", PRESENCE, "describe"]]
        assert ticker.tick(8) == ["poll"]
        assert "uid-05" not in provider.index and not provider.poller._sweeps
    finally:
        await provider.close()


async def test_a_failed_resync_page_keeps_list_pods_on_the_index(start: Any) -> None:
    """While a paced resync waits to start again after an error, backend_pods still answers from the index."""
    provider, world, ticker = await start(10)
    try:
        make_due(provider, RESYNC)
        world.fail[RESYNC] = 1
        await ticker.step()
        assert ticker.tick(1) == ["poll", RESYNC]
        assert RESYNC in provider.poller._sweep_retry_at
        calls = len(ticker.fake.calls)
        assert len(await provider.backend_pods()) == 10
        assert len(ticker.fake.calls) == calls
    finally:
        await provider.close()


async def test_list_pods_answers_from_the_index_between_resyncs(provider: ECIProvider, sim: ECISimulator) -> None:
    """After a full resync, backend_pods costs no ECI call until the resync interval passes."""
    await provider.create_pod(make_pod("idx", ["sleep", "30"]), PodResources())
    await provider.poller.resync()
    before = sim.stats()["calls"]["DescribeContainerGroups"]
    assert [p.uid for p in await provider.backend_pods()] == ["uid-idx"]
    assert sim.stats()["calls"]["DescribeContainerGroups"] == before


async def test_group_deleted_behind_our_back_is_forgotten_on_resync(provider: ECIProvider) -> None:
    """A group deleted outside the provider disappears from the index at the next full resync."""
    pod = make_pod("ghost", ["sleep", "30"])
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-ghost", lambda b: b.status["phase"] == "Running")
    await provider.client.call("DeleteContainerGroup", {"ContainerGroupId": bp.group_id})
    entry = provider.index.get("uid-ghost")
    entry.created_at -= 60  # old enough not to be mistaken for a group created during the listing

    async def forgotten() -> bool:
        await provider.poller.resync()
        return "uid-ghost" not in provider.index

    await eventually(forgotten, timeout=10, interval=0.1, what="the resync to forget the deleted group")
    assert await provider.backend_pod(pod) is None


async def test_quiet_polls_do_not_redescribe(provider: ECIProvider, sim: ECISimulator) -> None:
    """Once a group is Running and described, further incremental polls make no DescribeContainerGroups call."""
    await provider.create_pod(make_pod("quiet", ["sleep", "30"]), PodResources())
    await until(provider, "uid-quiet", lambda b: b.status["phase"] == "Running")
    await provider.poller.poll_once()
    before = sim.stats()["calls"]["DescribeContainerGroups"]
    await provider.poller.poll_once()
    await provider.poller.poll_once()
    assert sim.stats()["calls"]["DescribeContainerGroups"] == before


async def test_group_deleted_behind_our_back_leaves_on_presence_check(provider: ECIProvider, sim: ECISimulator) -> None:
    """A group deleted outside the provider leaves backend_pods at the next presence check, without a full resync."""
    pod = make_pod("ghost2", ["sleep", "30"])
    await provider.create_pod(pod, PodResources())
    bp = await until(provider, "uid-ghost2", lambda b: b.status["phase"] == "Running")
    await provider.poller.resync()
    await provider.client.call("DeleteContainerGroup", {"ContainerGroupId": bp.group_id})
    provider.index.get("uid-ghost2").created_at -= 60
    before = sim.stats()["calls"]["DescribeContainerGroups"]

    async def gone() -> bool:
        if not any(p.uid == "uid-ghost2" for p in await provider.backend_pods()):
            return True
        await provider.poller.presence_check()
        return False

    await eventually(gone, timeout=10, interval=0.1, what="a presence check to drop the deleted group")
    assert sim.stats()["calls"]["DescribeContainerGroups"] == before  # no full resync was needed


async def test_fast_ticks_only_while_groups_are_in_transition(fake_eci: FakeECI) -> None:
    """The tick is fast from a create until the group leaves Pending (within the window) and while it is
    deleted, slow otherwise; hurry() ends a slow tick at once."""
    settings = make_settings(
        fake_eci.endpoint,
        status_poll_interval_seconds=6,
        status_poll_fast_interval_seconds=0.5,
        status_poll_fast_window_seconds=60,
    )
    provider = ECIProvider(settings, node_name=NODE)
    poller, index = provider.poller, provider.index
    assert poller._tick_interval() == 6
    entry = Entry(uid="u1", namespace="default", name="p", group_id="eci-1")
    index.put(entry)
    assert poller._tick_interval() == 0.5  # created, not described yet
    entry.hold(ContainerGroup(ContainerGroupId="eci-1", Status="Pending"))
    assert poller._tick_interval() == 0.5
    entry.created_at -= 61
    assert poller._tick_interval() == 6  # stuck Pending past the window
    entry.hold(ContainerGroup(ContainerGroupId="eci-1", Status="Running"))
    assert poller._tick_interval() == 6
    entry.deleting = True
    assert poller._tick_interval() == 0.5
    entry.deleting = False
    entry.hold(ContainerGroup(ContainerGroupId="eci-1", Status="Terminating"))  # someone else deletes it
    assert poller._tick_interval() == 0.5

    nap = asyncio.ensure_future(poller._nap(6))
    await asyncio.sleep(0.05)
    assert not nap.done()
    started = time.monotonic()
    poller.hurry()
    await asyncio.wait_for(nap, 2)
    assert time.monotonic() - started < 1


async def test_a_standby_polls_at_its_own_slower_cadence(start: Any) -> None:
    """stand_by(interval): ticks within the interval make no call at all; stand_by(None) (leading) polls every
    tick again; catch_up() polls at once."""
    provider, _, ticker = await start(3)
    try:
        provider.stand_by(3600)
        await ticker.step()  # the first standby tick polls and starts the interval
        assert ticker.tick(1) == ["poll"]
        await ticker.step(3)
        assert [ticker.tick(i) for i in (2, 3, 4)] == [[], [], []]
        provider.stand_by(None)
        await ticker.step(2)
        assert [ticker.tick(i) for i in (5, 6)] == [["poll"], ["poll"]]
        calls = len(ticker.fake.calls)
        await provider.catch_up()
        assert [kind_of(a, p) for a, p in ticker.fake.calls[calls:]] == ["poll"]
    finally:
        await provider.close()


async def test_a_poll_applies_each_described_page_before_asking_for_the_next(start: Any) -> None:
    """45 changed groups are described 20 at a time, and each page is applied before the next is asked for: a
    burst's poll holds one page of decoded groups, not thousands (at 10,000 pods that peak set the RSS)."""
    provider, world, ticker = await start(45)
    try:
        poller = provider.poller
        describes_at_apply: list[int] = []
        apply = poller._apply

        async def counting(group: ContainerGroup) -> None:
            describes_at_apply.append(sum(kind_of(a, p) == "describe" for a, p in ticker.fake.calls))
            await apply(group)

        poller._apply = counting  # type: ignore[method-assign]
        world.changed = set(world.ids)
        await ticker.step()
        assert ticker.tick(1).count("describe") == 3
        assert describes_at_apply == [1] * 20 + [2] * 20 + [3] * 5
    finally:
        await provider.close()
