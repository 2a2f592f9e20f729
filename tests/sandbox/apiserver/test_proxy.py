"""The sandbox API server's kubelet proxy, end to end: real kubectl, official clients, raw upgrades, failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.kubectl import Kubectl
from tests.waiting import eventually
from vk_sandbox.apiserver.proxy import (
    DEFAULT_KUBELET_PORT,
    KubeletDialError,
    kubelet_location,
    proxy_to_kubelet,
)
from vk_sandbox.apiserver.server import SandboxAPIServer

NODE = "n1"
TOKEN = "proxy-test-admin-token"


@dataclass
class StubKubelet:
    """A minimal kubelet: stats, logs that stream on cue, and exec over WebSocket. Records what it saw."""

    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    release_logs: asyncio.Event = field(default_factory=asyncio.Event)
    log_transports: list[Any] = field(default_factory=list)

    def record(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        self.seen.append(
            {"path_qs": request.path_qs, "headers": dict(request.headers), "client_cn": subject.get("commonName")}
        )

    async def stats(self, request: web.Request) -> web.Response:
        self.record(request)
        return web.json_response({"node": {"nodeName": NODE}, "pods": []})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        self.record(request)
        self.log_transports.append(request.transport)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(b"line 1\n")
        await asyncio.wait_for(self.release_logs.wait(), timeout=30)
        await resp.write(b"line 2\n")
        await resp.write_eof()
        return resp

    async def exec(self, request: web.Request) -> web.StreamResponse:
        self.record(request)
        if request.headers.get("Upgrade", "").lower() == "spdy/3.1":
            return await self.exec_spdy(request)
        ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
        await ws.prepare(request)
        await ws.send_bytes(b"\x01hello from exec\n")
        await ws.send_bytes(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
        if ws.ws_protocol == "v5.channel.k8s.io":
            await ws.send_bytes(b"\xff\x01")
        await ws.close()
        return ws

    async def exec_spdy(self, request: web.Request) -> web.StreamResponse:
        """SPDY/3.1 exec with the product's frame codec as a test double: stdout "hello over spdy", exit 0."""
        from vk_provider.kubelet.spdy_session import attach_session

        resp = web.StreamResponse(status=101)
        resp.headers.update(
            {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"}
        )
        resp.force_close()
        await resp.prepare(request)
        session = attach_session(request)
        streams: dict[str, Any] = {}
        try:
            while not {"error", "stdout", "stderr"} <= streams.keys():
                stream = await session.accept(timeout=10)
                assert stream is not None, f"kubectl opened only {sorted(streams)}"
                stream.reply()
                streams[stream.headers.get("streamtype", "")] = stream
            await streams["stdout"].write(b"hello over spdy\n", fin=True)
            await streams["stderr"].close()
            await streams["error"].write(json.dumps({"metadata": {}, "status": "Success"}).encode(), fin=True)
        finally:
            await session.close()
        return resp


def server_tls(server: SandboxAPIServer, tmp_path: Path, *, self_signed: bool = False) -> ssl.SSLContext:
    """A kubelet serving context: a CA-issued cert for 127.0.0.1 (or a self-signed one); client certs optional."""
    if self_signed:
        from vk_sandbox.apiserver.certs import CertificateAuthority

        other = CertificateAuthority("someone-else")
        cert, key = other.issue("kubelet", [], ip_addresses=["127.0.0.1"], client=False, server=True)
    else:
        cert, key = server.ca.issue(
            f"system:node:{NODE}", ["system:nodes"], ip_addresses=["127.0.0.1"], client=False, server=True
        )
    (tmp_path / "kubelet.crt").write_bytes(cert)
    (tmp_path / "kubelet.key").write_bytes(key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "kubelet.crt", tmp_path / "kubelet.key")
    ctx.load_verify_locations(cadata=server.ca.cert_pem.decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def register_node(server: SandboxAPIServer, port: int, addresses: list[dict[str, str]] | None = None) -> None:
    server.store.create_now(
        "nodes",
        {
            "metadata": {"name": NODE},
            "status": {
                "addresses": addresses or [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
    )
    server.store.create_now(
        "pods",
        {
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox:1"}]},
        },
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api", controllers=False) as srv:
        srv.add_static_token(TOKEN, "proxy-admin", ["system:masters"])
        yield srv


@pytest.fixture
async def kubelet(server: SandboxAPIServer, tmp_path: Path) -> AsyncIterator[StubKubelet]:
    tk = StubKubelet()
    app = web.Application()
    app.router.add_get("/stats/summary", tk.stats)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", tk.logs)
    app.router.add_get("/exec/{ns}/{pod}/{container}", tk.exec)
    app.router.add_post("/exec/{ns}/{pod}/{container}", tk.exec)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls(server, tmp_path))
    await site.start()
    tk.port = runner.addresses[0][1]
    register_node(server, tk.port)
    try:
        yield tk
    finally:
        tk.release_logs.set()
        await runner.cleanup()


async def run_kubectl(server: SandboxAPIServer, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await Kubectl(env, server.kubeconfig_path).run(*args, timeout=60)


def client_tls(server: SandboxAPIServer) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=server.ca.cert_pem.decode())


# --- address selection -----------------------------------------------------------------------------------------


def test_kubelet_location_prefers_addresses_in_the_real_order() -> None:
    """Hostname, InternalDNS, InternalIP, ExternalDNS, ExternalIP; port from daemonEndpoints, else 10250."""
    addresses = [
        {"type": "ExternalIP", "address": "203.0.113.1"},
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "InternalDNS", "address": ""},
    ]
    node = {"status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": 10666}}}}
    assert kubelet_location(node) == ("10.0.0.5", 10666)
    node["status"]["addresses"].append({"type": "Hostname", "address": "vk-node"})  # type: ignore[index]
    assert kubelet_location(node)[0] == "vk-node"
    assert kubelet_location({"status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}}) == (
        "1.2.3.4",
        DEFAULT_KUBELET_PORT,
    )
    with pytest.raises(KubeletDialError, match="no preferred addresses"):
        kubelet_location({"status": {"addresses": [{"type": "Weird", "address": "x"}]}})


# --- plain requests -----------------------------------------------------------------------------------------


@pytest.mark.kubectl
async def test_kubectl_get_raw_node_proxy_stats(
    server: SandboxAPIServer, kubelet: StubKubelet, kubectl_env: dict[str, str]
) -> None:
    """`kubectl get --raw .../nodes/N/proxy/stats/summary` reaches the kubelet with the kubelet-client identity."""
    code, out, err = await run_kubectl(server, kubectl_env, "get", "--raw", f"/api/v1/nodes/{NODE}/proxy/stats/summary")
    assert code == 0, err
    assert json.loads(out) == {"node": {"nodeName": NODE}, "pods": []}
    (seen,) = kubelet.seen
    assert seen["path_qs"] == "/stats/summary"
    assert seen["client_cn"] == "kube-apiserver-kubelet-client"
    assert "Authorization" not in seen["headers"]


@pytest.mark.kubectl
async def test_kubectl_logs_follow_streams_chunk_by_chunk(
    server: SandboxAPIServer, kubelet: StubKubelet, kubectl_env: dict[str, str]
) -> None:
    """`kubectl logs -f` prints the first line while the kubelet still holds the second one back."""
    proc = await Kubectl(kubectl_env, server.kubeconfig_path).start(
        "logs", "-f", "p", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert first == b"line 1\n"
        assert not kubelet.release_logs.is_set()
        kubelet.release_logs.set()
        rest, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
        assert rest == b"line 2\n"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    path, _, query = kubelet.seen[0]["path_qs"].partition("?")
    assert path == "/containerLogs/default/p/c"
    assert "follow=true" in query.split("&")


@pytest.mark.kubectl
async def test_interrupted_logs_follow_releases_the_kubelet_connection(
    server: SandboxAPIServer, kubelet: StubKubelet, kubectl_env: dict[str, str]
) -> None:
    """Killing `kubectl logs -f` on a quiet stream closes the proxy's connection to the kubelet soon after."""
    proc = await Kubectl(kubectl_env, server.kubeconfig_path).start(
        "logs", "-f", "p", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), timeout=30) == b"line 1\n"
    (transport,) = kubelet.log_transports
    assert not transport.is_closing()
    proc.kill()
    await proc.wait()
    # The proxy checks for a vanished client every second.
    await eventually(transport.is_closing, timeout=5, what="the proxy to close its kubelet connection")


async def test_unreachable_kubelet_gives_502_error_dialing_backend(server: SandboxAPIServer) -> None:
    """A node whose kubelet port refuses connections: 502 Status 'error dialing backend: ...'."""
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    register_node(server, port)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{server.url}/api/v1/nodes/{NODE}/proxy/stats/summary",
            ssl=client_tls(server),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp,
    ):
        assert resp.status == 502
        body = await resp.json()
    assert body["kind"] == "Status" and body["code"] == 502
    assert body["message"].startswith("error dialing backend: ")
    assert TOKEN not in body["message"]


# --- upgrades ---------------------------------------------------------------------------------------------------


async def test_python_client_exec_over_websocket(server: SandboxAPIServer, kubelet: StubKubelet) -> None:
    """kubernetes_asyncio's WsApiClient (v4.channel.k8s.io) execs through the proxy and reads the kubelet's stdout."""
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.stream import WsApiClient

    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(server.kubeconfig_path), client_configuration=configuration)
    async with WsApiClient(configuration=configuration) as ws_api:
        api = client.CoreV1Api(api_client=ws_api)
        out = await asyncio.wait_for(
            api.connect_get_namespaced_pod_exec(
                "p", "default", command=["echo", "hello"], stderr=True, stdin=False, stdout=True, tty=False
            ),
            timeout=30,
        )
    assert out == "hello from exec\n"
    seen = kubelet.seen[-1]
    assert seen["path_qs"].startswith("/exec/default/p/c?")
    assert "command=echo" in seen["path_qs"] and "command=hello" in seen["path_qs"]
    assert seen["headers"]["Sec-WebSocket-Protocol"].startswith("v4.channel.k8s.io")


