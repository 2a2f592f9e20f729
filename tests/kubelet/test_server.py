"""The kubelet API over real TLS sockets: auth table, routes, logs, stats, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import aiohttp
import pytest

from tests.kubelet.conftest import Kubelet, start_kubelet
from tests.kubelet.doubles import FakeAuthAPI, SpdyClient, insecure_client_ssl
from tests.waiting import eventually
from vk_provider.errors import NotSupported

ADMIN = {"Authorization": "Bearer admin-token"}
NOBODY = {"Authorization": "Bearer nobody-token"}

# (method, path, expected code for an authorized caller without an upgrade)
ROUTES = [
    ("GET", "/healthz", 200),
    ("GET", "/pods", 200),
    ("GET", "/runningpods/", 200),
    ("GET", "/containerLogs/default/web/app", 200),
    ("GET", "/exec/default/web/app?command=true&stdout=1", 400),
    ("POST", "/exec/default/web/app?command=true&stdout=1", 400),
    ("GET", "/attach/default/web/app?stdout=1", 400),
    ("POST", "/attach/default/web/app?stdout=1", 400),
    ("GET", "/portForward/default/web", 400),
    ("POST", "/portForward/default/web", 400),
    ("GET", "/stats/summary", 200),
    ("GET", "/metrics/resource", 200),
]


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl()))


@pytest.mark.parametrize(("method", "path", "code"), ROUTES)
async def test_auth_table(kubelet: Kubelet, method: str, path: str, code: int) -> None:
    """Every route: no credentials -> 401, a token without permission -> 403 Status, an allowed token works."""
    async with session() as s:
        async with s.request(method, kubelet.url + path) as r:
            assert r.status == 401
            assert (await r.json())["reason"] == "Unauthorized"
        async with s.request(method, kubelet.url + path, headers=NOBODY) as r:
            assert r.status == 403
            body = await r.json()
            assert body["kind"] == "Status" and body["reason"] == "Forbidden" and "user=nobody" in body["message"]
        async with s.request(method, kubelet.url + path, headers=ADMIN) as r:
            assert r.status == code, await r.text()


async def test_subject_access_review_attributes(kubelet: Kubelet) -> None:
    """SARs carry resource nodes, the node name, the subresource from the path and the verb from the method."""
    async with session() as s:
        for method, path in (
            ("GET", "/stats/summary"),
            ("GET", "/metrics/resource"),
            ("POST", "/exec/default/web/app"),
        ):
            async with s.request(method, kubelet.url + path, headers=ADMIN):
                pass
    attrs = [(a["resourceAttributes"]["verb"], a["resourceAttributes"]["subresource"]) for a in kubelet.auth.sars]
    assert attrs == [("get", "stats"), ("get", "metrics"), ("create", "proxy")]
    for sar in kubelet.auth.sars:
        ra = sar["resourceAttributes"]
        assert (ra["resource"], ra["name"], ra["version"]) == ("nodes", "vk-node", "v1")
        assert sar["user"] == "admin" and "system:masters" in sar["groups"]


async def test_token_reviews_and_decisions_are_cached(kubelet: Kubelet) -> None:
    """Repeated requests with the same token cost one TokenReview and one SAR per (verb, subresource)."""
    async with session() as s:
        for _ in range(5):
            async with s.get(kubelet.url + "/pods", headers=ADMIN) as r:
                assert r.status == 200
            async with s.get(kubelet.url + "/pods", headers=NOBODY) as r:
                assert r.status == 403
    assert kubelet.auth.token_reviews == 2
    assert len(kubelet.auth.sars) == 2


async def test_unknown_path_is_404_and_unknown_pod_or_container_404_status(kubelet: Kubelet) -> None:
    """Unknown paths 404; an unknown pod or container is a 404 Status naming it."""
    async with session() as s:
        async with s.get(kubelet.url + "/nope", headers=ADMIN) as r:
            assert r.status == 404
        async with s.get(kubelet.url + "/containerLogs/default/ghost/app", headers=ADMIN) as r:
            assert r.status == 404
            assert "ghost" in (await r.json())["message"]
        async with s.get(kubelet.url + "/containerLogs/default/web/ghost", headers=ADMIN) as r:
            assert r.status == 404
            assert (await r.json())["reason"] == "NotFound"


async def test_pods_and_running_pods(kubelet: Kubelet) -> None:
    """/pods lists every pod on the node; /runningpods/ only running ones."""
    async with session() as s:
        async with s.get(kubelet.url + "/pods", headers=ADMIN) as r:
            body = await r.json()
            assert body["kind"] == "PodList"
            assert {p["metadata"]["name"] for p in body["items"]} == {"web", "pending"}
        async with s.get(kubelet.url + "/runningpods/", headers=ADMIN) as r:
            assert [p["metadata"]["name"] for p in (await r.json())["items"]] == ["web"]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("tailLines=-1", "tailLines"),
        ("tailLines=x", "tailLines"),
        ("limitBytes=0", "limitBytes"),
        ("sinceSeconds=0", "sinceSeconds"),
        ("sinceTime=yesterday", "sinceTime"),
        ("sinceTime=2024-01-01T00:00:00Z&sinceSeconds=5", "at most one"),
        ("follow=maybe", "follow"),
        ("previous=2", "previous"),
        ("timestamps=yes", "timestamps"),
    ],
)
async def test_log_parameters_are_validated(kubelet: Kubelet, query: str, reason: str) -> None:
    """Each invalid containerLogs parameter is a 400 whose message names the problem."""
    async with session() as s, s.get(f"{kubelet.url}/containerLogs/default/web/app?{query}", headers=ADMIN) as r:
        assert r.status == 400
        assert reason in (await r.json())["message"]


async def test_log_options_reach_the_backend(kubelet: Kubelet) -> None:
    """Valid parameters are parsed into LogOptions; limitBytes is also enforced on the stream."""
    kubelet.streams.log_lines = [b"one\n", b"two\n", b"three\n"]
    q = "tailLines=2&limitBytes=6&sinceTime=2024-01-01T00:00:00.5%2B02:00&timestamps=true&previous=1"
    async with session() as s, s.get(f"{kubelet.url}/containerLogs/default/web/app?{q}", headers=ADMIN) as r:
        assert r.status == 200
        assert await r.read() == b"one\ntw"
    opts = kubelet.streams.log_opts[-1]
    assert (opts.tail_lines, opts.limit_bytes, opts.timestamps, opts.previous, opts.follow) == (2, 6, True, True, False)
    assert opts.since_time is not None and opts.since_time.isoformat() == "2023-12-31T22:00:00.500000+00:00"


async def test_log_follow_streams_chunks_as_they_arrive_and_stops_when_client_leaves(kubelet: Kubelet) -> None:
    """With follow, each chunk reaches the client before the next exists; leaving closes the backend iterator."""
    kubelet.streams.log_lines = [b"first\n"]
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    kubelet.streams.follow_queue = queue
    async with session() as s:
        r = await s.get(f"{kubelet.url}/containerLogs/default/web/app?follow=true", headers=ADMIN)
        assert r.status == 200
        assert await asyncio.wait_for(r.content.readline(), 5) == b"first\n"
        await queue.put(b"second\n")
        assert await asyncio.wait_for(r.content.readline(), 5) == b"second\n"
        r.close()
    await asyncio.wait_for(kubelet.streams.log_closed.wait(), 5)


async def test_log_follow_ends_when_the_backend_iterator_ends(kubelet: Kubelet) -> None:
    """When the container terminates (iterator ends) the response completes."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    kubelet.streams.follow_queue = queue
    await queue.put(b"last\n")
    await queue.put(None)
    async with session() as s, s.get(f"{kubelet.url}/containerLogs/default/web/app?follow=1", headers=ADMIN) as r:
        assert await asyncio.wait_for(r.read(), 5) == b"last\n"


