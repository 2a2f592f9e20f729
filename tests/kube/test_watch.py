"""List-then-watch over a real HTTP socket: paging, bookmarks, resourceVersion and re-list on 410."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.kube.watch import Informer


def pod(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv), "uid": f"u-{name}"}}


class FakeServer:
    """Serves /api/v1/pods: a paged list, and watches scripted per request."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.list_rv = "10"
        self.watches: list[list[dict[str, Any]]] = []
        self.queries: list[dict[str, str]] = []
        self.done = asyncio.Event()
        self.closing = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.queries.append(q)
        if q.get("watch") != "true":
            limit = int(q.get("limit", "500"))
            start = int(q.get("continue") or 0)
            page = self.items[start : start + limit]
            nxt = str(start + limit) if start + limit < len(self.items) else ""
            return web.json_response({"items": page, "metadata": {"resourceVersion": self.list_rv, "continue": nxt}})
        resp = web.StreamResponse()
        await resp.prepare(request)
        events = self.watches.pop(0) if self.watches else []
        for ev in events:
            await resp.write(json.dumps(ev).encode() + b"\n")
        if not self.watches and not events:
            self.done.set()
            # Hold the last watch open like a real server, until the test tears down.
            await asyncio.wait_for(self.closing.wait(), timeout=30)
        return resp


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeServer, KubeAPI]]:
    fake = FakeServer()
    app = web.Application()

    async def missing(request: web.Request) -> web.Response:
        body = {"kind": "Status", "code": 404, "reason": "NotFound", "message": 'pods "missing" not found'}
        return web.json_response(body, status=404)

    app.router.add_get("/api/v1/pods", fake.handle)
    app.router.add_get("/api/v1/namespaces/ns/pods/missing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg = k8s_client.Configuration(host=f"http://127.0.0.1:{port}")
    api = KubeAPI(k8s_client.ApiClient(cfg), timeout=5)
    try:
        yield fake, api
    finally:
        fake.closing.set()
        await api.close()
        await runner.cleanup()


async def test_errors_are_parsed_from_status(server: tuple[FakeServer, KubeAPI]) -> None:
    """A 404 Status body becomes KubeError(404, NotFound); get_or_none returns None for it."""
    _, api = server
    with pytest.raises(KubeError) as info:
        await api.get("/api/v1/namespaces/ns/pods/missing")
    assert info.value.not_found and info.value.reason == "NotFound"
    assert await api.get_or_none("/api/v1/namespaces/ns/pods/missing") is None


async def test_list_watch_bookmark_and_relist_on_410(server: tuple[FakeServer, KubeAPI]) -> None:
    """Pages are joined, events applied, bookmarks advance the RV, and 410 re-lists with deletes noticed."""
    fake, api = server
    fake.items = [pod("a", 1), pod("b", 2), pod("c", 3)]
    fake.watches = [
        [
            {"type": "ADDED", "object": pod("d", 11)},
            {"type": "MODIFIED", "object": pod("a", 12)},
            {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "15"}}},
            {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
        ],
    ]
    seen: list[tuple[str, str]] = []

    def handler(kind: str, obj: dict[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))

    informer = Informer(api, "/api/v1/pods", handler=handler, field_selector="spec.nodeName=vk", page_size=2)
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(5):
            await informer.synced.wait()
            assert sorted(informer.cache) == ["ns/a", "ns/b", "ns/c"]
            # After the 410, the re-list no longer has b: a DELETED must be emitted.
            fake.items = [pod("a", 12), pod("c", 3), pod("d", 11)]
            fake.list_rv = "20"
            await fake.done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[:5] == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("ADDED", "d"), ("MODIFIED", "a")]
    assert ("DELETED", "b") in seen[5:]
    assert sorted(informer.cache) == ["ns/a", "ns/c", "ns/d"]
    watch_queries = [q for q in fake.queries if q.get("watch") == "true"]
    assert watch_queries[0]["resourceVersion"] == "10"
    assert watch_queries[0]["fieldSelector"] == "spec.nodeName=vk"
    assert watch_queries[0]["allowWatchBookmarks"] == "true"
    assert watch_queries[1]["resourceVersion"] == "20"
    assert informer.relists == 2


def test_json_cache_holds_compact_json_and_reads_fresh_dicts() -> None:
    """The cache stores each object as compact JSON without managedFields, deflated; every read is an equal,
    fresh dict, and it behaves as a mapping (membership, iteration, length, deletion)."""
    from vk_provider.kube.watch import JSONCache
    from vk_provider.packing import inflate

    cache = JSONCache()
    raw = pod("a", 1)
    raw["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    cache["ns/a"] = raw
    cache["ns/b"] = pod("b", 2)
    assert "managedFields" in raw["metadata"]  # the input is untouched
    held = cache._data["ns/a"]
    assert isinstance(held, bytes) and b" " not in inflate(held) and len(held) < len(inflate(held))
    first = cache["ns/a"]
    assert first == pod("a", 1)
    first["metadata"]["name"] = "changed"
    assert cache["ns/a"] == pod("a", 1)  # changing a read changes nothing held
    assert "ns/a" in cache and "ns/c" not in cache and cache.get("ns/c") is None
    assert sorted(cache) == ["ns/a", "ns/b"] and len(cache) == 2
    assert [o["metadata"]["name"] for o in cache.values()] == ["a", "b"]
    assert cache.pop("ns/a") == pod("a", 1)
    del cache["ns/b"]
    assert len(cache) == 0


def test_for_cache_drops_managed_fields_only() -> None:
    """The cached form has no metadata.managedFields; everything else is kept, and the input is untouched."""
    from vk_provider.kube.watch import for_cache

    raw = pod("a", 1)
    raw["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
    raw["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    raw["spec"] = {"containers": [{"name": "app", "image": "busybox"}]}
    cached = for_cache(json.loads(json.dumps(raw)))
    assert "managedFields" not in cached["metadata"]
    expected = json.loads(json.dumps(raw))
    del expected["metadata"]["managedFields"]
    assert cached == expected
    assert "managedFields" in raw["metadata"]
    plain = pod("b", 2)
    assert for_cache(plain) == plain


async def test_cache_holds_no_managed_fields(server: tuple[FakeServer, KubeAPI]) -> None:
    """Neither listed nor watched objects keep managedFields in the cache or in what the handler gets."""
    fake, api = server
    managed = [{"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]
    listed = pod("a", 1)
    listed["metadata"]["managedFields"] = managed
    watched = pod("b", 11)
    watched["metadata"]["managedFields"] = managed
    fake.items = [listed]
    fake.watches = [[{"type": "ADDED", "object": watched}]]
    handled: list[dict[str, Any]] = []
    informer = Informer(api, "/api/v1/pods", handler=lambda kind, obj: handled.append(obj))
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(5):
            await fake.done.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(informer.cache) == ["ns/a", "ns/b"]
    for obj in [*informer.cache.values(), *handled]:
        assert "managedFields" not in obj["metadata"]
        assert obj["metadata"]["uid"] in ("u-a", "u-b")
