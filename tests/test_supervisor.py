"""The supervisor: tasks stop in reverse start order, and an unexpected exit marks the daemon failed."""

from __future__ import annotations

import asyncio

from vk_provider.supervisor import Supervisor


async def test_stop_in_reverse_order() -> None:
    """stop() cancels the last-started task first."""
    sup = Supervisor()
    order: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append(name)

    for name in ("first", "second", "third"):
        sup.spawn(name, forever(name))
    await asyncio.sleep(0)
    await sup.stop(timeout=1)
    assert order == ["third", "second", "first"]


async def test_unexpected_exit_sets_failed() -> None:
    """A critical task that crashes or returns sets ``failed`` and names itself; a non-critical one does not."""
    sup = Supervisor()

    async def crash() -> None:
        raise RuntimeError("boom")

    async def quiet() -> None:
        return None

    sup.spawn("helper", quiet(), critical=False)
    await asyncio.sleep(0.01)  # a deliberate window: the helper ends in it, and that must not count as a failure
    assert not sup.failed.is_set()
    sup.spawn("watch", crash())
    async with asyncio.timeout(1):
        await sup.failed.wait()
    assert sup.failures == ["watch"]
    await sup.stop(timeout=1)