async def test_backend_not_supported_is_501_with_message(kubelet: Kubelet) -> None:
    """A NotSupported from the backend becomes 501 with the backend's explanation."""
    kubelet.streams.logs_error = NotSupported("previous logs are not kept by this backend")
    url = f"{kubelet.url}/containerLogs/default/web/app?previous=true"
    async with session() as s, s.get(url, headers=ADMIN) as r:
        assert r.status == 501
        assert "previous logs are not kept" in (await r.json())["message"]


async def test_slow_log_client_does_not_block_others(kubelet: Kubelet) -> None:
    """A follow stream nobody reads from does not stop other requests being served."""
    kubelet.streams.log_lines = [b"x" * 65536] * 64
    kubelet.streams.follow_queue = asyncio.Queue()
    async with session() as s:
        stuck = await s.get(f"{kubelet.url}/containerLogs/default/web/app?follow=true", headers=ADMIN)
        for _ in range(3):
            async with s.get(kubelet.url + "/healthz", headers=ADMIN) as r:
                assert await asyncio.wait_for(r.text(), 5) == "ok"
        stuck.close()


async def test_stats_summary_shape(kubelet: Kubelet) -> None:
    """/stats/summary has the v1alpha1 shape: node totals plus per-pod and per-container cpu/memory."""
    async with session() as s, s.get(kubelet.url + "/stats/summary", headers=ADMIN) as r:
        body = await r.json()
    assert body["node"]["nodeName"] == "vk-node"
    assert body["node"]["cpu"]["usageNanoCores"] == 5_000_000
    pod = body["pods"][0]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": "uid-web"}
    app = pod["containers"][0]
    assert app["name"] == "app" and app["startTime"] == "2026-01-02T03:04:05Z"
    assert app["cpu"] == {
        "time": "2026-01-02T03:04:05Z",
        "usageNanoCores": 5_000_000,
        "usageCoreNanoSeconds": 2_000_000_000,
    }
    assert app["memory"]["workingSetBytes"] == 10_000_000 and app["memory"]["usageBytes"] == 12_000_000
    assert pod["memory"]["workingSetBytes"] == 10_000_000


