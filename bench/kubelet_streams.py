"""Kubelet API streaming: exec round-trip latency (WebSocket v5 and SPDY v4) and log-follow throughput.

Runs the real KubeletServer in-process (TLS, authn by TokenReview and authz by SAR against a tiny
in-process API double, both cached after the first request) over an in-memory backend double, so
the numbers measure our protocol layers, not a cloud:

    .venv/bin/python bench/kubelet_streams.py --round-trips 2000 --log-mb 256
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client as k8s

from vk_provider.kubelet import spdy
from vk_provider.kubelet.server import KubeletServer
from vk_provider.provider import LogOptions, Pod, PodUsage
from vk_provider.settings import KubeletSettings

POD: Pod = {
    "metadata": {"namespace": "default", "name": "bench", "uid": "u"},
    "spec": {"containers": [{"name": "c"}]},
    "status": {"phase": "Running"},
}


class EchoSession:
    """An in-memory 'cat': stdin comes back on stdout."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def write_stdin(self, data: bytes) -> None:
        await self.queue.put(data)

    async def close_stdin(self) -> None:
        await self.queue.put(None)

    async def resize(self, width: int, height: int) -> None:
        pass

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while (item := await self.queue.get()) is not None:
            yield 1, item

    async def exit_code(self) -> int:
        return 0

    async def close(self) -> None:
        pass


class Backend:
    def __init__(self, log_chunk: bytes, log_chunks: int) -> None:
        self.log_chunk = log_chunk
        self.log_chunks = log_chunks

    def cached_pod(self, namespace: str, name: str) -> Pod | None:
        return POD if (namespace, name) == ("default", "bench") else None

    def cached_pods(self) -> list[Pod]:
        return [POD]

    async def container_logs(self, pod: Pod, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        for _ in range(self.log_chunks):
            yield self.log_chunk

    async def exec(self, pod: Pod, container: str, command: list[str], *, stdin: bool, tty: bool) -> EchoSession:
        return EchoSession()

    async def attach(self, pod: Pod, container: str, *, stdin: bool, tty: bool) -> EchoSession:
        return EchoSession()

    async def port_forward(self, pod: Pod, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise OSError("not used")

    async def pod_usage(self) -> list[PodUsage]:
        return []


async def review_api() -> tuple[web.AppRunner, str]:
    """TokenReview/SAR double: one token, always allowed."""

    async def token(request: web.Request) -> web.Response:
        body = await request.json()
        body["status"] = {"authenticated": True, "user": {"username": "bench", "groups": []}}
        return web.json_response(body, status=201)

    async def sar(request: web.Request) -> web.Response:
        body = await request.json()
        body["status"] = {"allowed": True}
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", token)
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", sar)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def client_ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


HEADERS = {"Authorization": "Bearer bench"}
EXEC_PATH = "/exec/default/bench/c?command=cat&stdin=1&stdout=1"


async def ws_round_trips(port: int, n: int, size: int) -> list[float]:
    payload = os.urandom(size)
    out: list[float] = []
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl())) as s,
        s.ws_connect(f"https://127.0.0.1:{port}{EXEC_PATH}", headers=HEADERS, protocols=["v5.channel.k8s.io"]) as ws,
    ):
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send_bytes(b"\x00" + payload)
            got = 0
            while got < size:
                msg = await ws.receive_bytes()
                got += len(msg) - 1
            out.append(time.perf_counter() - t0)
        await ws.send_bytes(bytes([255, 0]))
    return out


async def spdy_round_trips(port: int, n: int, size: int) -> list[float]:
    payload = os.urandom(size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl())
    writer.write(
        (
            f"POST {EXEC_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            "Authorization: Bearer bench\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head, head
    z = spdy.HeaderCompressor()
    parser = spdy.FrameParser(max_frame_size=1 << 24)
    for sid, kind in ((1, "error"), (3, "stdin"), (5, "stdout")):
        writer.write(spdy.encode_syn_stream(z, sid, {"streamtype": kind}))
    out: list[float] = []
    pending: list[Any] = []

    async def next_frame() -> Any:
        while not pending:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("closed")
            pending.extend(parser.feed(chunk))
        return pending.pop(0)

    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(spdy.encode_data(3, payload))
        got = 0
        while got < size:
            frame = await next_frame()
            if isinstance(frame, spdy.DataFrame) and frame.stream_id == 5:
                got += len(frame.data)
        out.append(time.perf_counter() - t0)
    writer.write(spdy.encode_data(3, b"", fin=True))
    writer.close()
    return out


async def log_throughput(port: int) -> tuple[int, float]:
    total = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl())) as s:
        t0 = time.perf_counter()
        async with s.get(f"https://127.0.0.1:{port}/containerLogs/default/bench/c?follow=true", headers=HEADERS) as r:
            async for chunk in r.content.iter_chunked(1 << 16):
                total += len(chunk)
        return total, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


async def main(round_trips: int, size: int, log_mb: int) -> None:
    runner, url = await review_api()
    api = k8s.ApiClient(k8s.Configuration(host=url))
    chunk = (b"x" * 99 + b"\n") * 655  # ~64 KiB of log lines
    backend = Backend(chunk, max(1, log_mb * 1024 * 1024 // len(chunk)))
    with tempfile.TemporaryDirectory() as d:
        server = KubeletServer(
            KubeletSettings(port=0, bind_address="127.0.0.1", tls_mode="self-signed", cert_dir=Path(d)),
            node_name="bench",
            node_addresses=["127.0.0.1"],
            pods=backend,
            streams=backend,
            api=api,
        )
        await server.start()
        try:
            await ws_round_trips(server.port, 20, size)  # warm-up (also fills the auth caches)
            ws = await ws_round_trips(server.port, round_trips, size)
            sp = await spdy_round_trips(server.port, round_trips, size)
            total, secs = await log_throughput(server.port)
        finally:
            await server.stop()
            await api.close()
            await runner.cleanup()
    print(f"| exec round trip ({size} B stdin -> stdout) | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|")
    for name, vals in (("WebSocket v5", ws), ("SPDY/3.1 v4", sp)):
        print(f"| {name} | {pct(vals, 0.5):.3f} | {pct(vals, 0.99):.3f} | {statistics.mean(vals) * 1000:.3f} |")
    print()
    print("| log follow | bytes | seconds | MiB/s |")
    print("|---|---|---|---|")
    print(f"| HTTPS chunked, 64 KiB chunks | {total} | {secs:.2f} | {total / secs / 2**20:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="stdin bytes per round trip")
    parser.add_argument("--log-mb", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(main(args.round_trips, args.size, args.log_mb))
