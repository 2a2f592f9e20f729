"""The keyed queue: de-duplication, per-key serialisation, backoff with a cap, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from vk_provider.aio import Backoff
from vk_provider.metrics import QUEUE_DEPTH
from vk_provider.pods.queue import KeyedQueue, QueueShutDown


def q(base: float = 0.01, cap: float = 0.04) -> KeyedQueue:
    return KeyedQueue(Backoff(base=base, cap=cap, jitter=False))


async def test_keys_are_deduplicated() -> None:
    """Adding a waiting key again does not queue it twice, and the depth gauge follows."""
    queue = q()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert QUEUE_DEPTH._value.get() == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]


async def test_a_key_is_never_processed_twice_at_once() -> None:
    """A key re-added while being processed comes back only after done()."""
    queue = q()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await queue.get()
    queue.done(key)
    async with asyncio.timeout(1):
        assert await queue.get() == "a"


async def test_retry_backs_off_exponentially_with_a_cap() -> None:
    """retry() delays grow 2x per failure up to the cap; forget() resets; the key does come back."""
    queue = q(base=0.01, cap=0.04)
    delays = [queue.retry("a") for _ in range(5)]
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert queue.failures("a") == 5
    async with asyncio.timeout(1):
        assert await queue.get() == "a"
    queue.forget("a")
    assert queue.failures("a") == 0


async def test_add_after_keeps_the_earliest_schedule() -> None:
    """Two schedules of one key: the earlier wins and the key is queued once."""
    queue = q()
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_after("a", 5.0)
    queue.add_after("a", 0.02)
    async with asyncio.timeout(1):
        assert await queue.get() == "a"
    assert loop.time() - start < 1.0
    queue.done("a")
    assert len(queue) == 0


async def test_shutdown_wakes_every_waiter() -> None:
    """After shutdown, blocked get() calls raise QueueShutDown and add() is ignored."""
    queue = q()
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    await queue.shutdown()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, QueueShutDown) for r in results)
    queue.add("x")
    assert len(queue) == 0


async def test_many_workers_share_many_keys() -> None:
    """N workers drain M keys, each processed exactly once, never concurrently with itself."""
    queue = q()
    active: set[str] = set()
    seen: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            assert key not in active
            active.add(key)
            await asyncio.sleep(0)
            seen.append(key)
            active.discard(key)
            queue.done(key)

    for i in range(100):
        queue.add(f"k{i}")
    tasks = [asyncio.create_task(worker()) for _ in range(8)]
    async with asyncio.timeout(5):
        await queue.wait_idle()
    await queue.shutdown()
    await asyncio.gather(*tasks)
    assert sorted(seen) == sorted(f"k{i}" for i in range(100))


async def test_the_first_lane_is_served_before_the_backlog() -> None:
    """Keys added with first=True come out before the others, FIFO within each lane, also when re-added
    while being processed."""
    queue = q()
    for key in ("create-1", "create-2"):
        queue.add(key)
    queue.add("status-1", first=True)
    queue.add("status-2", first=True)
    assert len(queue) == 4
    assert [await queue.get(), await queue.get(), await queue.get()] == ["status-1", "status-2", "create-1"]
    queue.add("status-1", first=True)  # processing: dirty, back in the first lane on done()
    queue.add("create-3")
    queue.done("status-1")
    queue.add("create-3", first=True)  # waiting in the other lane: moved up
    assert len(queue) == 3
    assert [await queue.get(), await queue.get(), await queue.get()] == ["status-1", "create-3", "create-2"]


async def test_add_first_moves_keys_ahead_of_the_waiting_ones() -> None:
    """Keys given to add_first go first, in their order, whether they waited already or not; a key being
    processed is marked dirty instead (it comes back after done())."""
    queue = q()
    for key in ("a", "b", "c", "d"):
        queue.add(key)
    busy = await queue.get()  # "a"
    queue.add_first(["d", "new", "a", "d"])
    assert len(queue) == 4
    assert [await queue.get() for _ in range(4)] == ["d", "new", "b", "c"]
    queue.done(busy)
    async with asyncio.timeout(1):
        assert await queue.get() == "a"


async def test_spread_brings_keys_back_at_a_rate_behind_new_work() -> None:
    """spread takes waiting keys out of the line and requeues them at the given rate (the first at once), so
    a key added meanwhile goes ahead of the later ones."""
    queue = q()
    for key in ("a", "b", "c"):
        queue.add(key)
    queue.spread(["a", "b", "c", "d"], per_second=20)
    assert [await queue.get()] == ["a"]
    queue.add("urgent")
    assert await queue.get() == "urgent"
    async with asyncio.timeout(1):
        assert [await queue.get() for _ in range(3)] == ["b", "c", "d"]
