"""vk_provider.aio's event loop: every entry point and the test suite run on uvloop, and what the daemon asks of
its loop works there."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import uvloop

from vk_provider import aio


def test_run_runs_the_coroutine_on_uvloop_and_returns_its_value() -> None:
    async def main() -> tuple[type, str, int]:
        loop = asyncio.get_running_loop()
        # run_in_executor (the ECI SDK's calls) and a signal handler (SIGTERM stops the daemon).
        worker = await loop.run_in_executor(None, lambda: threading.current_thread().name)
        got = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, got.set)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(got.wait(), 5)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
        return type(loop), worker, 42

    loop_type, worker, value = aio.run(main())
    assert loop_type is uvloop.Loop
    assert worker != threading.current_thread().name
    assert value == 42


def test_each_run_gets_a_fresh_loop_and_closes_it() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())

    aio.run(main())
    aio.run(main())
    assert loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)


async def test_the_suite_runs_on_the_daemons_loop() -> None:
    """tests/conftest.py's pytest_asyncio_loop_factories: what the suite exercises is what the daemon runs on."""
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
