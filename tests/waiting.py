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


def _failure(what: Description, timeout: float, last: object, error: BaseException | None) -> AssertionError:
    text = what() if callable(what) else what
    seen = f"last error: {error!r}" if error is not None else f"last value: {last!r}"
    return AssertionError(f"timed out after {timeout:g} s waiting for {text}; {seen}")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,
    interval: float = 0.05,
    what: Description = "the condition",
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``check`` every ``interval`` seconds until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as exc:
            error = exc
        else:
            if value:
                return value  # type: ignore[return-value]  # an awaited value is the T it was awaited for
            last, error = value, None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _failure(what, timeout, last, error)
        await asyncio.sleep(min(interval, remaining))


def eventually_sync(
    check: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    what: Description = "the condition",
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """``eventually`` for synchronous tests: blocks the calling thread between checks."""
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = check()
        except retry_on as exc:
            error = exc
        else:
            if value:
                return value
            last, error = value, None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _failure(what, timeout, last, error)
        time.sleep(min(interval, remaining))
