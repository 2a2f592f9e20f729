"""Fixtures for the ECI backend tests: a scripted stand-in for the ECI RPC endpoint (the other side
of the SDK boundary) and settings pointing the real SDK at it; the ECI simulator and a started
ECIProvider on it, with helpers to make pods and wait for a status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from tests.waiting import eventually
from vk_provider.eci.provider import ECIProvider
from vk_provider.provider import BackendPod
from vk_provider.settings import ECISettings
from vk_sandbox.eci.server import ECISimulator

Reply = tuple[int, dict[str, Any]]


@dataclass
class FakeECI:
    """Answers each action from a script (a list of replies, consumed in order; the last repeats)."""

    scripts: dict[str, list[Reply | Callable[[dict[str, str]], Reply]]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    wire: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (HTTP method, query string) per call
    delay: dict[str, float] = field(default_factory=dict)
    endpoint: str = ""

    def script(self, action: str, *replies: Reply | Callable[[dict[str, str]], Reply]) -> None:
        self.scripts[action] = list(replies)

    def actions(self) -> list[str]:
        return [a for a, _ in self.calls]

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        self.wire.append((request.method, dict(request.query)))
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        action = params.get("Action", "")
        self.calls.append((action, params))
        if self.delay.get(action):
            await asyncio.sleep(self.delay.pop(action))
        script = self.scripts.get(action)
        if not script:
            return web.json_response(
                {"RequestId": "r", "Code": "InvalidAction.NotFound", "Message": action}, status=404
            )
        reply = script.pop(0) if len(script) > 1 else script[0]
        status, body = reply(params) if callable(reply) else reply
        return web.json_response({"RequestId": "r", **body}, status=status)


def error(code: str, message: str = "boom", status: int = 400) -> Reply:
    return status, {"Code": code, "Message": message, "HostId": "h"}


@pytest.fixture
async def fake_eci() -> AsyncIterator[FakeECI]:
    fake = FakeECI()
    app = web.Application()
    app.router.add_route("*", "/", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.endpoint = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def make_settings(endpoint: str, **overrides: Any) -> ECISettings:
    base: dict[str, Any] = {
        "endpoint": endpoint,
        "access_key_id": "test-id",
        "access_key_secret": SecretStr("test-secret"),
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "max_retries": 3,
        "rate_limit_qps": 1000,
        "rate_limit_burst": 1000,
        "connect_timeout_seconds": 1,
        "read_timeout_seconds": 2,
        "thread_pool_size": 4,
        "vswitch_ids": ["vsw-a"],
        "security_group_id": "sg-a",
        "cluster_name": "test-cluster",
        "cluster_dns": ["10.96.0.10"],
        "spot_notice_poll_interval_seconds": 0,  # tests count calls; notices.py is driven by its own tests
    }
    base.update(overrides)
    return ECISettings(**base)


def dumps(x: Any) -> str:
    return json.dumps(x)


@pytest.fixture
async def sim(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ECISimulator]:
    """The simulator; virtual runtime unless a test asks for real processes (indirect parameter)."""
    async with ECISimulator(directory=tmp_path / "eci", runtime=getattr(request, "param", "virtual")) as s:
        yield s


PROCESS = pytest.mark.parametrize("sim", ["process"], indirect=True)


def settings_for(sim: ECISimulator, **kw: Any) -> ECISettings:
    base: dict[str, Any] = {
        "endpoint": sim.endpoint,
        "region": sim.region,
        "access_key_id": sim.access_key_id,
        "access_key_secret": SecretStr(sim.access_key_secret),
        "vswitch_ids": ["vsw-a"],
        "security_group_id": "sg-a",
        "status_poll_interval_seconds": 0.2,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "spot_notice_poll_interval_seconds": 0,  # tests count calls; notices.py is driven by its own tests
    }
    base.update(kw)
    return ECISettings(**base)


@pytest.fixture
async def provider(sim: ECISimulator) -> AsyncIterator[ECIProvider]:
    p = ECIProvider(settings_for(sim), node_name="vk", log_poll_interval_seconds=0.2, stats_cache_seconds=0)
    await p.start()
    yield p
    # Delete what the test left behind and wait for it, so no container process outlives the test.
    for bp in await p.backend_pods():
        await p.delete_group(bp.group_id)
    await eventually(
        lambda: not sum(sim.stats()["groups"].values()), timeout=15, interval=0.1, what="the test's groups to go"
    )
    await p.close()


def make_pod(name: str, command: list[str], *, uid: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid or f"uid-{name}", **spec.pop("meta", {})},
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": command}], **spec},
    }


async def until(provider: ECIProvider, uid: str, pred: Any, timeout: float = 20) -> BackendPod:
    async def watch() -> BackendPod:
        async for bp in provider.status_changes():
            if bp.uid == uid and pred(bp):
                return bp
        raise AssertionError("status stream ended")

    return await asyncio.wait_for(watch(), timeout)
