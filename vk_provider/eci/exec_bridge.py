"""An exec session over ExecContainerCommand's WebSocketUri.

The real service's framing is undocumented; this module speaks the simulator's (see
docs/sandbox-eci.md), kept in one place so another framing can be swapped in. Every message is a binary
frame whose first byte is a channel:

- 0 stdin (to the container), 1 stdout, 2 stderr (from it);
- 3 exit status, JSON ``{"exitCode": N}`` or ``{"exitCode": -1, "error": "..."}``, sent once after all
  output, then the socket closes;
- 4 resize, JSON ``{"Width": w, "Height": h}``;
- 255 close-channel: ``[255, 0]`` means stdin reached EOF.

Closing the socket kills the process on the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp

from vk_provider.errors import TransientError

STDIN, STDOUT, STDERR, EXIT, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class WebSocketExecSession:
    """Implements vk_provider.provider.ExecSession over one WebSocket."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self._exit: int | None = None
        self._error: str | None = None
        self._done = asyncio.Event()
        self._closed = False

    @classmethod
    async def connect(cls, uri: str, *, timeout: float = 10.0) -> WebSocketExecSession:
        session = aiohttp.ClientSession(trust_env=False)
        try:
            ws = await session.ws_connect(uri, timeout=aiohttp.ClientWSTimeout(ws_close=timeout), max_msg_size=0)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await session.close()
            raise TransientError(f"exec: cannot open the ECI exec stream: {type(exc).__name__}") from None
        return cls(session, ws)

    async def write_stdin(self, data: bytes) -> None:
        if data and not self._ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_bytes(bytes([STDIN]) + data)

    async def close_stdin(self) -> None:
        if not self._ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_bytes(bytes([CLOSE, STDIN]))

    async def resize(self, width: int, height: int) -> None:
        if not self._ws.closed:
            payload = json.dumps({"Width": int(width), "Height": int(height)}).encode()
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_bytes(bytes([RESIZE]) + payload)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    data: bytes = msg.data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    # A text frame is raw output in the one public client we know of.
                    yield STDOUT, str(msg.data).encode()
                    continue
                else:
                    break
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel in (STDOUT, STDERR):
                    if payload:
                        yield channel, payload
                elif channel == EXIT:
                    self._set_exit(payload)
        finally:
            if self._exit is None:
                self._exit = -1
                self._error = self._error or "the exec stream ended without an exit status"
            self._done.set()

    def _set_exit(self, payload: bytes) -> None:
        try:
            info = json.loads(payload)
            self._exit = int(info.get("exitCode", -1))
            if info.get("error"):
                self._error = str(info["error"])
        except (ValueError, TypeError, AttributeError):
            self._exit = -1
            self._error = "unreadable exit status"

    @property
    def error(self) -> str | None:
        return self._error

    async def exit_code(self) -> int:
        await self._done.wait()
        return self._exit if self._exit is not None else -1

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close()
        await self._session.close()
        self._done.set()
