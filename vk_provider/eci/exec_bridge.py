"""An exec session over ExecContainerCommand's WebSocketUri.

ECI does not document this stream. What four independent open-source clients of the live service show
(../shared/docs/eci-notes.md) is Kubernetes' kubelet streaming protocol ``channel.k8s.io`` (v1), spoken with
no subprotocol, and that is what this module speaks:

- every message is a binary frame ``[channel][payload]``: 0 stdin (to the container), 1 stdout, 2 stderr,
  3 error, 4 resize (JSON ``{"Width": w, "Height": h}``); a frame with no payload (the lone ``0x01`` the
  server sends at open) carries nothing;
- channel 3 stays silent when the command succeeds; otherwise it carries the kubelet's text
  ``command terminated with non-zero exit code: <runtime error>``, whose CRI runtime error ends in
  ``exit code N`` (``exit status N`` from os/exec); anything else there is an error of the exec itself;
- the server closes the socket after the command and its error text;
- v1 cannot half-close stdin. With a TTY, stdin's end is sent as ^D, as a terminal would. Without one,
  nothing can tell the command. If what went in is a whole tar archive (``kubectl cp`` into a pod), it is
  padded with zero blocks to tar's 10240-byte record, as tar itself pads archives, so that tar sees its
  last record and ends by itself (GNU tar waits for a full record otherwise). Any command still running
  once stdin has ended and it has been quiet for ``stdin_eof_grace`` seconds is ended (closing the
  socket stops it), with a notice on stderr and exit code 255;
- the server closes a socket idle for about 60 s, so we ping every ``ping_interval`` seconds.

A session that reached no verdict (the socket dropped, or closed with a code other than normal, or an
error text that is not an exit code) reports exit code 255, as ssh does when the connection fails (kubectl
takes only 0-255), with ``error`` saying why and a line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import structlog

from vk_provider.errors import TransientError

log = structlog.get_logger("vk_provider.eci.exec")

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
EOT = b"\x04"  # ^D: a terminal's end of input
NO_VERDICT = 255
TAR_BLOCK, TAR_RECORD = 512, 10240  # tar's block, and GNU tar's default record (20 blocks)
PING_INTERVAL = 30.0
STDIN_EOF_GRACE = 5.0
_NON_ZERO = re.compile(r"command terminated with non-zero exit code: .*\bexit (?:code|status) (\d+)\s*\Z", re.S)
EOF_NOTICE = (
    "vk-eci: stdin ended, but ECI's exec stream cannot pass end-of-input to a command without a TTY; "
    "the session was ended {grace:g} s after the command's last output, which stopped the command before "
    "it finished (reported as exit code 255). Use a command that stops reading by itself, or -t.\n"
)


def exit_code_from_error_text(text: str) -> int | None:
    """The exit code in the kubelet's v1 error text, or None when the text is not a NonZeroExitCode."""
    match = _NON_ZERO.match(text.strip())
    return int(match.group(1)) if match else None


