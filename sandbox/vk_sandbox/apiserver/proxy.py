"""The sandbox API server's proxy to kubelets: pods/log|exec|attach|portforward and nodes/NAME/proxy/PATH.

Behaviour copied from kube-apiserver:
- the kubelet is dialled at the first node address in the order Hostname, InternalDNS, InternalIP, ExternalDNS,
  ExternalIP (the default ``--kubelet-preferred-address-types``), on ``status.daemonEndpoints.kubeletEndpoint.Port``
  (10250 when unset);
- the sandbox authenticates with its own kubelet-client certificate; the caller's Authorization header is never
  forwarded;
- the kubelet's serving certificate is verified when it chains to the sandbox CA. A certificate from another
  issuer (e.g. a kubelet's self-signed one) is accepted without verification, as kube-apiserver does when it runs
  without ``--kubelet-certificate-authority``, but only when the caller passes ``insecure_ssl_context``;
- plain responses are streamed chunk by chunk as they arrive (``logs -f``);
- Upgrade requests (WebSocket, SPDY/3.1) are relayed byte for byte: the handshake goes through unchanged, and after
  a 101 the two sockets are joined until either side closes. Unlike a real 1.30+ server, the sandbox does not
  translate kubectl's v5 WebSocket into SPDY toward the kubelet.
- failures to reach the kubelet answer 502 with a Status saying ``error dialing backend: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from typing import Any, cast

import aiohttp
import structlog
from aiohttp import web

log = structlog.get_logger("vk_sandbox.apiserver.proxy")

ADDRESS_PREFERENCE = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")
DEFAULT_KUBELET_PORT = 10250
CONNECT_TIMEOUT = 10.0
# How long a kubelet may take to answer an upgrade (exec setup in a cloud backend can be slow).
HANDSHAKE_TIMEOUT = 120.0
MAX_HEAD_BYTES = 64 * 1024
# How often a quiet streamed response checks that its client is still there.
CLIENT_GONE_CHECK = 1.0
MAX_ERROR_BODY = 1024 * 1024
_READ_SIZE = 64 * 1024
# Inbound bytes buffered toward the kubelet before the client socket is paused.
_INBOUND_HIGH_WATER = 1024 * 1024

# Hop-by-hop headers (RFC 9110 section 7.6.1) never forwarded on plain requests, plus the caller's credentials.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NEVER_FORWARDED = frozenset({"host", "authorization", "content-length", "cookie"})
# OpenSSL verify codes meaning "does not chain to a CA we trust" (as opposed to expired, wrong host ...).
_UNKNOWN_ISSUER_CODES = frozenset({2, 18, 19, 20, 21})


class KubeletDialError(Exception):
    """The kubelet could not be reached (no address, connection refused, TLS failure, bad handshake)."""


def kubelet_location(node: dict[str, Any]) -> tuple[str, int]:
    """(host, port) of the node's kubelet, the address chosen in the real server's preference order."""
    status = node.get("status") or {}
    addresses = [a for a in status.get("addresses") or [] if a.get("address")]
    for kind in ADDRESS_PREFERENCE:
        for address in addresses:
            if address.get("type") == kind:
                return str(address["address"]), _kubelet_port(status)
    known = [f"{a.get('type')}={a.get('address')}" for a in addresses]
    raise KubeletDialError(f"no preferred addresses found; known addresses: {known}")


def _kubelet_port(status: dict[str, Any]) -> int:
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    return int(port) if port else DEFAULT_KUBELET_PORT


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _bad_gateway(message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"error dialing backend: {message}",
        "reason": "BadGateway",
        "code": 502,
    }
    return web.json_response(body, status=502)


def _verification_error(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The OpenSSL verification failure behind ``exc`` (aiohttp wraps it as ``certificate_error``)."""
    for _ in range(10):
        if exc is None:
            return None
        inner = getattr(exc, "certificate_error", None)
        if isinstance(inner, ssl.SSLCertVerificationError) and inner is not exc:
            exc = inner
            continue
        if isinstance(exc, ssl.SSLCertVerificationError) and hasattr(exc, "verify_code"):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _is_unknown_issuer(exc: BaseException) -> bool:
    err = _verification_error(exc)
    return err is not None and err.verify_code in _UNKNOWN_ISSUER_CODES


