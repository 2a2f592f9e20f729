"""Fixtures for the sandbox API server tests: a running server per test (without controllers unless asked)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.conftest import KUBECTL
from vk_sandbox.apiserver.server import SandboxAPIServer

T = TypeVar("T")


async def until(fn: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll a cheap in-memory condition until it is truthy (bounded in time); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    """A running SandboxAPIServer with no controllers, fast bookmarks, in a fresh directory."""
    async with SandboxAPIServer(directory=tmp_path / "apiserver", controllers=False, bookmark_interval=0.2) as srv:
        yield srv


class Kubectl:
    """Runs the real kubectl against one server with a fresh cache; returns (rc, stdout, stderr)."""

    def __init__(self, env: dict[str, str], kubeconfig: Path) -> None:
        self.env = dict(env, KUBECONFIG=str(kubeconfig))

    async def run(
        self, *args: str, stdin: bytes | None = None, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def ok(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 30.0
    ) -> str:
        rc, out, err = await self.run(*args, stdin=stdin, env=env, timeout=timeout)
        assert rc == 0, f"kubectl {' '.join(args)} failed ({rc}): {err}{out}"
        return out


@pytest.fixture
def kubectl(apiserver: SandboxAPIServer, kubectl_env: dict[str, str]) -> Kubectl:
    """The real kubectl, as the sandbox admin, with a fresh cache dir."""
    assert os.path.exists(KUBECTL)
    return Kubectl(kubectl_env, apiserver.kubeconfig_path)
