"""Remote command (exec and attach) over SPDY/3.1 and over WebSocket channels.

The handler in ``server.py`` resolves the pod, asks the backend for an ``ExecSession`` (so 404 and
501 are answered before any upgrade), then hands the request here. We pump bytes between the
client's streams and the session and report the exit status the way each protocol version
expects: v4/v5 a ``metav1.Status`` with reason NonZeroExitCode and an ExitCode cause, older
versions a plain-text error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from vk_provider.errors import InvalidInput, ProviderError
from vk_provider.kubelet import spdy
from vk_provider.kubelet.cleanup import cancel_and_wait, release
from vk_provider.kubelet.spdy_session import SpdySession, SpdyStream, attach_session
from vk_provider.provider import ExecSession

log = structlog.get_logger("vk_provider.kubelet.remotecommand")

# Preference is the client's (first offered that we support), as the real kubelet does.
SPDY_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
WS_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
WS_CLOSE_SIGNAL = 255
STREAM_CREATION_TIMEOUT = 30.0
FIRST_SIZE_WAIT = 1.0  # how long a terminal session's first input waits for the first window size
_STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}


def _flag(query: Mapping[str, str], *names: str) -> bool:
    for name in names:
        value = query.get(name)
        if value is not None:
            if value.lower() in ("1", "true"):
                return True
            if value.lower() in ("", "0", "false"):
                return False
            raise InvalidInput(f"{name}: expected a boolean, got {value!r}")
    return False


@dataclass(frozen=True)
class StreamOptions:
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    command: tuple[str, ...] = ()


def parse_stream_options(query: Any, *, needs_command: bool) -> StreamOptions:
    """Parse exec/attach query parameters (``stdin``/``stdout``/``stderr``/``tty``/``command``).

    The older names ``input``/``output``/``error`` are accepted too. As in the kubelet, tty turns
    stderr off (the terminal merges it) and at least one stream must be requested.
    """
    stdin = _flag(query, "stdin", "input")
    stdout = _flag(query, "stdout", "output")
    stderr = _flag(query, "stderr", "error")
    tty = _flag(query, "tty")
    if tty:
        stderr = False
    if not (stdin or stdout or stderr):
        raise InvalidInput("you must specify at least 1 of stdin, stdout, stderr")
    command = tuple(query.getall("command", [])) if hasattr(query, "getall") else ()
    if needs_command and not command:
        raise InvalidInput("command is required")
    return StreamOptions(stdin, stdout, stderr, tty, command)


def offered_protocols(headers: Any, name: str = "X-Stream-Protocol-Version") -> list[str]:
    out: list[str] = []
    for value in headers.getall(name, []):
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def negotiate(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    for proto in offered:
        if proto in supported:
            return proto
    return None


def refuse_protocols(supported: Sequence[str], message: str = "no supported stream protocol") -> web.Response:
    """403 with the accepted list, what clients expect when negotiation fails."""
    resp = status_response(403, "Forbidden", message)
    for proto in supported:
        resp.headers.add("X-Accepted-Stream-Protocol-Versions", proto)
    return resp


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_body(code, reason, message), status=code)


def exit_status(exit_code: int) -> dict[str, Any]:
    """The v4/v5 error-channel payload: Success, or NonZeroExitCode with an ExitCode cause."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def error_payload(protocol: str, exit_code: int) -> bytes:
    """What goes on the error stream at the end for this protocol version (b"" = nothing)."""
    if protocol.startswith(("v4.", "v5.")):
        return json.dumps(exit_status(exit_code)).encode()
    if exit_code == 0:
        return b""
    return f"command terminated with non-zero exit code: exit status {exit_code}".encode()


def _resize_messages(buf: bytearray) -> list[tuple[int, int]]:
    """Pop complete ``{"Width":w,"Height":h}`` objects off a byte buffer (they arrive back to back)."""
    out: list[tuple[int, int]] = []
    decoder = json.JSONDecoder()
    text = buf.decode("utf-8", "replace")
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        pos = end
        if isinstance(obj, dict):
            w, h = obj.get("Width", obj.get("width")), obj.get("Height", obj.get("height"))
            if isinstance(w, int) and isinstance(h, int) and 0 <= w < 65536 and 0 <= h < 65536:
                out.append((w, h))
    del buf[: len(text[:pos].encode())]
    if len(buf) > 4096:  # garbage that never parses: drop it rather than grow forever
        buf.clear()
    return out


