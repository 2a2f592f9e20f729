"""SPDY/3.1 framing: frames, the name/value header block and its zlib contexts. No I/O here.

Only what Kubernetes streaming needs (the Go ``spdystream`` client that kubectl and the API server
use): SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and data
frames. Header blocks are compressed with zlib primed with the SPDY/3 dictionary, one context per
direction for the life of the connection, each block ended with Z_SYNC_FLUSH.

``FrameParser.feed`` never raises anything but ``SessionError``: a problem that only spoils one
stream comes back as a ``StreamError`` item (answer it with RST_STREAM), a problem that spoils the
connection (bad framing, a header block the shared zlib context cannot follow) raises
``SessionError`` (answer it with GOAWAY and close).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

# Control frame types.
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
NOOP = 5  # SPDY/2 only; ignored
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9
FRAME_TOO_LARGE = 11

# GOAWAY status codes.
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

HEADER_SIZE = 8
MAX_LENGTH = (1 << 24) - 1
STREAM_ID_MASK = 0x7FFFFFFF


def _spdy3_dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): 1423 bytes.

    Its first part is a list of header names and values, each behind a 32-bit big-endian length
    (the same shape as a header block); the rest is raw text. Built rather than pasted so the
    structure stays readable; the length and Adler-32 (0xe3c6a7c2, which the zlib stream carries
    as the dictionary id) are checked at import.
    """
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status |200 OK| version HTTP/1.1 url "
        "public set-cookie keep-alive origin"
    )
    items: list[str] = []
    for i, part in enumerate(words.split("|")):
        items.extend([part] if i % 2 else part.split())
    head = b"".join(struct.pack(">I", len(w)) + w.encode() for w in items)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,"
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    return head + tail.encode()


DICTIONARY = _spdy3_dictionary()
if len(DICTIONARY) != 1423 or zlib.adler32(DICTIONARY) != 0xE3C6A7C2:  # pragma: no cover - a typo guard
    raise RuntimeError("SPDY/3 dictionary is corrupt")

Headers = dict[str, str]
"""Header names are lower case; several values of one name are joined with NUL, as on the wire."""


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class StreamError:
    """Not a frame: the parser asks the caller to reset ``stream_id`` with ``status``."""

    stream_id: int
    status: int
    reason: str


Frame = DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate


class SessionError(Exception):
    """The connection cannot continue: send GOAWAY with ``status`` and close."""

    def __init__(self, reason: str, status: int = GOAWAY_PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class HeaderBlockError(ValueError):
    """A decompressed header block does not have the name/value shape."""


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: count, then length-prefixed names and values."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; raises HeaderBlockError on any inconsistency."""
    if len(block) < 4:
        raise HeaderBlockError("header block shorter than its count")
    (count,) = struct.unpack_from(">I", block, 0)
    pos = 4
    # Every pair needs at least 8 bytes of lengths, so a huge count cannot make us loop long.
    if count > (len(block) - 4) // 8:
        raise HeaderBlockError("header count larger than the block")
    headers: Headers = {}
    for _ in range(count):
        parts: list[bytes] = []
        for _what in ("name", "value"):
            if pos + 4 > len(block):
                raise HeaderBlockError("truncated header block")
            (length,) = struct.unpack_from(">I", block, pos)
            pos += 4
            if pos + length > len(block):
                raise HeaderBlockError("header length past the end of the block")
            parts.append(block[pos : pos + length])
            pos += length
        if not parts[0]:
            raise HeaderBlockError("empty header name")
        try:
            name, value = parts[0].decode(), parts[1].decode()
        except UnicodeDecodeError as exc:
            raise HeaderBlockError("header is not UTF-8") from exc
        if name != name.lower():
            raise HeaderBlockError("upper-case header name")
        if name in headers:
            raise HeaderBlockError("duplicate header name")
        headers[name] = value
    if pos != len(block):
        raise HeaderBlockError("trailing bytes after the header block")
    return headers


class HeaderCompressor:
    """One direction's zlib context: every block is flushed with Z_SYNC_FLUSH and the context kept."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The other direction's context. Decompressed output is bounded (a zip bomb is a SessionError)."""

    def __init__(self, max_size: int = 256 * 1024) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)
        self._max = max_size

    def decompress(self, data: bytes) -> bytes:
        try:
            out = self._z.decompress(data, self._max + 1)
        except zlib.error as exc:
            raise SessionError(f"header block does not decompress: {exc}") from exc
        if len(out) > self._max or self._z.unconsumed_tail:
            raise SessionError("header block too large after decompression")
        return out


def _control(frame_type: int, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_LENGTH:
        raise ValueError("control frame body too long")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(body)) + body


def encode_data(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
    if len(data) > MAX_LENGTH:
        raise ValueError("data frame too long")
    return struct.pack(">II", stream_id & STREAM_ID_MASK, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(
    z: HeaderCompressor,
    stream_id: int,
    headers: Headers,
    *,
    fin: bool = False,
    associated_id: int = 0,
    priority: int = 0,
) -> bytes:
    body = struct.pack(">IIBB", stream_id, associated_id, (priority & 7) << 5, 0) + z.compress(headers)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, body)


def encode_syn_reply(z: HeaderCompressor, stream_id: int, headers: Headers, *, fin: bool = False) -> bytes:
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + z.compress(headers))


