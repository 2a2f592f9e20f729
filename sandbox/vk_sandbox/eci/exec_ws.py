"""The simulator's exec WebSocket: Kubernetes' kubelet streaming framing, as the live service is seen to speak it.

What four open-source clients of the live service show (../shared/docs/eci-notes.md, ExecContainerCommand):
``channel.k8s.io`` (v1) binary frames ``[channel][payload]`` with no subprotocol; a lone stdout frame at
open; nothing on the error channel on success and the kubelet's "command terminated with non-zero exit
code: ..." text otherwise; no way to half-close stdin; idle sockets closed after about 60 s. What is not
known (whether v4/v5 subprotocols are accepted, the exact error text, the idle close code) is an option or
a documented choice here; see docs/sandbox-eci.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from vk_sandbox.eci.actions import ExecTicket
from vk_sandbox.eci.engine import Runtime
from vk_sandbox.eci.model import Group

log = structlog.get_logger("vk_sandbox.eci.exec")

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V1 = "channel.k8s.io"
KUBELET_SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", V1)
# The close code of an idle close is not known; a non-normal one lets a client tell it from a finished command.
IDLE_CLOSE = WSCloseCode.GOING_AWAY


@dataclass(frozen=True)
class ExecOptions:
    """What is unknown about the live exec WebSocket, as options; the defaults are the evidenced behaviour.

    ``subprotocols``: those accepted when a client offers them, in the kubelet's way (v4/v5 then carry a
    JSON Status on channel 3, v5 also the ``[255, 0]`` stdin half-close). Empty (the default): offered
    subprotocols are ignored and every session speaks v1, as the known clients see it.
    ``idle_timeout``: seconds without any frame from the client (pings count) before the socket is closed,
    which kills the command.
    """

    subprotocols: tuple[str, ...] = ()
    idle_timeout: float = 60.0

    def __post_init__(self) -> None:
        unknown = set(self.subprotocols) - set(KUBELET_SUBPROTOCOLS)
        if unknown:
            known = ", ".join(KUBELET_SUBPROTOCOLS)
            raise ValueError(f"unknown exec subprotocol(s) {', '.join(sorted(unknown))} (known: {known})")
        if self.idle_timeout <= 0:
            raise ValueError("the exec idle timeout must be positive")


def go_list(items: list[str]) -> str:
    """A string slice as Go's %v prints it: ``[sh -c exit 2]``."""
    return "[" + " ".join(items) + "]"


def error_text(command: list[str], code: int) -> bytes:
    """The v1 error channel after the command: nothing on success, else the kubelet's NonZeroExitCode message
    (``command terminated with non-zero exit code: %v`` around the CRI runtime's ``CodeExitError``)."""
    if code == 0:
        return b""
    cause = f"error executing command {go_list(command)}, exit code {code}"
    return f"command terminated with non-zero exit code: {cause}".encode()


def error_status(command: list[str], code: int) -> bytes:
    """The v4/v5 error channel: the kubelet's metav1.Status."""
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": error_text(command, code).decode(),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    ).encode()


def internal_error(protocol: str, message: str) -> bytes:
    """The kubelet's answer when the exec itself fails (not the command): an InternalError."""
    text = f"Internal error occurred: error executing command in container: {message}"
    if protocol == V1:
        return text.encode()
    return json.dumps(
        {"metadata": {}, "status": "Failure", "message": text, "reason": "InternalError", "code": 500}
    ).encode()


async def serve(
    request: web.Request,
    ticket: ExecTicket,
    group: Group | None,
    runtime: Runtime,
    options: ExecOptions,
    opened: Callable[[web.WebSocketResponse], None],
) -> web.WebSocketResponse:
    """Upgrade and run the ticket's exec session; returns once the socket is closed."""
    ws = web.WebSocketResponse(protocols=options.subprotocols, autoping=False, heartbeat=None, max_msg_size=8 << 20)
    await ws.prepare(request)
    opened(ws)
    protocol = ws.ws_protocol or V1
    inbox: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=64)

    async def send(channel: int, data: bytes) -> None:
        if not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(bytes([channel]) + data)

    async def recv() -> tuple[int, bytes] | None:
        item = await inbox.get()
        if item is None:
            inbox.put_nowait(None)  # every later call sees the end too
        return item

    reader = asyncio.create_task(_read(ws, protocol, options.idle_timeout, inbox), name="sim-exec-reader")
    try:
        # The kubelet's "connection established" notice: an empty frame on the lowest output channel.
        await send(STDOUT, b"")
        if group is None:
            payload = internal_error(protocol, f"container group {ticket.group_id} is gone")
        else:
            try:
                code = await runtime.exec_stream(
                    group, ticket.container, ticket.command, ticket.tty, ticket.stdin, recv, send
                )
                payload = error_text(ticket.command, code) if protocol == V1 else error_status(ticket.command, code)
            except (OSError, ValueError) as exc:
                payload = internal_error(protocol, str(exc))
        if payload:
            await send(ERROR, payload)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await ws.close()
    return ws


async def _read(
    ws: web.WebSocketResponse, protocol: str, idle_timeout: float, inbox: asyncio.Queue[tuple[int, bytes] | None]
) -> None:
    """Client frames into the inbox; pings answered; the socket closed after idle_timeout without a frame."""
    try:
        while True:
            try:
                msg = await ws.receive(timeout=idle_timeout)
            except TimeoutError:
                log.info("exec socket idle, closing", seconds=idle_timeout)
                await ws.close(code=IDLE_CLOSE, message=b"idle")
                return
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            if msg.type == WSMsgType.PONG:
                continue
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                return
            frame = _decode(msg.type, msg.data, protocol)
            if frame is not None:
                await inbox.put(frame)
    finally:
        # The end must be seen; input still queued for a client that is gone may be dropped for it.
        while True:
            try:
                inbox.put_nowait(None)
                break
            except asyncio.QueueFull:
                inbox.get_nowait()


def _decode(kind: WSMsgType, data: Any, protocol: str) -> tuple[int, bytes] | None:
    raw: bytes = data.encode() if kind == WSMsgType.TEXT else data
    if not raw:
        return None
    channel = raw[0]
    if channel in (STDIN, RESIZE):
        return channel, raw[1:]
    if channel == CLOSE and protocol.startswith("v5.") and raw[1:2] == bytes([STDIN]):
        return CLOSE, raw[1:]
    return None  # v1 and v4 have no close signal; the kubelet ignores frames on unknown channels
