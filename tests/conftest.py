"""Shared fixtures. Component fixtures live in the conftest.py of their own test folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vk_provider import aio

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test and fixture runs on the event loop the daemon runs on (``vk_provider.aio``: uvloop)."""
    return {"uvloop": aio.new_event_loop}


@pytest.fixture
def kubectl_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for running the real kubectl: a fresh HOME and cache dir per test, no proxies."""
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "KUBECONFIG"}
    env["HOME"] = str(home)
    env["KUBECACHEDIR"] = str(home / ".kube" / "cache")
    env["NO_PROXY"] = "127.0.0.1,localhost"
    yield env
