"""A server-side SPDY/3.1 session on an upgraded aiohttp connection.

aiohttp hands the raw bytes of an upgraded connection to whatever "payload parser" we install
(``request.protocol.set_parser``), the same hook its WebSocket support uses; we parse frames there,
synchronously, and write frames straight to the transport. Nothing here knows about Kubernetes:
``remotecommand`` and ``portforward`` sit on top.

Flow control: Go's spdystream (kubectl, kube-apiserver) neither sends WINDOW_UPDATE nor honours
windows, so we do not enforce send windows (we would stall after 64 KiB). We do give window back
(stream and session WINDOW_UPDATE) as data is read, for clients that honour it; inbound data is
bounded by pausing the socket while too much unread data is buffered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from vk_provider.kubelet import spdy

log = structlog.get_logger("vk_provider.kubelet.spdy")

_CHUNK = 32 * 1024
_READ_PAUSE = 4 * 1024 * 1024
_READ_RESUME = 1024 * 1024
_WRITE_HIGH = 256 * 1024
_WINDOW_ACK = 32 * 1024  # give window back in steps, for clients that honour SPDY/3.1 flow control
MAX_STREAMS = 1000


class SpdyStream:
    """One client-opened stream: its headers, buffered inbound data and our write side."""

    def __init__(self, session: SpdySession, stream_id: int, headers: spdy.Headers, fin: bool) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._chunks: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.remote_closed = fin  # client sent FIN
        self.reset = False  # either side reset it
        self.local_closed = False  # we sent FIN
        self.replied = False
        self._unacked = 0  # bytes read since our last WINDOW_UPDATE for this stream
        if fin:
            self._ready.set()

    def _push(self, data: bytes, fin: bool) -> None:
        if data:
            self._chunks.append(data)
            self.session._buffered += len(data)
        if fin:
            self.remote_closed = True
            self._forget_if_done()
        self._ready.set()

    def _abort(self) -> None:
        self.reset = True
        self._ready.set()
        self._forget_if_done()

    def _forget_if_done(self) -> None:
        # A long port-forward session opens a pair of streams per connection: drop finished ones.
        if self.reset or (self.remote_closed and self.local_closed):
            self.session.streams.pop(self.id, None)

    async def read(self) -> bytes:
        """The next inbound chunk; b"" once the client has finished (FIN), reset it, or left."""
        while not self._chunks:
            if self.remote_closed or self.reset or self.session.closed.is_set():
                return b""
            self._ready.clear()
            await self._ready.wait()
        data = self._chunks.popleft()
        self.session._consumed(len(data))
        self._unacked += len(data)
        if self._unacked >= _WINDOW_ACK and not (self.remote_closed or self.reset):
            self.session._send(spdy.encode_window_update(self.id, self._unacked))
            self._unacked = 0
        return data

    def reply(self, headers: spdy.Headers | None = None) -> None:
        if not self.replied and not self.reset:
            self.replied = True
            self.session._send(spdy.encode_syn_reply(self.session._deflate, self.id, headers or {}))

    async def write(self, data: bytes, *, fin: bool = False) -> None:
        if self.local_closed or self.reset or self.session.closed.is_set():
            return
        view = memoryview(data)
        for start in range(0, max(len(view), 1), _CHUNK):
            chunk = bytes(view[start : start + _CHUNK])
            last = start + _CHUNK >= len(view)
            if not chunk and not (fin and last):
                break
            self.session._send(spdy.encode_data(self.id, chunk, fin=fin and last))
            await self.session.drain()
        if fin:
            self.local_closed = True
            self._forget_if_done()

    async def close(self) -> None:
        """Half-close our side with an empty FIN data frame."""
        if not self.local_closed:
            await self.write(b"", fin=True)

    def rst(self, status: int = spdy.CANCEL) -> None:
        if not self.reset:
            self.reset = True
            self.session._send(spdy.encode_rst_stream(self.id, status))
            self._ready.set()
            self._forget_if_done()


class SpdySession:
    """Parses frames fed by aiohttp, tracks streams, answers PING, hands new streams to ``accept``."""

    def __init__(
        self,
        transport: asyncio.Transport,
        drain: Callable[[], Awaitable[None]],
        *,
        max_frame_size: int = 1 << 20,
    ) -> None:
        self._transport = transport
        self._drain = drain
        self._parser = spdy.FrameParser(max_frame_size=max_frame_size)
        self._deflate = spdy.HeaderCompressor()
        self.streams: dict[int, SpdyStream] = {}
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._last_good = 0
        self._buffered = 0
        self._session_unacked = 0
        self._paused = False
        self._goaway_sent = False
        self.closed = asyncio.Event()
        self.remote_goaway = False

    # -- the aiohttp "payload parser" interface -------------------------------------------------
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.closed.is_set():
            return False, b""
        try:
            items = self._parser.feed(data)
        except spdy.SessionError as exc:
            log.warning("spdy session error", reason=exc.reason)
            self._fail(exc.status)
            return False, b""
        for item in items:
            try:
                self._dispatch(item)
            except spdy.SessionError as exc:
                log.warning("spdy session error", reason=exc.reason)
                self._fail(exc.status)
                break
        if self._buffered > _READ_PAUSE and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._finish()

    # -- internals -------------------------------------------------------------------------------
    def _dispatch(self, item: spdy.Frame | spdy.StreamError) -> None:
        if isinstance(item, spdy.DataFrame):
            stream = self.streams.get(item.stream_id)
            if stream is None or stream.reset:
                self._send(spdy.encode_rst_stream(item.stream_id, spdy.INVALID_STREAM))
            elif stream.remote_closed:
                stream.rst(spdy.STREAM_ALREADY_CLOSED)
            else:
                stream._push(item.data, item.fin)
        elif isinstance(item, spdy.SynStream):
            self._on_syn_stream(item)
        elif isinstance(item, spdy.StreamError):
            log.info("spdy stream reset", stream=item.stream_id, reason=item.reason)
            stream = self.streams.get(item.stream_id)
            if stream is not None:
                stream.rst(item.status)
            else:
                self._send(spdy.encode_rst_stream(item.stream_id, item.status))
        elif isinstance(item, spdy.RstStream):
            stream = self.streams.get(item.stream_id)
            if stream is not None:
                stream._abort()
        elif isinstance(item, spdy.Ping):
            self._send(spdy.encode_ping(item.ping_id))
        elif isinstance(item, spdy.GoAway):
            self.remote_goaway = True
            self._incoming.put_nowait(None)
        elif isinstance(item, spdy.HeadersFrame):
            stream = self.streams.get(item.stream_id)
            if stream is None:
                self._send(spdy.encode_rst_stream(item.stream_id, spdy.INVALID_STREAM))
            elif item.flags & spdy.FLAG_FIN:
                stream._push(b"", True)
        # SETTINGS, WINDOW_UPDATE and SYN_REPLY (we open no streams) need no action.

    def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 == 0 or sid <= self._last_good:
            # Client streams are odd and increasing (SPDY/3 §2.3.2).
            raise spdy.SessionError(f"bad client stream id {sid}")
        self._last_good = sid
        if self._goaway_sent or self.remote_goaway:
            self._send(spdy.encode_rst_stream(sid, spdy.REFUSED_STREAM))
            return
        if len(self.streams) >= MAX_STREAMS:
            self._send(spdy.encode_rst_stream(sid, spdy.REFUSED_STREAM))
            return
        stream = SpdyStream(self, sid, frame.headers, frame.fin)
        self.streams[sid] = stream
        self._incoming.put_nowait(stream)

    def _consumed(self, n: int) -> None:
        self._buffered -= n
        self._session_unacked += n
        if self._session_unacked >= _WINDOW_ACK:
            self._send(spdy.encode_window_update(0, self._session_unacked))  # SPDY/3.1 session window
            self._session_unacked = 0
        if self._paused and self._buffered < _READ_RESUME:
            self._paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def _send(self, frame: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(frame)

    def _fail(self, status: int) -> None:
        if not self._goaway_sent:
            self._goaway_sent = True
            self._send(spdy.encode_goaway(self._last_good, status))
        self._transport.close()
        self._finish()

    def _finish(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._incoming.put_nowait(None)
            for stream in self.streams.values():
                stream._ready.set()

    # -- public ----------------------------------------------------------------------------------
    async def accept(self, timeout: float | None = None) -> SpdyStream | None:
        """The next stream the client opened, or None when the session ended (or on timeout)."""
        if self.closed.is_set() and self._incoming.empty():
            return None
        try:
            return await asyncio.wait_for(self._incoming.get(), timeout)
        except TimeoutError:
            return None

    async def drain(self) -> None:
        if self._transport.is_closing():
            return
        if self._transport.get_write_buffer_size() > _WRITE_HIGH:
            await self._drain()

    async def close(self, status: int = spdy.GOAWAY_OK) -> None:
        """GOAWAY, flush what is buffered (bounded), then close the connection."""
        if not self._goaway_sent:
            self._goaway_sent = True
            self._send(spdy.encode_goaway(self._last_good, status))
        try:
            await asyncio.wait_for(self.drain(), 5)
        except (TimeoutError, ConnectionError):
            pass
        self._transport.close()
        self._finish()


def attach_session(request: Any, *, max_frame_size: int = 1 << 20) -> SpdySession:
    """Install a SpdySession as the payload parser of an upgraded aiohttp request (after the 101)."""
    protocol = request.protocol
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost before the upgrade")
    # aiohttp's protocol exposes flow control through _drain_helper (its WebSocket writer uses it).
    session = SpdySession(transport, protocol._drain_helper, max_frame_size=max_frame_size)
    protocol.set_parser(session)
    return session
