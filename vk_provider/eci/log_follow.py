"""Shared ``logs -f`` polling: one DescribeContainerLog per followed container and interval, however
many clients follow it.

The first client to follow a container starts its poller (a guarded task); each poll asks for the lines
since the last one it saw (``StartTime``, timestamps on) and hands the new ones, as one chunk of
timestamped lines, to every client's queue. A client subscribes *before* its own first fetch (its tail,
``sinceSeconds``, ... differ from client to client), then reads the chunks and drops, by timestamp,
what its first fetch already gave it (logs.py's ``_Dedup``): every line written after the subscription
is in a chunk, so nothing falls between the two. The poller stops when its last client leaves, and
ends every client's stream (``None``) once the container finished (after one more poll, as a single
client's follow does).

The polls of all containers share the DescribeContainerLog rate (500 a minute on ECI, about 7.5/s), which
past about seven followed containers, not the interval, paces them. So they take turns, in arrival order
(every container gets its turn: round robin), at most ``POLLS_IN_FLIGHT`` at once (a slow ECI holds that
many of the client's threads, not one per followed container), and at ``POLL_SHARE`` of the action's rate:
the action's bucket is not drained by polls, so a client's own fetch (a new ``logs -f``, a plain
``kubectl logs``) finds a token or waits behind a few polls, not behind one per followed container (8 s with 60).

A client that does not read (its queue holds ``MAX_BACKLOG`` chunks) is dropped from the poller: its
stream ends after what it was given, rather than holding the others up or growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from vk_provider.aio import RateLimiter, create_guarded_task
from vk_provider.eci.logs import MAX_TAIL, Fetch, _Dedup, _rfc3339

MAX_BACKLOG = 64
POLLS_IN_FLIGHT = 8  # polls waiting for their answer at once
POLL_SHARE = 0.9  # of the DescribeContainerLog rate; the rest (and the bucket's burst) is for clients' fetches
Key = tuple[str, str]  # (group id, container)


class _Follow:
    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[str | None]] = set()
        self.task: asyncio.Task[None] | None = None


class LogFollows:
    """The pollers of the followed containers, by (group id, container)."""

    def __init__(self, *, interval: float, sleep: Callable[[float], Awaitable[None]], calls_per_second: float) -> None:
        """``calls_per_second``: the steady rate of the DescribeContainerLog rate limit."""
        self._interval = interval
        self._sleep = sleep
        self._follows: dict[Key, _Follow] = {}
        self._turns = asyncio.Semaphore(POLLS_IN_FLIGHT)  # FIFO: round robin over the followed containers
        self._pace = RateLimiter(calls_per_second * POLL_SHARE, 1)

    def followers(self, key: Key) -> int:
        follow = self._follows.get(key)
        return len(follow.clients) if follow else 0

    @contextlib.asynccontextmanager
    async def subscribe(
        self, key: Key, fetch: Fetch, finished: Callable[[], bool]
    ) -> AsyncIterator[asyncio.Queue[str | None]]:
        """A queue of the container's new timestamped lines, one string per poll; ``None`` ends it."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        follow = self._follows.get(key)
        if follow is None:
            follow = self._follows[key] = _Follow()
        follow.clients.add(queue)
        if follow.task is None or follow.task.done():
            start = datetime.now(UTC) - timedelta(seconds=2)  # the clock of the service may lag ours a little
            follow.task = create_guarded_task(
                self._poll(key, follow, fetch, finished, start), name=f"eci-log-follow-{key[0]}-{key[1]}"
            )
        try:
            yield queue
        finally:
            follow.clients.discard(queue)
            if not follow.clients:
                if follow.task is not None:
                    follow.task.cancel()
                if self._follows.get(key) is follow:
                    del self._follows[key]

    async def _poll(
        self, key: Key, follow: _Follow, fetch: Fetch, finished: Callable[[], bool], start: datetime
    ) -> None:
        dedup = _Dedup()
        since = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            while follow.clients:
                await self._sleep(self._interval)
                done_before = finished()
                params: dict[str, Any] = {"Timestamps": True, "Tail": MAX_TAIL}
                params["StartTime"] = _rfc3339(dedup.last) if dedup.last is not None else since
                try:
                    async with self._turns:
                        await self._pace.acquire()
                        content = await fetch(params)
                except Exception:
                    if done_before:
                        break
                    continue  # the client's call already retried; try again next interval
                chunk = "".join(line for line, _ in dedup.filter(content))
                if chunk:
                    for queue in list(follow.clients):
                        queue.put_nowait(chunk)
                        if queue.qsize() >= MAX_BACKLOG:  # the client stopped reading
                            follow.clients.discard(queue)
                            queue.put_nowait(None)
                if done_before:
                    break
        finally:
            for queue in follow.clients:
                queue.put_nowait(None)
