"""One supervisor owns every long-lived task of the daemon.

Tasks are started in order through ``vk_provider.aio.create_guarded_task`` (named, crashes logged)
and stopped in reverse order. A task that ends on its own (crash or early return) is an unexpected
exit: it is logged and ``failed`` is set, so ``app.main`` can exit non-zero rather than limp on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from vk_provider.aio import create_guarded_task

log = structlog.get_logger("vk_provider.supervisor")


@dataclass
class _Entry:
    name: str
    task: asyncio.Task[Any]
    critical: bool
    oneshot: bool = False


class Supervisor:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self.failed = asyncio.Event()
        self.failures: list[str] = []
        self._stopping = False

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, critical: bool = True, oneshot: bool = False
    ) -> asyncio.Task[Any]:
        """Start a task; ``critical`` ones ending unexpectedly mark the daemon failed.

        A ``oneshot`` task is expected to return (a start-up step); only a crash of it is unexpected.
        """
        task = create_guarded_task(coro, name=name)
        entry = _Entry(name, task, critical, oneshot)
        self._entries.append(entry)
        task.add_done_callback(lambda t: self._exited(entry, t))
        return task

    def _exited(self, entry: _Entry, task: asyncio.Task[Any]) -> None:
        if self._stopping or task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if entry.oneshot:
                return
            log.error("task exited unexpectedly", task=entry.name)
        if entry.critical:
            self.failures.append(entry.name)
            self.failed.set()

    def alive(self, name: str) -> bool:
        return any(e.name == name and not e.task.done() for e in self._entries)

    def begin_shutdown(self) -> None:
        """From now on tasks ending are expected (workers draining their queue)."""
        self._stopping = True

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Cancel every task in reverse start order, waiting up to ``timeout`` for each to finish."""
        self._stopping = True
        for entry in reversed(self._entries):
            if entry.task.done():
                continue
            entry.task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(entry.task), timeout=timeout)
            except (asyncio.CancelledError, TimeoutError):
                pass
            except Exception as exc:
                log.warning("task failed while stopping", task=entry.name, error=repr(exc))
        self._entries.clear()

    async def join(self, tasks: list[asyncio.Task[Any]], *, timeout: float) -> None:
        """Let ``tasks`` finish on their own for up to ``timeout`` seconds (graceful drain)."""
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