@pytest.mark.kubectl
async def test_kubectl_exec_over_websocket_v5(
    server: SandboxAPIServer, kubelet: StubKubelet, kubectl_env: dict[str, str]
) -> None:
    """The real kubectl's default WebSocket (v5.channel.k8s.io) exec is relayed to the kubelet unchanged."""
    code, out, err = await run_kubectl(server, kubectl_env, "exec", "p", "--", "echo", "hi")
    assert code == 0, err
    assert out == "hello from exec\n"
    assert "v5.channel.k8s.io" in kubelet.seen[-1]["headers"]["Sec-WebSocket-Protocol"]


@pytest.mark.kubectl
async def test_kubectl_exec_over_spdy(
    server: SandboxAPIServer, kubelet: StubKubelet, kubectl_env: dict[str, str]
) -> None:
    """With KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false the real kubectl's SPDY/3.1 exec reaches the kubelet intact."""
    env = {**kubectl_env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
    code, out, err = await run_kubectl(server, env, "exec", "p", "--", "echo", "hi")
    assert code == 0, err
    assert out == "hello over spdy\n"
    seen = kubelet.seen[-1]
    assert seen["headers"]["Upgrade"] == "SPDY/3.1"
    assert seen["path_qs"].startswith("/exec/default/p/c?")


@dataclass
class RawKubelet:
    """A TLS socket server speaking just enough HTTP to answer one upgrade, then echoing bytes upper-cased."""

    answer: bytes
    echo: bool = True
    port: int = 0
    heads: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(self.answer)
            await writer.drain()
            while self.echo and (data := await reader.read(65536)):
                writer.write(data.upper())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=5)
            self.closed.set()


