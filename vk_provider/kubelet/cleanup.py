"""Cleanup that survives cancellation.

aiohttp cancels a handler when its client disconnects (we turn that on so idle streams notice).
That cancellation can land while a handler's ``finally`` is still releasing backend resources;
running the release as its own task and awaiting it shielded means it always completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("vk_provider.kubelet.cleanup")

_running: set[asyncio.Task[None]] = set()


async def _run(steps: tuple[Callable[[], Awaitable[object]], ...]) -> None:
    for step in steps:
        try:
            await step()
        except Exception as exc:  # one failed step must not skip the others
            log.warning("cleanup step failed", error=repr(exc))


async def release(*steps: Callable[[], Awaitable[object]]) -> None:
    """Run ``steps`` in order to completion, even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(_run(steps))
    _running.add(task)
    task.add_done_callback(_running.discard)
    await asyncio.shield(task)


async def cancel_and_wait(*tasks: asyncio.Task[object] | asyncio.Future[object]) -> None:
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def pending() -> int:
    """Cleanups still running (tests use it to wait for quiescence)."""
    return len(_running)
