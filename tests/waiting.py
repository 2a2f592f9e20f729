"""The one way tests wait for a condition: poll it until it holds or a timeout passes.

``eventually`` (async; the check may be sync or async) and ``eventually_sync`` (for subprocess tests) call
``check`` until it returns something truthy and return that value. On timeout they raise AssertionError naming
``what`` and the last value the check returned (or the last exception it raised, for the exception types listed
in ``retry_on``; any other exception propagates at once). ``what`` may be a callable, evaluated only on timeout,
for a message that describes the state at that moment.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Description = str | Callable[[], str]


class _Deadline:
    """What both loops share: the deadline, the last value or error seen, and the pause before the next check."""

    def __init__(self, timeout: float, interval: float, what: Description) -> None:
        self.timeout, self.interval, self.what = timeout, interval, what
        self.deadline = time.monotonic() + timeout

    def pause(self, last: object, error: BaseException | None) -> float:
        """Seconds to wait before the next check; AssertionError naming ``what`` once the time is up."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            text = self.what() if callable(self.what) else self.what
            seen = f"last error: {error!r}" if error is not None else f"last value: {last!r}"
            raise AssertionError(f"timed out after {self.timeout:g} s waiting for {text}; {seen}")
        return min(self.interval, remaining)


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,
    interval: float = 0.05,
    what: Description = "the condition",
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``check`` every ``interval`` seconds until it returns a truthy value; return that value."""
    deadline = _Deadline(timeout, interval, what)
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as exc:
            await asyncio.sleep(deadline.pause(None, exc))
            continue
        if value:
            return value  # type: ignore[return-value]  # an awaited value is the T it was awaited for
        await asyncio.sleep(deadline.pause(value, None))


def eventually_sync(
    check: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    what: Description = "the condition",
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """``eventually`` for synchronous tests: blocks the calling thread between checks."""
    deadline = _Deadline(timeout, interval, what)
    while True:
        try:
            value = check()
        except retry_on as exc:
            time.sleep(deadline.pause(None, exc))
            continue
        if value:
            return value
        time.sleep(deadline.pause(value, None))
