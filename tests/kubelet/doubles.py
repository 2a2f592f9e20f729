"""Test doubles for the other sides of the kubelet API: the backend (PodStreams, PodLookup) and the
API server's TokenReview / SubjectAccessReview endpoints; plus a minimal SPDY client."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from vk_provider.errors import NotFound, NotSupported
from vk_provider.kubelet import spdy
from vk_provider.provider import ContainerUsage, LogOptions, Pod, PodUsage


def make_pod(ns: str, name: str, containers: list[str], phase: str = "Running") -> Pod:
    return {
        "metadata": {"namespace": ns, "name": name, "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]},
        "status": {"phase": phase},
    }


class FakePods:
    def __init__(self, pods: list[Pod]) -> None:
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}

    def cached_pod(self, namespace: str, name: str) -> Pod | None:
        return self.pods.get((namespace, name))

    def cached_pods(self) -> list[Pod]:
        return list(self.pods.values())


class ProcessExecSession:
    """A real local subprocess behind the ExecSession contract (pipes, not a pty)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.resizes: list[tuple[int, int]] = []
        self.order: list[str] = []  # "stdin" and "resize", in the order they reached the session
        self.closed = False
        self.stdin_closed = asyncio.Event()

    @classmethod
    async def start(cls, command: list[str]) -> ProcessExecSession:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # so close() can kill grandchildren that hold the pipes
        )
        return cls(proc)

    async def write_stdin(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        if self.proc.stdin.is_closing():
            raise BrokenPipeError("the process closed its stdin")  # as a backend would report it
        self.order.append("stdin")
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.stdin_closed.set()

    async def resize(self, width: int, height: int) -> None:
        self.order.append("resize")
        self.resizes.append((width, height))

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

        async def pump(n: int, reader: asyncio.StreamReader) -> None:
            while data := await reader.read(65536):
                await queue.put((n, data))
            await queue.put(None)

        assert self.proc.stdout is not None and self.proc.stderr is not None
        tasks = [asyncio.create_task(pump(1, self.proc.stdout)), asyncio.create_task(pump(2, self.proc.stderr))]
        try:
            ended = 0
            while ended < 2:
                item = await queue.get()
                if item is None:
                    ended += 1
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def exit_code(self) -> int:
        return await self.proc.wait()

    async def close(self) -> None:
        self.closed = True
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


@dataclass
class FakeStreams:
    """PodStreams double: logs from a queue, exec as a local process, port-forward to a local port."""

    log_lines: list[bytes] = field(default_factory=list)
    follow_queue: asyncio.Queue[bytes | None] | None = None
    forward_to: int = 0
    usage: list[PodUsage] = field(default_factory=list)
    sessions: list[ProcessExecSession] = field(default_factory=list)
    log_opts: list[LogOptions] = field(default_factory=list)
    log_closed: asyncio.Event = field(default_factory=asyncio.Event)
    logs_error: Exception | None = None
    logs_error_after_yields: int = 0
    attach_command: list[str] | None = None  # when set, attach "attaches" to a process running this

    async def container_logs(self, pod: Pod, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        self.log_opts.append(opts)
        if self.logs_error is not None:
            for _ in range(self.logs_error_after_yields):
                await asyncio.sleep(0)  # let the server run first, as a slow backend call would
            raise self.logs_error
        try:
            for line in self.log_lines:
                yield line
            if opts.follow and self.follow_queue is not None:
                while (item := await self.follow_queue.get()) is not None:
                    yield item
        finally:
            self.log_closed.set()

    async def exec(self, pod: Pod, container: str, command: list[str], *, stdin: bool, tty: bool) -> ProcessExecSession:
        if command and command[0] == "unsupported":
            raise NotSupported("exec of 'unsupported' is not supported by this backend")
        session = await ProcessExecSession.start(command)
        self.sessions.append(session)
        return session

    async def attach(self, pod: Pod, container: str, *, stdin: bool, tty: bool) -> ProcessExecSession:
        if self.attach_command is None:
            raise NotSupported("attach is not supported: ECI has no attach API")
        session = await ProcessExecSession.start(self.attach_command)
        self.sessions.append(session)
        return session

    async def port_forward(self, pod: Pod, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port == 1:
            raise NotFound("nothing listens on port 1")
        return await asyncio.open_connection("127.0.0.1", self.forward_to)

    async def pod_usage(self) -> list[PodUsage]:
        return self.usage


def usage_fixture() -> list[PodUsage]:
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    return [
        PodUsage(
            "default",
            "web",
            "uid-web",
            t,
            t,
            [
                ContainerUsage("app", t, t, 5_000_000, 2_000_000_000, 10_000_000, 12_000_000, 9_000_000),
                ContainerUsage("idle", t, t, 0, 0, 0),
            ],
        )
    ]


class FakeAuthAPI:
    """The API server's TokenReview and SubjectAccessReview, driven by two tables."""

    def __init__(self, tokens: dict[str, tuple[str, list[str]]], allowed: set[tuple[str, str, str]]) -> None:
        self.tokens = tokens
        self.allowed = allowed  # (user, verb, subresource)
        self.sars: list[dict[str, Any]] = []
        self.token_reviews = 0
        self.app = web.Application()
        self.app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        self.app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self._sar)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    async def __aenter__(self) -> FakeAuthAPI:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def _token_review(self, request: web.Request) -> web.Response:
        self.token_reviews += 1
        body = await request.json()
        token = body["spec"]["token"]
        user = self.tokens.get(token)
        status: dict[str, Any] = {"authenticated": False}
        if user is not None:
            status = {"authenticated": True, "user": {"username": user[0], "uid": "u1", "groups": user[1]}}
        return web.json_response({**body, "status": status}, status=201)

    async def _sar(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.sars.append(body["spec"])
        attrs = body["spec"]["resourceAttributes"]
        ok = (body["spec"]["user"], attrs["verb"], attrs["subresource"]) in self.allowed
        return web.json_response({**body, "status": {"allowed": ok}}, status=201)


def insecure_client_ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SpdyClient:
    """A minimal SPDY/3.1 client for tests: upgrade, open streams, collect frames per stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, headers: str) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.response_headers = headers
        self.deflate = spdy.HeaderCompressor()
        self.parser = spdy.FrameParser(max_frame_size=1 << 24)
        self.next_id = 1
        self.data: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.replied: set[int] = set()
        self.resets: list[spdy.RstStream] = []
        self.goaway: spdy.GoAway | None = None
        self.pings: list[int] = []
        self.eof = False

    @classmethod
    async def connect(
        cls, port: int, path: str, *, protocols: list[str], token: str, method: str = "POST"
    ) -> SpdyClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=insecure_client_ssl())
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Connection: Upgrade",
            "Upgrade: SPDY/3.1",
            f"Authorization: Bearer {token}",
            *[f"X-Stream-Protocol-Version: {p}" for p in protocols],
            "Content-Length: 0",
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        text = head.decode()
        status = int(text.split(" ", 2)[1])
        return cls(reader, writer, status, text)

    def open(self, headers: dict[str, str], *, fin: bool = False) -> int:
        sid = self.next_id
        self.next_id += 2
        self.writer.write(spdy.encode_syn_stream(self.deflate, sid, headers, fin=fin))
        return sid

    def send(self, sid: int, data: bytes, *, fin: bool = False) -> None:
        self.writer.write(spdy.encode_data(sid, data, fin=fin))

    def raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def pump(self, until: Any, timeout: float = 10.0) -> None:
        """Read frames until ``until(self)`` is true or the connection ends."""

        async def run() -> None:
            while not until(self):
                chunk = await self.reader.read(65536)
                if not chunk:
                    self.eof = True
                    return
                for item in self.parser.feed(chunk):
                    if isinstance(item, spdy.DataFrame):
                        self.data.setdefault(item.stream_id, bytearray()).extend(item.data)
                        if item.fin:
                            self.fin.add(item.stream_id)
                    elif isinstance(item, spdy.SynReply):
                        self.replied.add(item.stream_id)
                    elif isinstance(item, spdy.RstStream):
                        self.resets.append(item)
                    elif isinstance(item, spdy.GoAway):
                        self.goaway = item
                    elif isinstance(item, spdy.Ping):
                        self.pings.append(item.ping_id)

        await asyncio.wait_for(run(), timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def json_of(data: bytes | bytearray) -> Any:
    return json.loads(bytes(data).decode())


class TestCA:
    """A small CA for client certificates and for signing CSRs in tests."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "test-ca") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, public_key: Any, subject: Any, *, sans: list[Any], client: bool, life: dt.timedelta) -> bytes:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID

        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=30))
            .not_valid_after(now + life)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def issue_client(self, cn: str, orgs: list[str]) -> tuple[bytes, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
            + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        )
        cert = self.sign(key.public_key(), subject, sans=[], client=True, life=dt.timedelta(hours=1))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert, key_pem


class FakeCSRAPI:
    """certificates.k8s.io/v1 CSR create/read, signing with a TestCA once ``approve`` allows it."""

    def __init__(self, ca: TestCA, app: web.Application) -> None:
        self.ca = ca
        self.csrs: dict[str, dict[str, Any]] = {}
        self.auto_approve = False
        self.deny = False
        self.lives: list[dt.timedelta] = []  # life of each issued cert, in order; default 1 day
        self.issued = 0
        self.reads = 0
        base = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
        app.router.add_post(base, self._create)
        app.router.add_get(base + "/{name}", self._read)

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = body["metadata"].get("name") or body["metadata"]["generateName"] + str(len(self.csrs))
        body["metadata"]["name"] = name
        body["status"] = {}
        self.csrs[name] = body
        return web.json_response(body, status=201)

    def approve(self, name: str) -> None:
        import base64 as b64

        from cryptography import x509

        body = self.csrs[name]
        csr = x509.load_pem_x509_csr(b64.b64decode(body["spec"]["request"]))
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        life = self.lives[self.issued] if self.issued < len(self.lives) else dt.timedelta(days=1)
        self.issued += 1
        cert = self.ca.sign(csr.public_key(), csr.subject, sans=sans, client=False, life=life)
        body["status"] = {
            "conditions": [{"type": "Approved", "status": "True", "reason": "Test"}],
            "certificate": b64.b64encode(cert).decode(),
        }

    async def _read(self, request: web.Request) -> web.Response:
        self.reads += 1
        name = request.match_info["name"]
        body = self.csrs.get(name)
        if body is None:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if self.deny and not body["status"]:
            body["status"] = {"conditions": [{"type": "Denied", "status": "True", "reason": "NoWay"}]}
        elif self.auto_approve and not body["status"]:
            self.approve(name)
        return web.json_response(body)