async def test_metrics_resource_names_labels_and_timestamps(kubelet: Kubelet) -> None:
    """/metrics/resource: metrics-server's names, labels container,pod,namespace in order, ms timestamps."""
    async with session() as s, s.get(kubelet.url + "/metrics/resource", headers=ADMIN) as r:
        text = await r.text()
    ms = "1767323045000"
    assert f'container_cpu_usage_seconds_total{{container="app",pod="web",namespace="default"}} 2.0 {ms}' in text
    assert f'container_memory_working_set_bytes{{container="app",pod="web",namespace="default"}} 10000000 {ms}' in text
    assert f'container_start_time_seconds{{container="app",pod="web",namespace="default"}} 1767323045.0 {ms}' in text
    # A measured zero is written as the smallest non-zero value so metrics-server keeps the pod.
    assert f'container_cpu_usage_seconds_total{{container="idle",pod="web",namespace="default"}} 1e-09 {ms}' in text
    assert f'container_memory_working_set_bytes{{container="idle",pod="web",namespace="default"}} 1 {ms}' in text
    assert f'pod_memory_working_set_bytes{{pod="web",namespace="default"}} 10000001 {ms}' in text
    assert "node_cpu_usage_seconds_total " in text and "node_memory_working_set_bytes " in text
    assert "resource_scrape_error 0" in text
    assert "# TYPE container_cpu_usage_seconds_total counter" in text


async def test_tls_is_1_2_or_newer(kubelet: Kubelet) -> None:
    """The server refuses anything older than TLS 1.2 and does speak 1.2 to a client capped there."""
    assert kubelet.server.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = insecure_client_ssl()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", kubelet.server.port, ssl=ctx), 5)
    assert w.get_extra_info("ssl_object").version() == "TLSv1.2"
    w.close()
    await w.wait_closed()


