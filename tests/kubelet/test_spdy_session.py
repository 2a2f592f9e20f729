"""SpdySession over a recording transport: stream lifecycle, PING, resets, teardown, and a fuzz."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vk_provider.kubelet import spdy
from vk_provider.kubelet.spdy_session import SpdySession


class RecordingTransport:
    """The other side of the boundary: collects what the session writes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written.extend(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def frames(self) -> list[Any]:
        return spdy.FrameParser(max_frame_size=1 << 24).feed(bytes(self.written))


async def _no_drain() -> None:
    return None


def new_session() -> tuple[SpdySession, RecordingTransport]:
    t = RecordingTransport()
    return SpdySession(t, _no_drain, max_frame_size=1024), t  # type: ignore[arg-type]


async def test_stream_lifecycle_reply_data_fin_and_goaway() -> None:
    """A client stream is accepted with its headers, data is read until FIN, replies and FIN go out, GOAWAY last."""
    session, t = new_session()
    z = spdy.HeaderCompressor()
    session.feed_data(spdy.encode_syn_stream(z, 1, {"streamtype": "stdin"}) + spdy.encode_data(1, b"abc"))
    stream = await session.accept(1)
    assert stream is not None and stream.headers == {"streamtype": "stdin"}
    stream.reply()
    assert await stream.read() == b"abc"
    session.feed_data(spdy.encode_data(1, b"", fin=True))
    assert await stream.read() == b""
    await stream.write(b"out", fin=True)
    await session.close()
    frames = t.frames()
    assert frames == [
        spdy.SynReply(1, {}, 0),
        spdy.DataFrame(1, b"out", spdy.FLAG_FIN),
        spdy.GoAway(1, spdy.GOAWAY_OK),
    ]
    assert t.closed and await session.accept(1) is None


async def test_ping_echo_and_client_reset() -> None:
    """PING is echoed at once; a client RST_STREAM wakes a blocked reader with end of stream."""
    session, t = new_session()
    z = spdy.HeaderCompressor()
    session.feed_data(spdy.encode_syn_stream(z, 3, {"streamtype": "stdout"}) + spdy.encode_ping(11))
    stream = await session.accept(1)
    assert stream is not None
    reader = asyncio.create_task(stream.read())
    await asyncio.sleep(0)
    session.feed_data(spdy.encode_rst_stream(3, spdy.CANCEL))
    assert await asyncio.wait_for(reader, 1) == b""
    assert spdy.Ping(11) in t.frames()


async def test_even_or_decreasing_stream_ids_end_the_session() -> None:
    """Client stream ids must be odd and increasing; otherwise GOAWAY(PROTOCOL_ERROR) and close."""
    session, t = new_session()
    z = spdy.HeaderCompressor()
    session.feed_data(spdy.encode_syn_stream(z, 2, {"streamtype": "stdin"}))
    assert t.closed
    assert t.frames()[-1] == spdy.GoAway(0, spdy.GOAWAY_PROTOCOL_ERROR)
    assert session.closed.is_set()


async def test_inbound_buffer_pauses_and_resumes_reading() -> None:
    """Unread inbound data past the high-water mark pauses the socket; reading it resumes."""
    session, t = new_session()
    session._parser = spdy.FrameParser(max_frame_size=1 << 20)
    z = spdy.HeaderCompressor()
    session.feed_data(spdy.encode_syn_stream(z, 1, {"streamtype": "stdin"}))
    stream = await session.accept(1)
    assert stream is not None
    chunk = b"x" * (512 * 1024)
    for _ in range(10):
        session.feed_data(spdy.encode_data(1, chunk))
    assert t.paused
    for _ in range(10):
        assert await stream.read() == chunk
    assert not t.paused


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=80), max_size=10))
def test_fuzz_session_never_raises_and_tears_down(chunks: list[bytes]) -> None:
    """Arbitrary bytes after a valid stream: feed_data never raises; a broken session is closed with GOAWAY."""

    async def run() -> None:
        session, t = new_session()
        z = spdy.HeaderCompressor()
        session.feed_data(spdy.encode_syn_stream(z, 1, {"streamtype": "stdin"}))
        for chunk in chunks:
            session.feed_data(chunk)
        if session.closed.is_set() and t.closed:
            frames = t.frames()
            assert isinstance(frames[-1], spdy.GoAway)
        session.feed_eof()
        assert session.closed.is_set()

    asyncio.run(run())


async def test_finished_streams_are_forgotten_so_long_sessions_keep_working() -> None:
    """Streams closed on both sides (or reset) leave the table: 1500 sequential streams exceed no limit."""
    session, t = new_session()
    z = spdy.HeaderCompressor()
    for i in range(1500):
        sid = 2 * i + 1
        session.feed_data(spdy.encode_syn_stream(z, sid, {"streamtype": "data"}))
        stream = await session.accept(1)
        assert stream is not None and stream.id == sid
        stream.reply()
        if i % 2:
            session.feed_data(spdy.encode_data(sid, b"", fin=True))
            await stream.close()
        else:
            session.feed_data(spdy.encode_rst_stream(sid, spdy.CANCEL))
    assert session.streams == {}
    assert not any(isinstance(f, spdy.RstStream) and f.status == spdy.REFUSED_STREAM for f in t.frames())


async def test_window_is_given_back_as_data_is_read() -> None:
    """Read data is given back in >= 32 KiB WINDOW_UPDATEs, per stream and for the session (stream 0)."""
    session, t = new_session()
    session._parser = spdy.FrameParser(max_frame_size=1 << 20)
    z = spdy.HeaderCompressor()
    session.feed_data(spdy.encode_syn_stream(z, 1, {"streamtype": "stdin"}))
    stream = await session.accept(1)
    assert stream is not None
    session.feed_data(spdy.encode_data(1, b"a" * 40_000) + spdy.encode_data(1, b"b" * 30_000))
    assert not [f for f in t.frames() if isinstance(f, spdy.WindowUpdate)]  # nothing read yet
    await stream.read()
    await stream.read()
    updates = [f for f in t.frames() if isinstance(f, spdy.WindowUpdate)]
    assert spdy.WindowUpdate(1, 40_000) in updates and spdy.WindowUpdate(0, 40_000) in updates
    assert sum(u.delta for u in updates if u.stream_id == 1) == 40_000  # 30 000 not yet worth an update
    session.feed_data(spdy.encode_data(1, b"c" * 10_000))
    await stream.read()
    updates = [f for f in t.frames() if isinstance(f, spdy.WindowUpdate)]
    assert sum(u.delta for u in updates if u.stream_id == 1) == 80_000