def _describe(exc: BaseException) -> str:
    err = _verification_error(exc)
    if err is not None:
        return f"tls: failed to verify certificate: {err.verify_message}"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    return str(exc) or type(exc).__name__


def is_upgrade_request(request: web.Request) -> bool:
    """True for a request asking to switch protocols (WebSocket, SPDY/3.1)."""
    tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return "upgrade" in tokens and bool(request.headers.get("Upgrade"))


async def proxy_to_kubelet(
    request: web.Request,
    *,
    node: dict[str, Any],
    path_qs: str,
    ssl_context: ssl.SSLContext,
    insecure_ssl_context: ssl.SSLContext | None = None,
) -> web.StreamResponse:
    """Relay ``request`` to the node's kubelet at ``path_qs`` and stream the answer back.

    ``ssl_context`` carries the sandbox's kubelet-client certificate and trusts the sandbox CA. The optional
    ``insecure_ssl_context`` carries the same client certificate without server verification; it is used only
    when the kubelet's certificate does not chain to the sandbox CA.
    """
    try:
        host, port = kubelet_location(node)
    except KubeletDialError as exc:
        return _bad_gateway(str(exc))
    if not path_qs.startswith("/"):
        path_qs = "/" + path_qs
    if is_upgrade_request(request):
        return await _proxy_upgrade(request, host, port, path_qs, ssl_context, insecure_ssl_context)
    return await _proxy_plain(request, host, port, path_qs, ssl_context, insecure_ssl_context)


def _forward_headers(request: web.Request, *, keep_upgrade: bool) -> list[tuple[str, str]]:
    out = []
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in _NEVER_FORWARDED or lower.startswith("impersonate-"):
            continue
        if lower in _HOP_BY_HOP and not (keep_upgrade and lower in ("connection", "upgrade")):
            continue
        out.append((name, value))
    return out


# --- plain requests ---------------------------------------------------------------------------------------------


async def _proxy_plain(
    request: web.Request,
    host: str,
    port: int,
    path_qs: str,
    ssl_context: ssl.SSLContext,
    insecure: ssl.SSLContext | None,
) -> web.StreamResponse:
    body = await request.read() if request.body_exists else None
    url = f"https://{_host_for_url(host)}:{port}{path_qs}"
    headers = _forward_headers(request, keep_upgrade=False)
    contexts = [ssl_context] + ([insecure] if insecure is not None else [])
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
    last: BaseException | None = None
    for ctx in contexts:
        connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            try:
                upstream = await session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = exc
                if _is_unknown_issuer(exc):
                    continue  # try the unverified context, as kube-apiserver without a kubelet CA
                return _bad_gateway(f"{request.method} {url}: {_describe(exc)}")
            async with upstream:
                return await _stream_back(request, upstream)
    assert last is not None
    return _bad_gateway(f"{request.method} {url}: {_describe(last)}")


async def _stream_back(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for name, value in upstream.headers.items():
        lower = name.lower()
        if lower in _HOP_BY_HOP or lower in ("content-length", "date", "server"):
            continue
        response.headers.add(name, value)
    await response.prepare(request)
    try:
        # readany returns whatever arrived, so a follow stream reaches the client line by line. A quiet stream is
        # checked every second for a client that went away, so the kubelet connection is not held for nothing.
        while True:
            try:
                chunk = await asyncio.wait_for(upstream.content.readany(), timeout=CLIENT_GONE_CHECK)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    response.force_close()
                    return response
                continue
            if not chunk:
                break
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        # The client went away (logs -f interrupted) or the kubelet cut the stream: nothing more to say.
        log.debug("kubelet stream ended early", error=repr(exc))
        response.force_close()
    return response


# --- upgrade requests -------------------------------------------------------------------------------------------


class _InboundBytes:
    """Receives the client's bytes after the handshake (set as the aiohttp protocol's payload parser)."""

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self._transport = transport
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._paused = False
        self._wakeup = asyncio.Event()

    # The two methods aiohttp's RequestHandler calls on a payload parser.
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)
            self._wakeup.set()
            if self._size > _INBOUND_HIGH_WATER and self._transport is not None and not self._paused:
                self._transport.pause_reading()
                self._paused = True
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._wakeup.set()

    async def read(self) -> bytes:
        """The next bytes from the client; b"" at EOF."""
        while not self._chunks:
            if self._eof:
                return b""
            self._wakeup.clear()
            await self._wakeup.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False
        return data