def encode_headers(z: HeaderCompressor, stream_id: int, headers: Headers, *, fin: bool = False) -> bytes:
    return _control(HEADERS, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + z.compress(headers))


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_settings(entries: list[tuple[int, int, int]], flags: int = 0) -> bytes:
    body = struct.pack(">I", len(entries)) + b"".join(struct.pack(">II", (f << 24) | i, v) for f, i, v in entries)
    return _control(SETTINGS, flags, body)


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_good_stream_id: int, status: int = GOAWAY_OK) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good_stream_id, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))


class FrameParser:
    """Incremental parser of one direction of a connection: feed bytes, get frames.

    ``max_frame_size`` bounds every frame body. An oversized data frame is skipped and its stream
    reset (FRAME_TOO_LARGE); an oversized control frame ends the session, because a header block we
    did not decompress leaves the shared zlib context out of step.
    """

    def __init__(self, max_frame_size: int = 1 << 20, max_header_size: int = 256 * 1024) -> None:
        self._buf = bytearray()
        self._max = max_frame_size
        self._inflate = HeaderDecompressor(max_header_size)
        self._skip = 0
        self._broken = False

    def feed(self, data: bytes) -> list[Frame | StreamError]:
        if self._broken:
            raise SessionError("session already failed")
        try:
            return self._feed(data)
        except SessionError:
            self._broken = True
            raise

    def _feed(self, data: bytes) -> list[Frame | StreamError]:
        self._buf += data
        out: list[Frame | StreamError] = []
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                if self._skip:
                    return out
            if len(self._buf) < HEADER_SIZE:
                return out
            first, second = struct.unpack_from(">II", self._buf, 0)
            flags, length = second >> 24, second & 0xFFFFFF
            if length > self._max:
                if first & 0x80000000:
                    raise SessionError("control frame too large", GOAWAY_PROTOCOL_ERROR)
                stream_id = first & STREAM_ID_MASK
                del self._buf[:HEADER_SIZE]
                self._skip = length
                out.append(StreamError(stream_id, FRAME_TOO_LARGE, "data frame too large"))
                continue
            if len(self._buf) < HEADER_SIZE + length:
                return out
            body = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + length])
            del self._buf[: HEADER_SIZE + length]
            if first & 0x80000000:
                version, frame_type = (first >> 16) & 0x7FFF, first & 0xFFFF
                if version != VERSION:
                    raise SessionError(f"unsupported SPDY version {version}")
                item = self._control(frame_type, flags, body)
                if item is not None:
                    out.append(item)
            else:
                out.append(DataFrame(first & STREAM_ID_MASK, body, flags))

    def _headers(self, stream_id: int, compressed: bytes) -> Headers | StreamError:
        raw = self._inflate.decompress(compressed)  # SessionError when the shared context is spoiled
        try:
            return decode_header_block(raw)
        except HeaderBlockError as exc:
            return StreamError(stream_id, PROTOCOL_ERROR, str(exc))

    def _control(self, frame_type: int, flags: int, body: bytes) -> Frame | StreamError | None:
        def need(n: int) -> None:
            if len(body) < n:
                raise SessionError(f"control frame type {frame_type} too short")

        if frame_type == SYN_STREAM:
            need(10)
            stream_id, assoc = struct.unpack_from(">II", body, 0)
            stream_id &= STREAM_ID_MASK
            if stream_id == 0:
                raise SessionError("SYN_STREAM with stream id 0")
            headers = self._headers(stream_id, body[10:])
            if isinstance(headers, StreamError):
                return headers
            return SynStream(stream_id, headers, assoc & STREAM_ID_MASK, body[8] >> 5, flags)
        if frame_type in (SYN_REPLY, HEADERS):
            need(4)
            (stream_id,) = struct.unpack_from(">I", body, 0)
            stream_id &= STREAM_ID_MASK
            headers = self._headers(stream_id, body[4:])
            if isinstance(headers, StreamError):
                return headers
            cls = SynReply if frame_type == SYN_REPLY else HeadersFrame
            return cls(stream_id, headers, flags)
        if frame_type == RST_STREAM:
            need(8)
            stream_id, status = struct.unpack_from(">II", body, 0)
            return RstStream(stream_id & STREAM_ID_MASK, status)
        if frame_type == SETTINGS:
            need(4)
            (count,) = struct.unpack_from(">I", body, 0)
            if len(body) != 4 + 8 * count:
                raise SessionError("SETTINGS length does not match its count")
            entries = []
            for i in range(count):
                fid, value = struct.unpack_from(">II", body, 4 + 8 * i)
                entries.append((fid >> 24, fid & 0xFFFFFF, value))
            return Settings(entries, flags)
        if frame_type == PING:
            need(4)
            return Ping(struct.unpack_from(">I", body, 0)[0])
        if frame_type == GOAWAY:
            need(4)
            last = struct.unpack_from(">I", body, 0)[0] & STREAM_ID_MASK
            status = struct.unpack_from(">I", body, 4)[0] if len(body) >= 8 else GOAWAY_OK
            return GoAway(last, status)
        if frame_type == WINDOW_UPDATE:
            need(8)
            stream_id, delta = struct.unpack_from(">II", body, 0)
            return WindowUpdate(stream_id & STREAM_ID_MASK, delta & STREAM_ID_MASK)
        # Unknown control frames (NOOP, CREDENTIAL, future types) are ignored, as the spec asks.
        return None
