"""Fixtures for the sandbox API server tests: a running server per test (without controllers unless asked)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.conftest import KUBECTL
from tests.kubectl import Kubectl
from tests.waiting import eventually
from vk_sandbox.apiserver.server import SandboxAPIServer

T = TypeVar("T")


async def until(fn: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """``eventually`` for a cheap in-memory condition of the sandbox store, checked every 20 ms."""
    return await eventually(fn, timeout=timeout, interval=0.02, what=what)


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    """A running SandboxAPIServer with no controllers, fast bookmarks, in a fresh directory."""
    async with SandboxAPIServer(directory=tmp_path / "apiserver", controllers=False, bookmark_interval=0.2) as srv:
        yield srv


@pytest.fixture
def kubectl(apiserver: SandboxAPIServer, kubectl_env: dict[str, str]) -> Kubectl:
    """The real kubectl, as the sandbox admin, with a fresh cache dir."""
    assert os.path.exists(KUBECTL)
    return Kubectl(kubectl_env, apiserver.kubeconfig_path)
