"""log_follow.py: one poller per followed container, shared; a client that stops reading is dropped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.waiting import eventually
from vk_provider.eci.log_follow import MAX_BACKLOG, POLL_SHARE, POLLS_IN_FLIGHT, LogFollows


async def test_one_poller_per_container_and_it_stops_with_its_last_client() -> None:
    polls: list[dict[str, Any]] = []
    n = 0

    async def fetch(params: dict[str, Any]) -> str:
        nonlocal n
        polls.append(params)
        n += 1
        return f"2026-01-01T00:00:{n:02d}Z line-{n}\n"

    follows = LogFollows(interval=0, sleep=lambda _s: asyncio.sleep(0.001), calls_per_second=1e6)
    key = ("eci-1", "app")
    async with follows.subscribe(key, fetch, lambda: False) as a, follows.subscribe(key, fetch, lambda: False) as b:
        assert follows.followers(key) == 2
        got_a = [await a.get() for _ in range(3)]
        got_b = [await b.get() for _ in range(3)]
    assert got_a == got_b == [f"2026-01-01T00:00:{i:02d}Z line-{i}\n" for i in (1, 2, 3)]
    assert polls[1]["StartTime"] == "2026-01-01T00:00:01Z"  # since the last line seen
    await asyncio.sleep(0.02)
    count = len(polls)
    await asyncio.sleep(0.02)
    assert len(polls) == count and follows.followers(key) == 0


async def test_a_client_that_stops_reading_is_dropped_and_its_stream_ends() -> None:
    n = 0

    async def fetch(_params: dict[str, Any]) -> str:
        nonlocal n
        n += 1
        return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z line-{n}\n"

    follows = LogFollows(interval=0, sleep=lambda _s: asyncio.sleep(0), calls_per_second=1e6)
    key = ("eci-1", "app")
    async with (
        follows.subscribe(key, fetch, lambda: False) as reader,
        follows.subscribe(key, fetch, lambda: False) as stalled,
    ):
        for _ in range(MAX_BACKLOG + 5):
            assert await reader.get() is not None
        assert follows.followers(key) == 1
        items = [stalled.get_nowait() for _ in range(stalled.qsize())]
        assert items[-1] is None and len(items) == MAX_BACKLOG + 1


async def test_the_stream_ends_after_one_more_poll_once_the_container_finished() -> None:
    done = False

    async def fetch(_params: dict[str, Any]) -> str:
        return "2026-01-01T00:00:01Z last\n"

    follows = LogFollows(interval=0, sleep=lambda _s: asyncio.sleep(0), calls_per_second=1e6)
    async with follows.subscribe(("eci-1", "app"), fetch, lambda: done) as queue:
        assert await queue.get() == "2026-01-01T00:00:01Z last\n"
        done = True
        assert await asyncio.wait_for(queue.get(), 2) is None


async def test_the_polls_of_many_containers_take_turns() -> None:
    """With more followed containers than POLLS_IN_FLIGHT, at most that many polls wait on the rate limit at
    once (a client's own fetch queues behind those only), and the containers are polled round robin."""
    gate = asyncio.Event()
    waiting = 0
    most = 0
    order: list[str] = []

    def fetch_of(group: str) -> Any:
        async def fetch(_params: dict[str, Any]) -> str:
            nonlocal waiting, most
            waiting += 1
            most = max(most, waiting)
            await gate.wait()  # the rate limit's queue
            waiting -= 1
            order.append(group)
            return ""

        return fetch

    follows = LogFollows(interval=0, sleep=lambda _s: asyncio.sleep(0), calls_per_second=1e6)
    groups = [f"eci-{i}" for i in range(3 * POLLS_IN_FLIGHT)]
    async with contextlib.AsyncExitStack() as stack:
        for g in groups:
            await stack.enter_async_context(follows.subscribe((g, "app"), fetch_of(g), lambda: False))
        await eventually(lambda: most >= POLLS_IN_FLIGHT, timeout=5, what="the first polls")
        assert most == POLLS_IN_FLIGHT  # the others had the check's interval to go past, and did not
        gate.set()
        await eventually(lambda: len(order) >= 3 * len(groups), timeout=5, what="three rounds of polls")
    rounds = [order[i : i + len(groups)] for i in range(0, 3 * len(groups), len(groups))]
    assert all(sorted(r) == sorted(groups) for r in rounds)  # each container once per round


async def test_the_polls_leave_part_of_the_action_rate_to_clients() -> None:
    """However many containers are followed, their polls together stay under POLL_SHARE of the
    DescribeContainerLog rate, so the action's bucket keeps tokens for a client's own fetch."""
    polls = 0

    async def fetch(_params: dict[str, Any]) -> str:
        nonlocal polls
        polls += 1
        return ""

    rate = 40.0
    follows = LogFollows(interval=0, sleep=lambda _s: asyncio.sleep(0), calls_per_second=rate)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        started = loop.time()
        for i in range(20):
            await stack.enter_async_context(follows.subscribe((f"eci-{i}", "app"), fetch, lambda: False))
        await asyncio.sleep(0.5)
        took = loop.time() - started
    assert 0 < polls <= 1 + took * rate * POLL_SHARE + 1  # the pace's one saved-up call, then its rate
