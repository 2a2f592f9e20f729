"""Small asyncio helpers: guarded tasks, backoff sequences and a token-bucket rate limiter."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("vk_provider.aio")


def create_guarded_task(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Create a named task whose unexpected exit (crash or early return) is logged."""
    task = asyncio.get_running_loop().create_task(coro, name=name)

    def _done(t: asyncio.Task[T]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.error("task crashed", task=name, error=repr(exc), exc_info=exc)

    task.add_done_callback(_done)
    return task


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: base * 2**n capped at cap, times a random factor."""

    base: float = 0.5
    cap: float = 30.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        raw: float = min(self.cap, self.base * (2 ** max(0, attempt)))
        if self.jitter:
            return raw * (0.5 + random.random() / 2)
        return raw

    def delays(self, retries: int) -> Iterator[float]:
        for i in range(retries):
            yield self.delay(i)


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved up. Fair in arrival order."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    should_retry: Callable[[BaseException], float | None],
    backoff: Backoff,
    retries: int,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds or ``retries`` retries are spent.

    ``should_retry(exc)`` returns None for "give up now", or a minimum delay (e.g. Retry-After; 0 for none).
    """
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            hint = should_retry(exc)
            if hint is None or attempt >= retries:
                raise
            delay = max(hint, backoff.delay(attempt))
            if on_retry is not None:
                on_retry(attempt + 1, exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
