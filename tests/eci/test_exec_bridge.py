"""WebSocketExecSession against a scripted WebSocket peer speaking the channel framing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import WSMsgType, web

from vk_provider.eci.exec_bridge import WebSocketExecSession

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]


@pytest.fixture
async def ws_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        async def route(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await handler(ws)
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/ws", route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"ws://127.0.0.1:{port}/ws"

    yield start
    for r in runners:
        await r.cleanup()


async def test_echo_resize_and_exit(ws_server: Callable[[Handler], Awaitable[str]]) -> None:
    """stdin, resize and stdin-EOF frames reach the peer; output and the exit code come back."""
    received: list[bytes] = []

    async def peer(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            assert msg.type == WSMsgType.BINARY
            received.append(msg.data)
            if msg.data == bytes([255, 0]):
                break
        await ws.send_bytes(b"\x01" + b"".join(m[1:] for m in received if m[0] == 0))
        await ws.send_bytes(b"\x02warn")
        await ws.send_bytes(b"\x03" + json.dumps({"exitCode": 7}).encode())

    sess = await WebSocketExecSession.connect(await ws_server(peer))
    try:
        await sess.resize(80, 24)
        await sess.write_stdin(b"hi")
        await sess.close_stdin()
        out = [x async for x in sess.output()]
        assert out == [(1, b"hi"), (2, b"warn")]
        assert await sess.exit_code() == 7
        assert received[0] == b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode()
    finally:
        await sess.close()
        await sess.close()


async def test_missing_exit_status_is_an_error(ws_server: Callable[[Handler], Awaitable[str]]) -> None:
    """A peer closing without an exit frame gives exit code -1 and an error text, never a hang."""

    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x01partial")

    sess = await WebSocketExecSession.connect(await ws_server(peer))
    try:
        assert [x async for x in sess.output()] == [(1, b"partial")]
        assert await sess.exit_code() == -1 and sess.error
    finally:
        await sess.close()
