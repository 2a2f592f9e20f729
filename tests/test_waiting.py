"""The shared waiting helper: returns the first truthy value, names what it waited for on timeout."""

from __future__ import annotations

import itertools

import pytest

from tests.waiting import eventually, eventually_sync


async def test_returns_the_first_truthy_value_of_a_sync_or_async_check() -> None:
    counter = itertools.count()
    assert await eventually(lambda: next(counter) >= 2 and "done", timeout=5, interval=0) == "done"

    async def check() -> int:
        return next(counter)

    assert await eventually(check, timeout=5, interval=0) == 3


async def test_timeout_names_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the answer; last value: \[\]"):
        await eventually(list, timeout=0.05, interval=0.01, what=lambda: "the answer")


async def test_listed_exceptions_are_retried_and_reported_others_propagate() -> None:
    def fails() -> bool:
        raise KeyError("gone")

    with pytest.raises(AssertionError, match="last error: KeyError"):
        await eventually(fails, timeout=0.05, interval=0.01, retry_on=(KeyError,))
    with pytest.raises(KeyError):
        await eventually(fails, timeout=5)


def test_sync_twin() -> None:
    counter = itertools.count()
    assert eventually_sync(lambda: next(counter) == 2, timeout=5, interval=0) is True
    with pytest.raises(AssertionError, match="waiting for nothing; last value: 0"):
        eventually_sync(lambda: 0, timeout=0.05, interval=0.01, what="nothing")
