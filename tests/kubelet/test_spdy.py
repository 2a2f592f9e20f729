"""SPDY/3.1 framing: dictionary, header blocks, every frame type, and a fuzz of the parser."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vk_provider.kubelet import spdy


def test_dictionary_is_the_spdy3_one() -> None:
    """The dictionary is 1423 bytes with Adler-32 0xe3c6a7c2, the id zlib streams of SPDY/3 carry."""
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b",utf-,*,enq=0.")


def test_parses_a_syn_stream_compressed_by_another_implementation() -> None:
    """A published SYN_STREAM (GET /) made by a different SPDY/3 library decodes with our dictionary."""
    frame = bytes.fromhex(
        "800300010000002c0000000100000000000078f9e3c6a7c202e50e507ab442a45a77d7105006b32a4804974d8cfa00000000ffff"
    )
    items = spdy.FrameParser().feed(frame)
    assert items == [spdy.SynStream(1, {":method": "GET", ":path": "/"}, 0, 0, 0)]


def test_header_blocks_share_one_context_per_direction() -> None:
    """Several blocks compressed on one context decode in order on one peer context; values keep NULs."""
    z = spdy.HeaderCompressor()
    frames = b"".join(
        spdy.encode_syn_stream(z, sid, {"streamtype": kind, "multi": "a\x00b"})
        for sid, kind in ((1, "error"), (3, "stdout"))
    )
    parser = spdy.FrameParser()
    items = parser.feed(frames)
    assert [(i.stream_id, i.headers["streamtype"]) for i in items if isinstance(i, spdy.SynStream)] == [
        (1, "error"),
        (3, "stdout"),
    ]
    assert isinstance(items[0], spdy.SynStream) and items[0].headers["multi"] == "a\x00b"


def test_every_frame_type_round_trips_through_the_parser() -> None:
    """Each encoder's output parses back to the same frame, including when fed one byte at a time."""
    z = spdy.HeaderCompressor()
    wire = [
        spdy.encode_syn_stream(z, 5, {"port": "80"}, fin=True, priority=3),
        spdy.encode_syn_reply(z, 5, {}),
        spdy.encode_headers(z, 5, {"x": "y"}, fin=True),
        spdy.encode_rst_stream(5, spdy.CANCEL),
        spdy.encode_settings([(0, 7, 65536)]),
        spdy.encode_ping(9),
        spdy.encode_goaway(5, spdy.GOAWAY_OK),
        spdy.encode_window_update(5, 1000),
        spdy.encode_data(5, b"hello", fin=True),
    ]
    expected = [
        spdy.SynStream(5, {"port": "80"}, 0, 3, spdy.FLAG_FIN),
        spdy.SynReply(5, {}, 0),
        spdy.HeadersFrame(5, {"x": "y"}, spdy.FLAG_FIN),
        spdy.RstStream(5, spdy.CANCEL),
        spdy.Settings([(0, 7, 65536)], 0),
        spdy.Ping(9),
        spdy.GoAway(5, spdy.GOAWAY_OK),
        spdy.WindowUpdate(5, 1000),
        spdy.DataFrame(5, b"hello", spdy.FLAG_FIN),
    ]
    assert spdy.FrameParser().feed(b"".join(wire)) == expected
    bytewise = spdy.FrameParser()
    got: list[object] = []
    for b in b"".join(wire):
        got.extend(bytewise.feed(bytes([b])))
    assert got == expected


def test_control_frame_header_layout() -> None:
    """Control frames start with C=1, version 3, the type, then flags and a 24-bit length (big-endian)."""
    frame = spdy.encode_ping(0x01020304)
    assert frame == bytes.fromhex("80030006000000040102030 4".replace(" ", ""))
    data = spdy.encode_data(3, b"ab", fin=True)
    assert data == struct.pack(">II", 3, (1 << 24) | 2) + b"ab"


def test_unknown_control_frames_are_ignored() -> None:
    """A control frame of an unknown type (e.g. NOOP, CREDENTIAL) is skipped without error."""
    unknown = struct.pack(">HHI", 0x8003, 10, 3) + b"abc"
    assert spdy.FrameParser().feed(unknown + spdy.encode_ping(1)) == [spdy.Ping(1)]