# ------------------------------------------------------------------------------------------------
# SPDY


async def _accept_streams(
    session: SpdySession, opts: StreamOptions, protocol: str, timeout: float
) -> dict[int, SpdyStream] | None:
    expected = {ERROR}
    if opts.stdin:
        expected.add(STDIN)
    if opts.stdout:
        expected.add(STDOUT)
    if opts.stderr:
        expected.add(STDERR)
    if opts.tty and protocol not in ("channel.k8s.io", "v2.channel.k8s.io"):
        expected.add(RESIZE)
    got: dict[int, SpdyStream] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not expected <= got.keys():
        stream = await session.accept(max(0.0, deadline - loop.time()))
        if stream is None:
            return None
        kind = _STREAM_TYPES.get(stream.headers.get("streamtype", ""))
        if kind is None or kind in got:
            stream.rst(spdy.PROTOCOL_ERROR)
            continue
        stream.reply()
        got[kind] = stream
        # v1 clients do not open stderr with a tty; nothing more to wait for once we have the rest.
    return got


async def _wait_closed(session: SpdySession) -> None:
    await session.closed.wait()


async def _refuse_late_streams(session: SpdySession) -> None:
    """Streams opened after the set is complete are refused at once, so no client waits for a reply."""
    while (stream := await session.accept()) is not None:
        stream.rst(spdy.REFUSED_STREAM)


async def _pump_stdin(stream: SpdyStream, exec_session: ExecSession, sized: asyncio.Event | None = None) -> None:
    """Input to the process. With a terminal (``sized`` given), the first input waits for the client's first
    window size (bounded): SPDY's streams are independent, so a command that reads a line and then asks for its
    terminal size would otherwise race the resize message kubectl sends before any input."""
    delivering = True
    while True:
        data = await stream.read()
        if not data:
            break
        if sized is not None and not sized.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sized.wait(), FIRST_SIZE_WAIT)
        if not delivering:
            continue  # keep draining so the connection is not paused for unread input
        try:
            await exec_session.write_stdin(data)
        except (OSError, ProviderError) as exc:
            # The process may have exited and closed its stdin; its output and status still matter.
            log.debug("spdy exec: input not delivered", error=repr(exc))
            delivering = False
    if delivering:
        await exec_session.close_stdin()


async def _pump_resize_spdy(stream: SpdyStream, exec_session: ExecSession, sized: asyncio.Event) -> None:
    buf = bytearray()
    try:
        while True:
            data = await stream.read()
            if not data:
                return
            buf += data
            for w, h in _resize_messages(buf):
                await exec_session.resize(w, h)
                sized.set()
    finally:
        sized.set()  # no (more) sizes: never hold input back for one


async def _pump_output_spdy(exec_session: ExecSession, streams: dict[int, SpdyStream], tty: bool) -> None:
    async for channel, data in exec_session.output():
        target = streams.get(channel)
        if target is None and tty:
            target = streams.get(STDOUT)
        if target is not None and data:
            await target.write(data)


