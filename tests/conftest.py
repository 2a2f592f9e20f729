"""Shared fixtures. Component fixtures live in the conftest.py of their own test folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


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