async def test_stop_closes_open_streams_and_releases_the_backend(
    tmp_path: Path, auth_api: FakeAuthAPI, echo_server: int
) -> None:
    """stop() ends open follow-log, WebSocket and SPDY exec streams, releasing every backend side."""
    server, streams, api = await start_kubelet(tmp_path, auth_api, echo_server)
    streams.follow_queue = asyncio.Queue()
    try:
        async with session() as s:
            logs = await s.get(f"https://127.0.0.1:{server.port}/containerLogs/default/web/app?follow=1", headers=ADMIN)
            assert logs.status == 200
            ws = await s.ws_connect(
                f"https://127.0.0.1:{server.port}/exec/default/web/app?command=sleep&command=30&stdout=1",
                headers=ADMIN,
                protocols=["v4.channel.k8s.io"],
            )
            spdy_client = await SpdyClient.connect(
                server.port,
                "/exec/default/web/app?command=sleep&command=30&stdout=1&stderr=1",
                protocols=["v4.channel.k8s.io"],
                token="admin-token",
            )
            ids = [spdy_client.open({"streamtype": k}) for k in ("error", "stdout", "stderr")]
            await spdy_client.pump(lambda cl: set(ids) <= cl.replied)
            await eventually(lambda: len(streams.sessions) >= 2, timeout=5, interval=0.01, what="both sessions")
            async with asyncio.timeout(10):
                await server.stop()
            assert all(session.closed for session in streams.sessions)
            await spdy_client.pump(lambda cl: cl.eof)
            await spdy_client.close()
            assert streams.log_closed.is_set()
            await ws.close()
            logs.close()
    finally:
        await server.stop()
        await api.close()


async def test_log_client_leaving_before_the_first_chunk_releases_the_iterator(kubelet: Kubelet) -> None:
    """A follow client that leaves while no line exists yet still gets its backend iterator closed."""
    kubelet.streams.follow_queue = asyncio.Queue()
    async with session() as s:
        request = asyncio.create_task(s.get(f"{kubelet.url}/containerLogs/default/web/app?follow=1", headers=ADMIN))
        await eventually(lambda: kubelet.streams.log_opts, timeout=5, interval=0.01, what="the log request")
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
    await asyncio.wait_for(kubelet.streams.log_closed.wait(), 5)


async def test_concurrent_requests_share_one_review(kubelet: Kubelet) -> None:
    """Ten simultaneous requests with a token not yet cached cost one TokenReview and one SAR."""
    async with session() as s:

        async def one() -> int:
            async with s.get(kubelet.url + "/pods", headers=ADMIN) as r:
                return r.status

        assert await asyncio.gather(*(one() for _ in range(10))) == [200] * 10
    assert kubelet.auth.token_reviews == 1
    assert len(kubelet.auth.sars) == 1


async def test_unexpected_backend_errors_are_500_status_and_the_server_keeps_serving(kubelet: Kubelet) -> None:
    """A non-provider exception from the backend becomes a 500 Status without details; later requests work."""
    kubelet.streams.logs_error = RuntimeError("secret-looking detail")
    async with session() as s:
        async with s.get(f"{kubelet.url}/containerLogs/default/web/app", headers=ADMIN) as r:
            assert r.status == 500
            body = await r.json()
            assert body["reason"] == "InternalError" and "secret-looking" not in body["message"]
        async with s.get(kubelet.url + "/healthz", headers=ADMIN) as r:
            assert r.status == 200


async def test_slow_backend_error_keeps_its_code_without_follow(
    kubelet: Kubelet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without follow, headers wait for the backend, so a late NotFound is still a 404 (with follow it would be 200)."""
    from vk_provider.errors import NotFound
    from vk_provider.kubelet import server as server_module

    monkeypatch.setattr(server_module, "FIRST_CHUNK_WAIT", 0)
    kubelet.streams.logs_error = NotFound("container has no logs yet")
    kubelet.streams.logs_error_after_yields = 5
    async with session() as s:
        async with s.get(f"{kubelet.url}/containerLogs/default/web/app", headers=ADMIN) as r:
            assert r.status == 404
        async with s.get(f"{kubelet.url}/containerLogs/default/web/app?follow=1", headers=ADMIN) as r:
            assert r.status == 200
            assert await r.read() == b""