async def start_raw_kubelet(server: SandboxAPIServer, tmp_path: Path, raw: RawKubelet) -> Callable[[], Awaitable[None]]:
    listener = await asyncio.start_server(raw.handle, "127.0.0.1", 0, ssl=server_tls(server, tmp_path))
    raw.port = listener.sockets[0].getsockname()[1]
    register_node(server, raw.port)

    async def stop() -> None:
        listener.close()
        await listener.wait_closed()

    return stop


async def open_upgrade(server: SandboxAPIServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Send kubectl's SPDY exec request by hand; return the socket and the response head."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=client_tls(server), server_hostname="127.0.0.1"
    )
    writer.write(
        b"POST /api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true&stdout=true HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{server.port}\r\n".encode()
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        + b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: channel.k8s.io\r\n"
        + b"Content-Length: 0\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    return reader, writer, head


async def close_client(writer: asyncio.StreamWriter) -> None:
    """Close a TLS client socket and wait (bounded) for the TLS shutdown, so no transport outlives the test."""
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), timeout=5)


async def test_spdy_upgrade_is_relayed_byte_for_byte(server: SandboxAPIServer, tmp_path: Path) -> None:
    """An SPDY/3.1 upgrade: the 101 and its headers come back, then raw bytes flow both ways unchanged."""
    raw = RawKubelet(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        b"\x80\x03\x00\x04early-bytes"  # bytes sent in the same packet as the 101 must not be lost
    )
    stop = await start_raw_kubelet(server, tmp_path, raw)
    try:
        reader, writer, head = await open_upgrade(server)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in head
        assert b"Upgrade: SPDY/3.1" in head
        early = await asyncio.wait_for(reader.readexactly(len(b"\x80\x03\x00\x04early-bytes")), timeout=10)
        assert early == b"\x80\x03\x00\x04early-bytes"
        payload = bytes(range(256)) + b"spdy frame \x00\xff"
        writer.write(payload)
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), timeout=10)
        assert echoed == payload.upper()
        await close_client(writer)
        await asyncio.wait_for(raw.closed.wait(), timeout=10)  # closing the client ends the kubelet side too
    finally:
        await stop()
    (kubelet_head,) = raw.heads
    assert kubelet_head.startswith(b"POST /exec/default/p/c?command=sh&stdin=true&stdout=true HTTP/1.1\r\n")
    assert b"Upgrade: SPDY/3.1" in kubelet_head
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in kubelet_head
    assert b"X-Stream-Protocol-Version: channel.k8s.io" in kubelet_head
    assert TOKEN.encode() not in kubelet_head