async def serve_spdy(
    request: web.Request,
    exec_session: ExecSession,
    opts: StreamOptions,
    protocol: str,
    *,
    timeout: float = STREAM_CREATION_TIMEOUT,
) -> web.StreamResponse:
    """Upgrade to SPDY and run one exec/attach; returns after teardown (or when the client leaves)."""
    resp = web.StreamResponse(status=101)
    resp.headers["Connection"] = "Upgrade"
    resp.headers["Upgrade"] = "SPDY/3.1"
    resp.headers["X-Stream-Protocol-Version"] = protocol
    resp.force_close()
    await resp.prepare(request)
    session = attach_session(request)
    tasks: list[asyncio.Task[None]] = []
    try:
        streams = await _accept_streams(session, opts, protocol, timeout)
        if streams is None:
            log.info("spdy exec: client did not open the expected streams")
            return resp
        tasks.append(asyncio.create_task(_refuse_late_streams(session), name="spdy-late-streams"))
        sized = asyncio.Event() if RESIZE in streams else None
        if STDIN in streams:
            pump = _pump_stdin(streams[STDIN], exec_session, sized if opts.tty else None)
            tasks.append(asyncio.create_task(pump, name="spdy-stdin"))
        if sized is not None:
            resize = _pump_resize_spdy(streams[RESIZE], exec_session, sized)
            tasks.append(asyncio.create_task(resize, name="spdy-resize"))
        output = asyncio.create_task(_pump_output_spdy(exec_session, streams, opts.tty), name="spdy-output")
        gone: asyncio.Task[None] = asyncio.create_task(_wait_closed(session), name="spdy-closed")
        tasks += [output, gone]  # cancelled in the finally below, however we leave
        await asyncio.wait({output, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not output.done():  # the client went away first
            return resp
        output.result()
        code = await exec_session.exit_code()
        # Teardown order the clients expect: status, FIN on outputs, GOAWAY, close.
        payload = error_payload(protocol, code)
        await streams[ERROR].write(payload, fin=True)
        for kind in (STDOUT, STDERR):
            if kind in streams:
                await streams[kind].close()
        await session.close()
    except Exception as exc:
        log.warning("spdy exec failed", error=repr(exc))
        await session.close(spdy.GOAWAY_INTERNAL_ERROR)
    finally:
        await release(exec_session.close, lambda: cancel_and_wait(*tasks), session.close)
    return resp


# ------------------------------------------------------------------------------------------------
# WebSocket


class _WsChannels:
    """Channel framing of one WebSocket protocol: binary (channel byte) or base64 text (channel digit)."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.base64 = "base64" in protocol
        self.v5 = protocol.startswith("v5.")
        self.lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self.lock:
            if self.base64:
                await self.ws.send_str(str(channel) + base64.b64encode(data).decode())
            else:
                await self.ws.send_bytes(bytes([channel]) + data)

    def decode(self, msg_type: WSMsgType, payload: Any) -> tuple[int, bytes] | None:
        if self.base64:
            if msg_type != WSMsgType.TEXT or not payload:
                return None
            try:
                return int(payload[0]), base64.b64decode(payload[1:], validate=False)
            except ValueError:
                return None
        if msg_type == WSMsgType.TEXT:
            # The Python client sends str stdin as a text frame whose first character is the channel;
            # the kubelet reads any frame as bytes, so we do too.
            payload = str(payload).encode()
        elif msg_type != WSMsgType.BINARY:
            return None
        if not payload:
            return None
        return payload[0], bytes(payload[1:])


async def serve_websocket(
    request: web.Request, exec_session: ExecSession, opts: StreamOptions, ws: web.WebSocketResponse
) -> web.WebSocketResponse:
    """Run one exec/attach on an already prepared WebSocket."""
    ch = _WsChannels(ws, ws.ws_protocol or "channel.k8s.io")
    stdin_closed = False
    resize_buf = bytearray()

    async def reader() -> None:
        nonlocal stdin_closed
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            decoded = ch.decode(msg.type, msg.data)
            if decoded is None:
                continue
            channel, data = decoded
            try:
                if channel == STDIN and opts.stdin and not stdin_closed:
                    if data:
                        await exec_session.write_stdin(data)
                elif channel == RESIZE:
                    resize_buf.extend(data)
                    for w, h in _resize_messages(resize_buf):
                        await exec_session.resize(w, h)
                elif channel == WS_CLOSE_SIGNAL and ch.v5 and data[:1] == bytes([STDIN]) and not stdin_closed:
                    stdin_closed = True
                    await exec_session.close_stdin()
            except (OSError, ProviderError) as exc:
                # The process may have exited and closed its stdin; its output and status still matter.
                log.debug("websocket exec: input not delivered", error=repr(exc))
                stdin_closed = True

    async def writer() -> None:
        async for channel, data in exec_session.output():
            if not data:
                continue
            if channel == STDERR and not opts.stderr:
                if not opts.tty:
                    continue
                channel = STDOUT
            if channel == STDOUT and not opts.stdout:
                continue
            await ch.send(channel, data)

    read_task = asyncio.create_task(reader(), name="ws-exec-reader")
    write_task = asyncio.create_task(writer(), name="ws-exec-writer")
    try:
        await asyncio.wait({read_task, write_task}, return_when=asyncio.FIRST_COMPLETED)
        if write_task.done() and write_task.exception() is None:
            code = await exec_session.exit_code()
            payload = error_payload(ch.protocol, code)
            if payload or ch.protocol.startswith(("v4.", "v5.")):
                await ch.send(ERROR, payload)
        elif write_task.done():
            log.warning("websocket exec output failed", error=repr(write_task.exception()))
    except (ConnectionError, RuntimeError) as exc:
        log.info("websocket exec ended early", error=repr(exc))
    finally:
        await release(exec_session.close, lambda: cancel_and_wait(read_task, write_task), ws.close)
    return ws