class WebSocketExecSession:
    """Implements vk_provider.provider.ExecSession over one WebSocket."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        tty: bool = False,
        ping_interval: float | None = PING_INTERVAL,
        stdin_eof_grace: float = STDIN_EOF_GRACE,
    ) -> None:
        self._session = session
        self._ws = ws
        self._tty = tty
        self._grace = stdin_eof_grace
        self._exit: int | None = None
        self._error: str | None = None
        self._error_text = bytearray()
        self._done = asyncio.Event()
        self._closed = False
        self._line_start = True  # what a ^D would do on a terminal depends on it
        self._eof_sent = False
        self._stdin_head = bytearray()  # the first tar block of stdin, and its last two
        self._stdin_tail = bytearray()
        self._stdin_len = 0
        self._gave_up = False
        self._activity = asyncio.Event()  # set on every frame from the server
        self._tasks: list[asyncio.Task[None]] = []
        if ping_interval:
            self._tasks.append(asyncio.create_task(self._ping(ping_interval), name="eci-exec-ping"))

    @classmethod
    async def connect(
        cls,
        uri: str,
        *,
        tty: bool = False,
        timeout: float = 10.0,
        ping_interval: float | None = PING_INTERVAL,
        stdin_eof_grace: float = STDIN_EOF_GRACE,
    ) -> WebSocketExecSession:
        session = aiohttp.ClientSession(trust_env=False)
        try:
            ws = await session.ws_connect(uri, timeout=aiohttp.ClientWSTimeout(ws_close=timeout), max_msg_size=0)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await session.close()
            raise TransientError(f"exec: cannot open the ECI exec stream: {type(exc).__name__}") from None
        return cls(session, ws, tty=tty, ping_interval=ping_interval, stdin_eof_grace=stdin_eof_grace)

    async def _send(self, frame: bytes) -> None:
        if not self._ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_bytes(frame)

    async def write_stdin(self, data: bytes) -> None:
        if data and not self._eof_sent:
            self._line_start = data[-1:] in (b"\n", b"\r")
            if len(self._stdin_head) < TAR_BLOCK:
                self._stdin_head += data[: TAR_BLOCK - len(self._stdin_head)]
            self._stdin_tail = (self._stdin_tail + data)[-2 * TAR_BLOCK :]
            self._stdin_len += len(data)
            await self._send(bytes([STDIN]) + data)

    async def close_stdin(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        if self._tty:
            # ^D ends a read at the start of a line; after a partial line the first one only flushes it.
            await self._send(bytes([STDIN]) + (EOT if self._line_start else EOT + EOT))
            return
        if self._is_whole_tar() and (pad := -self._stdin_len % TAR_RECORD):
            await self._send(bytes([STDIN]) + bytes(pad))
        self._tasks.append(asyncio.create_task(self._end_when_quiet(), name="eci-exec-stdin-eof"))

    def _is_whole_tar(self) -> bool:
        """stdin was a whole tar archive: a ustar header first, whole blocks, two zero blocks at the end."""
        return (
            self._stdin_len >= 3 * TAR_BLOCK
            and self._stdin_len % TAR_BLOCK == 0
            and self._stdin_head[257:262] == b"ustar"
            and not any(self._stdin_tail)
        )

    async def resize(self, width: int, height: int) -> None:
        # Only terminal sessions carry resizes (the kubelet opens the resize stream only with a TTY), so one
        # marks the session as a terminal even when the caller did not say (provider.exec does not pass tty).
        self._tty = True
        payload = json.dumps({"Width": int(width), "Height": int(height)}).encode()
        await self._send(bytes([RESIZE]) + payload)

    async def _ping(self, interval: float) -> None:
        """Traffic for an idle session, which the server would otherwise close after about 60 s."""
        while not self._ws.closed:
            await asyncio.sleep(interval)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                await self._ws.ping()

    async def _end_when_quiet(self) -> None:
        while True:
            self._activity.clear()
            try:
                await asyncio.wait_for(self._activity.wait(), self._grace)
            except TimeoutError:
                break
        if not self._done.is_set():
            self._gave_up = True
            log.info("eci exec: stdin ended without a TTY; ending the quiet session", grace=self._grace)
            await self._ws.close()

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        try:
            async for msg in self._ws:
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                data: bytes = msg.data if msg.type == aiohttp.WSMsgType.BINARY else str(msg.data).encode()
                self._activity.set()
                if len(data) < 2:
                    continue  # the lone channel byte at open, or an empty frame
                channel, payload = data[0], data[1:]
                if channel in (STDOUT, STDERR):
                    yield channel, payload
                elif channel == ERROR:
                    self._error_text += payload
            # A close frame with the normal code is the server ending a finished command.
            notice = self._verdict(self._ws.close_code == aiohttp.WSCloseCode.OK and self._ws.exception() is None)
            if notice:
                yield STDERR, notice.encode()
        finally:
            if self._exit is None:
                self._exit = NO_VERDICT
                self._error = self._error or "the exec stream ended early"
            self._done.set()

    def _verdict(self, clean: bool) -> str:
        """Set the exit status once the stream has ended; returns a notice for stderr, or ""."""
        text = self._error_text.decode("utf-8", "replace").strip()
        if text:
            code = exit_code_from_error_text(text)
            if code is not None:
                self._exit = code
                return ""
            self._exit, self._error = NO_VERDICT, text
            return f"vk-eci: ECI exec error: {text}\n"
        if self._gave_up:
            self._exit, self._error = NO_VERDICT, "stdin ended without a TTY and the command did not finish"
            return EOF_NOTICE.format(grace=self._grace)
        if clean:
            self._exit = 0
            return ""
        self._exit = NO_VERDICT
        self._error = f"the ECI exec stream closed without a verdict (close code {self._ws.close_code})"
        return f"vk-eci: {self._error}\n"

    @property
    def error(self) -> str | None:
        return self._error

    async def exit_code(self) -> int:
        await self._done.wait()
        return self._exit if self._exit is not None else NO_VERDICT

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._ws.close()
        await self._session.close()
        self._done.set()
