"""A keyed work queue: de-duplicated keys, one worker per key at a time, per-key exponential backoff.

Semantics follow client-go's workqueue, which virtual-kubelet users know:
- ``add(key)`` while the key waits is a no-op; while it is being processed the key is marked dirty
  and comes back once ``done(key)`` is called, so a key is never processed by two workers at once;
- ``retry(key)`` schedules the key again after ``base * 2**failures`` (capped) and counts a failure;
  ``forget(key)`` resets the count after a success;
- ``add_after(key, delay)`` schedules a key (keeping the earliest of several schedules);
- ``add(key, first=True)`` puts the key in a lane served before the others (FIFO within each lane):
  a status change of a pod that has its group goes ahead of a backlog of creates, which may each wait
  on ECI's create rate for a while;
- ``add_first(keys)`` and ``spread(keys, per_second=...)`` order the line after adoption.
"""

from __future__ import annotations

import asyncio
from collections import deque

from vk_provider.aio import Backoff
from vk_provider.metrics import QUEUE_DEPTH, RECONCILE_RETRIES


class QueueShutDown(Exception):
    """get() on a queue that was shut down."""


class KeyedQueue:
    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self._queue: deque[str] = deque()
        self._first: deque[str] = deque()  # the lane served first
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._dirty_first: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shutdown = False
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._queue) + len(self._first)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def _update(self) -> None:
        QUEUE_DEPTH.set(len(self))
        if not self._queue and not self._first and not self._processing:
            self._idle.set()
        else:
            self._idle.clear()

    def _wake(self, everyone: bool = False) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not everyone:
                    return

    def add(self, key: str, *, first: bool = False) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
            if first:
                self._dirty_first.add(key)
            return
        if key in self._queued:
            if first and key not in self._first:  # waiting in the other lane: move it up (O(n), rare)
                self._queue.remove(key)
                self._first.append(key)
            return
        self._queued.add(key)
        (self._first if first else self._queue).append(key)
        self._update()
        self._wake()

    def add_first(self, keys: list[str]) -> None:
        """Queue ``keys``, in order, ahead of every key waiting in the ordinary lane (those already waiting
        move up; the status lane is still served first); a key
        being processed is marked dirty as by ``add``. Used after adoption: pods that wait for a create
        or a delete go before the thousands that only confirm their status (a standby's queue holds
        every pod it saw, in watch order)."""
        if self._shutdown or not keys:
            return
        front: list[str] = []
        for key in dict.fromkeys(keys):
            if key in self._processing:
                self._dirty.add(key)
            else:
                front.append(key)
        moved = set(front)
        self._first = deque(k for k in self._first if k not in moved)
        self._queue = deque(front + [k for k in self._queue if k not in moved])
        self._queued.update(moved)
        self._update()
        self._wake(everyone=True)

    def spread(self, keys: list[str], *, per_second: float) -> None:
        """Queue ``keys`` at ``per_second`` (the first at once) instead of all at once, taking out of the
        line those that wait already; one being processed is left alone. After adoption the pods that
        only confirm their status come back this way, so the status changes and creates of a takeover
        are not stuck behind thousands of them."""
        if self._shutdown or not keys:
            return
        keys = [k for k in dict.fromkeys(keys) if k not in self._processing]
        waiting = self._queued.intersection(keys)
        if waiting:
            self._first = deque(k for k in self._first if k not in waiting)
            self._queue = deque(k for k in self._queue if k not in waiting)
            self._queued -= waiting
            self._update()
        for i, key in enumerate(keys):
            self.add_after(key, i / per_second)

    def add_after(self, key: str, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= when:
                return
            existing[1].cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = (when, loop.call_at(when, fire))

    def retry(self, key: str, *, min_delay: float = 0.0) -> float:
        """Requeue ``key`` after its backoff delay; returns the delay."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = max(min_delay, self.backoff.delay(n))
        RECONCILE_RETRIES.inc()
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def discard(self, key: str) -> None:
        """Forget a key entirely (the object is gone): failures and pending timers."""
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()

    async def get(self) -> str:
        while not self._queue and not self._first:
            if self._shutdown:
                raise QueueShutDown
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake()  # pass the wake-up on to another worker
                raise
        key = (self._first or self._queue).popleft()
        self._queued.discard(key)
        self._processing.add(key)
        self._update()
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            first = key in self._dirty_first
            self._dirty_first.discard(key)
            self.add(key, first=first)
        self._update()

    async def shutdown(self) -> None:
        """Stop handing out keys (waiting ones are dropped: they are re-derived from the watch on restart)."""
        self._shutdown = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._queue.clear()
        self._first.clear()
        self._queued.clear()
        self._update()
        self._wake(everyone=True)

    async def wait_idle(self) -> None:
        await self._idle.wait()
