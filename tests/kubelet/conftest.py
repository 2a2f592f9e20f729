"""Fixtures of the kubelet API tests: a running KubeletServer over test doubles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s

from tests.kubelet.doubles import FakeAuthAPI, FakePods, FakeStreams, make_pod, usage_fixture
from vk_provider.kubelet.server import KubeletServer
from vk_provider.settings import KubeletSettings

SUBRESOURCES = ("proxy", "stats", "metrics", "log")
VERBS = ("get", "create")


@dataclass
class Kubelet:
    server: KubeletServer
    streams: FakeStreams
    auth: FakeAuthAPI
    echo_port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"


@pytest.fixture
async def echo_server() -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1 (the 'pod' port-forward dials)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def auth_api() -> AsyncIterator[FakeAuthAPI]:
    allowed = {("admin", v, s) for v in VERBS for s in SUBRESOURCES}
    allowed |= {("cert-user", v, s) for v in VERBS for s in SUBRESOURCES}
    async with FakeAuthAPI(
        {"admin-token": ("admin", ["system:masters"]), "nobody-token": ("nobody", [])}, allowed
    ) as api:
        yield api


async def start_kubelet(
    tmp_path: Path, auth_api: FakeAuthAPI, echo_port: int, *, client_ca_pem: bytes | None = None, **settings: object
) -> tuple[KubeletServer, FakeStreams, k8s.ApiClient]:
    api = k8s.ApiClient(k8s.Configuration(host=auth_api.url))
    streams = FakeStreams(forward_to=echo_port, usage=usage_fixture())
    pods = FakePods([make_pod("default", "web", ["app", "idle"]), make_pod("default", "pending", ["app"], "Pending")])
    cfg = KubeletSettings(
        port=0,
        bind_address="127.0.0.1",
        tls_mode="self-signed",
        cert_dir=tmp_path / "certs",
        stream_creation_timeout_seconds=5,
        shutdown_timeout_seconds=1,
        **settings,  # type: ignore[arg-type]
    )
    server = KubeletServer(
        cfg,
        node_name="vk-node",
        node_addresses=["127.0.0.1", "localhost"],
        pods=pods,
        streams=streams,
        api=api,
        client_ca_pem=client_ca_pem,
    )
    await server.start()
    return server, streams, api


@pytest.fixture
async def kubelet(tmp_path: Path, auth_api: FakeAuthAPI, echo_server: int) -> AsyncIterator[Kubelet]:
    server, streams, api = await start_kubelet(tmp_path, auth_api, echo_server)
    try:
        yield Kubelet(server, streams, auth_api, echo_server)
    finally:
        await server.stop()
        for s in streams.sessions:
            await s.close()
        await api.close()