class _SwitchingResponse(web.StreamResponse):
    """A 101 whose body is the raw upgraded stream: no length, no chunking."""

    _length_check = False


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise KubeletDialError(f"malformed response from kubelet: {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _open(
    host: str, port: int, ssl_context: ssl.SSLContext, insecure: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    contexts = [ssl_context] + ([insecure] if insecure is not None else [])
    for i, ctx in enumerate(contexts):
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                return await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=host if ctx.check_hostname else None
                )
        except (OSError, TimeoutError) as exc:
            if i + 1 < len(contexts) and _is_unknown_issuer(exc):
                continue
            raise KubeletDialError(f"dial tcp {host}:{port}: {_describe(exc)}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    fields = {k.lower(): v for k, v in headers}
    if "content-length" in fields:
        return await reader.readexactly(min(int(fields["content-length"]), MAX_ERROR_BODY))
    if "chunked" in fields.get("transfer-encoding", "").lower():
        out = bytearray()
        while len(out) < MAX_ERROR_BODY:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            out += await reader.readexactly(size)
            await reader.readexactly(2)
        return bytes(out)
    return await reader.read(MAX_ERROR_BODY)


async def _proxy_upgrade(
    request: web.Request,
    host: str,
    port: int,
    path_qs: str,
    ssl_context: ssl.SSLContext,
    insecure: ssl.SSLContext | None,
) -> web.StreamResponse:
    body = await request.read() if request.body_exists else b""
    try:
        reader, writer = await _open(host, port, ssl_context, insecure)
    except KubeletDialError as exc:
        return _bad_gateway(str(exc))
    try:
        lines = [f"{request.method} {path_qs} HTTP/1.1", f"Host: {_host_for_url(host)}:{port}"]
        lines += [f"{k}: {v}" for k, v in _forward_headers(request, keep_upgrade=True)]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, reason, headers = _parse_head(head[:-4])
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, OSError, TimeoutError) as exc:
            return _bad_gateway(f"reading the kubelet's answer to {request.method} {path_qs}: {_describe(exc)}")
        except KubeletDialError as exc:
            return _bad_gateway(str(exc))
        if status != 101:
            return await _relay_refusal(reader, status, reason, headers)
        return await _relay_upgraded(request, reader, writer, reason, headers)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _relay_refusal(
    reader: asyncio.StreamReader, status: int, reason: str, headers: list[tuple[str, str]]
) -> web.StreamResponse:
    """The kubelet declined the upgrade (403 with accepted versions, 400, 404 ...): pass its answer on."""
    try:
        body = await _read_body(reader, headers)
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        body = b""
    response = web.Response(status=status, reason=reason or None, body=body)
    for name, value in headers:
        if name.lower() in _HOP_BY_HOP or name.lower() in ("content-length", "date", "server"):
            continue
        response.headers.add(name, value)
    return response


async def _relay_upgraded(
    request: web.Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    reason: str,
    headers: list[tuple[str, str]],
) -> web.StreamResponse:
    response = _SwitchingResponse(status=101, reason=reason or "Switching Protocols")
    for name, value in headers:
        if name.lower() in ("date", "server", "content-length", "transfer-encoding"):
            continue
        response.headers.add(name, value)
    inbound = _InboundBytes(request.transport)
    # From now on every byte the client sends is ours, not the HTTP parser's (aiohttp itself recognises only
    # websocket upgrades, so for SPDY this is what stops it from parsing frames as a new request).
    cast(Any, request.protocol).set_parser(inbound)
    await response.prepare(request)

    async def kubelet_to_client() -> None:
        while data := await reader.read(_READ_SIZE):
            await response.write(data)

    async def client_to_kubelet() -> None:
        while data := await inbound.read():
            writer.write(data)
            await writer.drain()

    tasks = [
        asyncio.create_task(kubelet_to_client(), name="proxy-kubelet-to-client"),
        asyncio.create_task(client_to_kubelet(), name="proxy-client-to-kubelet"),
    ]
    # As kube-apiserver: when either half ends, the session ends and both sockets close.
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("upgraded stream ended", error=repr(task.exception()))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        response.force_close()
        if request.transport is not None:
            request.transport.close()
    return response