async def test_refused_upgrade_is_passed_on(server: SandboxAPIServer, tmp_path: Path) -> None:
    """A kubelet answering 403 with X-Accepted-Stream-Protocol-Versions: the client sees exactly that."""
    body = b'{"kind":"Status","code":403}'
    raw = RawKubelet(
        b"HTTP/1.1 403 Forbidden\r\nX-Accepted-Stream-Protocol-Versions: v5.channel.k8s.io\r\n"
        + f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n".encode()
        + body,
        echo=False,
    )
    stop = await start_raw_kubelet(server, tmp_path, raw)
    try:
        reader, writer, head = await open_upgrade(server)
        assert head.startswith(b"HTTP/1.1 403 ")
        assert b"X-Accepted-Stream-Protocol-Versions: v5.channel.k8s.io" in head
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        assert await reader.readexactly(length) == body
        await close_client(writer)
    finally:
        await stop()


# --- certificate verification -------------------------------------------------------------------------------


async def proxy_app(server: SandboxAPIServer, insecure: ssl.SSLContext | None) -> web.AppRunner:
    """A bare app that sends every request to the node's kubelet, to call proxy_to_kubelet directly."""

    async def handler(request: web.Request) -> web.StreamResponse:
        node = server.store.get("nodes", None, NODE)
        assert node is not None
        return await proxy_to_kubelet(
            request,
            node=node,
            path_qs=request.path_qs,
            ssl_context=server.kubelet_client_ssl,
            insecure_ssl_context=insecure,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_foreign_kubelet_certificate_is_refused_or_accepted_unverified(
    server: SandboxAPIServer, tmp_path: Path
) -> None:
    """A kubelet cert not chaining to the sandbox CA: 502 x509 error, unless an unverified context is given."""
    tk = StubKubelet()
    app = web.Application()
    app.router.add_get("/stats/summary", tk.stats)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls(server, tmp_path, self_signed=True)).start()
    register_node(server, runner.addresses[0][1])
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    insecure.load_cert_chain(server.directory / "kubelet-client.crt", server.directory / "kubelet-client.key")
    strict_runner = await proxy_app(server, None)
    lenient_runner = await proxy_app(server, insecure)
    try:
        async with aiohttp.ClientSession() as session:
            strict = f"http://127.0.0.1:{strict_runner.addresses[0][1]}/stats/summary"
            async with session.get(strict) as resp:
                assert resp.status == 502
                body = await resp.json()
            assert "error dialing backend" in body["message"] and "certificate" in body["message"]
            lenient = f"http://127.0.0.1:{lenient_runner.addresses[0][1]}/stats/summary"
            async with session.get(lenient) as resp:
                assert resp.status == 200
                assert await resp.json() == {"node": {"nodeName": NODE}, "pods": []}
        assert tk.seen[-1]["client_cn"] == "kube-apiserver-kubelet-client"
    finally:
        await strict_runner.cleanup()
        await lenient_runner.cleanup()
        await runner.cleanup()