def test_oversized_data_frame_resets_only_its_stream() -> None:
    """A data frame over the limit is skipped and answered with FRAME_TOO_LARGE; later frames still parse."""
    parser = spdy.FrameParser(max_frame_size=16)
    items = parser.feed(spdy.encode_data(3, b"x" * 40) + spdy.encode_ping(2))
    assert items == [spdy.StreamError(3, spdy.FRAME_TOO_LARGE, "data frame too large"), spdy.Ping(2)]


def test_oversized_control_frame_ends_the_session() -> None:
    """A control frame over the limit raises SessionError (its header block would desync zlib)."""
    z = spdy.HeaderCompressor()
    with pytest.raises(spdy.SessionError):
        spdy.FrameParser(max_frame_size=16).feed(spdy.encode_syn_stream(z, 1, {"a": "b" * 100}))


def test_garbage_header_block_and_wrong_version_are_session_errors() -> None:
    """Undecompressable header blocks and non-3 versions end the session; the parser stays failed."""
    bad = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 14) + struct.pack(">IIBB", 1, 0, 0, 0) + b"junk"
    parser = spdy.FrameParser()
    with pytest.raises(spdy.SessionError):
        parser.feed(bad)
    with pytest.raises(spdy.SessionError):
        parser.feed(spdy.encode_ping(1))
    with pytest.raises(spdy.SessionError):
        spdy.FrameParser().feed(struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1")


def test_malformed_but_decompressable_block_resets_the_stream() -> None:
    """A header block that decompresses but lies about its lengths resets just that stream."""
    z = zlib.compressobj(zdict=spdy.DICTIONARY)
    block = z.compress(struct.pack(">II", 1, 50) + b"ab") + z.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack(">IIBB", 7, 0, 0, 0) + block
    frame = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body
    items = spdy.FrameParser().feed(frame)
    assert len(items) == 1 and isinstance(items[0], spdy.StreamError) and items[0].stream_id == 7


def test_zip_bomb_header_block_is_refused() -> None:
    """A small block that inflates past the header limit is a SessionError, not a memory blow-up."""
    z = zlib.compressobj(zdict=spdy.DICTIONARY)
    huge = struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 10_000_000) + b"\0" * 10_000_000
    block = z.compress(huge) + z.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack(">IIBB", 1, 0, 0, 0) + block
    frame = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body
    with pytest.raises(spdy.SessionError):
        spdy.FrameParser(max_frame_size=1 << 20, max_header_size=64 * 1024).feed(frame)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=64), max_size=12), prefix_valid=st.booleans())
def test_fuzz_parser_never_crashes(chunks: list[bytes], prefix_valid: bool) -> None:
    """Arbitrary bytes (after an optional valid frame) only ever yield frames, StreamErrors or SessionError."""
    parser = spdy.FrameParser(max_frame_size=256)
    if prefix_valid:
        parser.feed(spdy.encode_syn_stream(spdy.HeaderCompressor(), 1, {"streamtype": "stdin"}))
    for chunk in chunks:
        try:
            items = parser.feed(chunk)
        except spdy.SessionError:
            return
        for item in items:
            assert isinstance(
                item,
                (
                    spdy.DataFrame,
                    spdy.SynStream,
                    spdy.SynReply,
                    spdy.RstStream,
                    spdy.Settings,
                    spdy.Ping,
                    spdy.GoAway,
                    spdy.HeadersFrame,
                    spdy.WindowUpdate,
                    spdy.StreamError,
                ),
            )


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20),
        st.text(max_size=40),
        max_size=8,
    )
)
def test_fuzz_header_block_round_trip(headers: dict[str, str]) -> None:
    """Any lower-case header map survives encode -> compress -> decompress -> decode."""
    z = spdy.HeaderCompressor()
    items = spdy.FrameParser().feed(spdy.encode_syn_reply(z, 1, headers))
    assert items == [spdy.SynReply(1, headers, 0)]
