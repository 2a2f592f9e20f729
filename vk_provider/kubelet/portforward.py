"""Port-forward over SPDY (``portforward.k8s.io``) and over WebSocket channels.

SPDY: the client opens a pair of streams per forwarded connection, ``streamtype`` ``error`` and
``data``, both with headers ``port`` and ``requestid``. Once both are there we dial the pod through
``streams.port_forward`` and pump bytes; a dial failure is written to the error stream.

WebSocket (the Python client's form): ``?ports=a,b``; channel 2i is port i's data and 2i+1 its
error channel; the first frame we send on each channel is the port as 2 little-endian bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import WSMsgType, web

from vk_provider.errors import InvalidInput, ProviderError
from vk_provider.kubelet.cleanup import cancel_and_wait, release
from vk_provider.kubelet.spdy_session import SpdySession, SpdyStream, attach_session

log = structlog.get_logger("vk_provider.kubelet.portforward")

SPDY_PROTOCOLS = ("portforward.k8s.io",)
WS_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io", "v4.base64.channel.k8s.io", "base64.channel.k8s.io")
PAIR_TIMEOUT = 30.0

Dialer = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def parse_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise InvalidInput(f"invalid port {value!r}") from None
    if not 0 < port < 65536:
        raise InvalidInput(f"port {port} out of range")
    return port


def parse_ports(query: object) -> list[int]:
    values: list[str] = []
    getall = getattr(query, "getall", None)
    if getall is not None:
        for name in ("ports", "port"):
            values.extend(getall(name, []))
    ports = [parse_port(p.strip()) for v in values for p in v.split(",") if p.strip()]
    if not ports:
        raise InvalidInput("query parameter ports is required")
    return ports


async def _pipe_to_stream(reader: asyncio.StreamReader, stream: SpdyStream) -> None:
    while True:
        data = await reader.read(32 * 1024)
        if not data:
            break
        await stream.write(data)
    await stream.close()


async def _pipe_from_stream(stream: SpdyStream, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await stream.read()
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _forward_pair(data: SpdyStream, error: SpdyStream, port: int, dial: Dialer) -> None:
    try:
        reader, writer = await dial(port)
    except (ProviderError, OSError) as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        await error.write(f"error forwarding port {port} to pod: {message}".encode(), fin=True)
        await data.close()
        return
    try:
        await asyncio.gather(_pipe_to_stream(reader, data), _pipe_from_stream(data, writer))
    except (ConnectionError, OSError) as exc:
        await error.write(f"error forwarding port {port}: {exc}".encode())
    finally:

        async def close_writer() -> None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

        await release(close_writer, error.close, data.close)


async def serve_spdy(request: web.Request, dial: Dialer, protocol: str) -> web.StreamResponse:
    resp = web.StreamResponse(status=101)
    resp.headers["Connection"] = "Upgrade"
    resp.headers["Upgrade"] = "SPDY/3.1"
    resp.headers["X-Stream-Protocol-Version"] = protocol
    resp.force_close()
    await resp.prepare(request)
    session: SpdySession = attach_session(request)
    pending: dict[str, dict[str, SpdyStream]] = {}
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            stream = await session.accept()
            if stream is None:
                break
            kind = stream.headers.get("streamtype", "")
            request_id = stream.headers.get("requestid", "")
            if kind not in ("data", "error"):
                stream.rst()
                continue
            try:
                port = parse_port(stream.headers.get("port", ""))
            except InvalidInput:
                stream.rst()
                continue
            stream.reply()
            # Old clients send no requestid; they open one pair at a time, so the port keys the pair.
            key = request_id or f"port:{port}"
            pair = pending.setdefault(key, {})
            if kind in pair:
                stream.rst()
                continue
            pair[kind] = stream
            if len(pair) == 2:
                del pending[key]
                task = asyncio.create_task(_forward_pair(pair["data"], pair["error"], port, dial), name="pf-pair")
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        await release(lambda: cancel_and_wait(*tasks), session.close)
    return resp


async def serve_websocket(request: web.Request, dial: Dialer, ports: list[int], ws: web.WebSocketResponse) -> None:
    """Channel form: one connection per port, opened right away; ends when the client closes."""
    lock = asyncio.Lock()
    base64_mode = "base64" in (ws.ws_protocol or "")

    async def send(channel: int, data: bytes) -> None:
        async with lock:
            if base64_mode:
                await ws.send_str(str(channel) + base64.b64encode(data).decode())
            else:
                await ws.send_bytes(bytes([channel]) + data)

    for i, port in enumerate(ports):
        await send(2 * i, struct.pack("<H", port))
        await send(2 * i + 1, struct.pack("<H", port))

    writers: dict[int, asyncio.StreamWriter] = {}
    tasks: list[asyncio.Task[None]] = []

    async def upstream(i: int, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(32 * 1024)
            if not data:
                break
            await send(2 * i, data)

    for i, port in enumerate(ports):
        try:
            reader, writer = await dial(port)
        except (ProviderError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            await send(2 * i + 1, f"error forwarding port {port} to pod: {message}".encode())
            continue
        writers[i] = writer
        tasks.append(asyncio.create_task(upstream(i, reader), name=f"ws-pf-{port}"))
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break
            raw: bytes
            if msg.type == WSMsgType.TEXT and base64_mode:
                text = str(msg.data)
                if not text or not text[0].isdigit():
                    continue
                try:
                    raw = bytes([int(text[0])]) + base64.b64decode(text[1:])
                except ValueError:
                    continue
            elif msg.type == WSMsgType.TEXT:
                raw = str(msg.data).encode()  # any frame is bytes to the kubelet
            else:
                raw = bytes(msg.data)
            if len(raw) < 1:
                continue
            channel, data = raw[0], raw[1:]
            w = writers.get(channel // 2)
            if channel % 2 == 0 and w is not None and data:
                w.write(data)
                await w.drain()
    except (ConnectionError, OSError) as exc:
        log.info("websocket port-forward ended", error=repr(exc))
    finally:

        async def close_writers() -> None:
            for w in writers.values():
                w.close()

        await release(lambda: cancel_and_wait(*tasks), close_writers, ws.close)
