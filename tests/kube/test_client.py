"""KubeAPI (raw JSON over the kubernetes_asyncio transport), KubeError and the time helpers.

The transport is exercised against a tiny local aiohttp server (to control bodies, chunking and stalls exactly)
and against the sandbox API server (real metav1.Status answers)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from vk_provider.kube.client import (
    MERGE_PATCH,
    KubeAPI,
    KubeError,
    now_micro,
    now_rfc3339,
    parse_time,
)
from vk_sandbox.apiserver.server import SandboxAPIServer

TOKEN = "s3cr3t-token"


# --- KubeError and times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "flags"),
    [
        (404, (True, False, False)),
        (409, (False, True, False)),
        (410, (False, False, True)),
        (500, (False, False, False)),
    ],
)
def test_kube_error_properties(status: int, flags: tuple[bool, bool, bool]) -> None:
    err = KubeError(status, "Reason", "what happened")
    assert (err.not_found, err.conflict, err.gone) == flags
    assert (err.status, err.reason, err.message) == (status, "Reason", "what happened")
    assert str(err) == f"{status} Reason: what happened"


def test_now_rfc3339_is_seconds_precision_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    text = now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    parsed = parse_time(text)
    assert parsed is not None and before <= parsed <= datetime.now(UTC)


def test_now_micro_is_microsecond_precision_utc() -> None:
    before = datetime.now(UTC)
    text = now_micro()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    parsed = parse_time(text)
    assert parsed is not None and before <= parsed <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.123456Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))),
        (None, None),
        ("", None),
        ("yesterday", None),
        ("2026-13-01T00:00:00Z", None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    got = parse_time(text)
    assert got == expected
    if got is not None:
        assert got.tzinfo is not None, "always an aware datetime"


# --- against a tiny local server -----------------------------------------------------------------------


@dataclass
class Local:
    api: KubeAPI
    seen: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def build_app(state: Local) -> web.Application:
    async def obj(request: web.Request) -> web.Response:
        state.seen.append(request)
        return web.json_response(
            {
                "kind": "Thing",
                "query": dict(request.query),
                "accept": request.headers.get("Accept"),
                "auth": request.headers.get("Authorization"),
            }
        )

    async def listing(request: web.Request) -> web.Response:
        return web.json_response([{"a": 1}, {"b": 2}])

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def echo(request: web.Request) -> web.Response:
        raw = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "contentType": request.headers.get("Content-Type"),
                "body": json.loads(raw) if raw else None,
            },
            status=201 if request.method == "POST" else 200,
        )

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        reason = {404: "NotFound", 409: "AlreadyExists", 410: "Expired", 403: "Forbidden"}.get(code, "InternalError")
        return web.json_response(status_body(code, reason, f"thing {code}"), status=code)

    async def reasonless(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "message": "no reason given"}, status=422)

    async def text_error(request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream connect error")

    async def long_error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="x" * 2000)

    async def list_error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="[1, 2]", content_type="application/json")

    async def leaky_error(request: web.Request) -> web.Response:
        body = status_body(401, "Unauthorized", "bad header Authorization: Bearer abc.def.ghi for user")
        return web.json_response(body, status=401)

    async def log(request: web.Request) -> web.Response:
        return web.Response(body=b"line one\n\xffline two\n", content_type="text/plain")

    async def hang(request: web.Request) -> web.Response:
        await state.release.wait()
        return web.json_response({})

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        await resp.write(b'{"type":"ADDED","object":{"n":1}}\n{"type":"MOD')
        await resp.write(b'IFIED","object":{"n":2}}\n\n   \n')
        await resp.write(b'{"type":"DELETED","object":{"n":3}}')  # the last line has no newline
        await resp.write_eof()
        return resp

    async def watch_hang(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type":"ADDED","object":{"n":1}}\n')
        await state.release.wait()
        return resp

    async def watch_gone(request: web.Request) -> web.Response:
        return web.json_response(status_body(410, "Expired", "too old resource version: 1 (5)"), status=410)

    app = web.Application()
    app.router.add_get("/api/v1/obj", obj)
    app.router.add_get("/api/v1/list", listing)
    app.router.add_get("/api/v1/empty", empty)
    app.router.add_route("*", "/api/v1/echo", echo)
    app.router.add_get("/api/v1/status/{code}", status)
    app.router.add_get("/api/v1/reasonless", reasonless)
    app.router.add_get("/api/v1/text-error", text_error)
    app.router.add_get("/api/v1/long-error", long_error)
    app.router.add_get("/api/v1/list-error", list_error)
    app.router.add_get("/api/v1/leaky-error", leaky_error)
    app.router.add_get("/api/v1/log", log)
    app.router.add_get("/api/v1/hang", hang)
    app.router.add_get("/api/v1/watch", watch)
    app.router.add_get("/api/v1/watch-hang", watch_hang)
    app.router.add_get("/api/v1/watch-gone", watch_gone)
    return app


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    cfg = k8s_client.Configuration()
    cfg.api_key = {"BearerToken": TOKEN}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    state = Local(api=None)  # type: ignore[arg-type]
    runner = web.AppRunner(build_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.proxy = None
    state.api = KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=5)
    try:
        yield state
    finally:
        state.release.set()
        await state.api.close()
        await runner.cleanup()


async def test_get_sends_json_accept_bearer_token_and_drops_none_query_values(local: Local) -> None:
    out = await local.api.get("/api/v1/obj", query={"labelSelector": "a=b", "limit": 5, "continue": None})
    assert out["kind"] == "Thing"
    assert out["query"] == {"labelSelector": "a=b", "limit": "5"}
    assert out["accept"] == "application/json"
    assert out["auth"] == f"Bearer {TOKEN}"


async def test_a_json_array_answer_is_wrapped_as_items(local: Local) -> None:
    assert await local.api.get("/api/v1/list") == {"items": [{"a": 1}, {"b": 2}]}


async def test_an_empty_answer_is_an_empty_object(local: Local) -> None:
    assert await local.api.get("/api/v1/empty") == {}


@pytest.mark.parametrize(
    ("method", "content_type"), [("POST", "application/json"), ("PUT", "application/json"), ("PATCH", MERGE_PATCH)]
)
async def test_request_sends_the_body_as_json_with_its_content_type(
    local: Local, method: str, content_type: str
) -> None:
    body = {"metadata": {"name": "x", "labels": {"a": "é"}}, "n": [1, 2]}
    out = await local.api.request(method, "/api/v1/echo", body=body, content_type=content_type)
    assert out == {"method": method, "contentType": content_type, "body": body}


async def test_delete_without_a_body(local: Local) -> None:
    out = await local.api.request("DELETE", "/api/v1/echo")
    assert out["method"] == "DELETE" and out["body"] is None


@pytest.mark.parametrize(
    ("code", "reason", "prop"),
    [
        (404, "NotFound", "not_found"),
        (409, "AlreadyExists", "conflict"),
        (410, "Expired", "gone"),
        (500, "InternalError", None),
    ],
)
async def test_a_status_body_becomes_a_kube_error(local: Local, code: int, reason: str, prop: str | None) -> None:
    with pytest.raises(KubeError) as info:
        await local.api.get(f"/api/v1/status/{code}")
    err = info.value
    assert (err.status, err.reason, err.message) == (code, reason, f"thing {code}")
    for p in ("not_found", "conflict", "gone"):
        assert getattr(err, p) is (p == prop)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("reasonless", 422, "no reason given"),  # a Status without a reason
        ("text-error", 503, "upstream connect error"),  # not JSON: the body is the message
        ("list-error", 500, "[1, 2]"),  # JSON but not an object: the body is the message
    ],
)
async def test_an_error_without_a_reason_is_called_error(local: Local, path: str, status: int, message: str) -> None:
    with pytest.raises(KubeError) as info:
        await local.api.get(f"/api/v1/{path}")
    assert (info.value.status, info.value.reason, info.value.message) == (status, "Error", message)


async def test_a_long_error_body_is_cut(local: Local) -> None:
    with pytest.raises(KubeError) as info:
        await local.api.get("/api/v1/long-error")
    assert info.value.message == "x" * 500


async def test_a_secret_in_an_error_message_is_redacted(local: Local) -> None:
    with pytest.raises(KubeError) as info:
        await local.api.get("/api/v1/leaky-error")
    assert "abc.def.ghi" not in str(info.value)
    assert info.value.message.startswith("bad header Authorization")


async def test_get_or_none(local: Local) -> None:
    assert await local.api.get_or_none("/api/v1/status/404") is None
    assert (await local.api.get_or_none("/api/v1/obj") or {})["kind"] == "Thing"
    with pytest.raises(KubeError) as info:
        await local.api.get_or_none("/api/v1/status/403")
    assert info.value.status == 403


async def test_get_text_returns_text_with_undecodable_bytes_replaced(local: Local) -> None:
    assert await local.api.get_text("/api/v1/log") == "line one\n\ufffdline two\n"
    with pytest.raises(KubeError) as info:
        await local.api.get_text("/api/v1/status/404")
    assert info.value.not_found


async def test_a_request_that_outlives_the_timeout_fails(local: Local) -> None:
    local.api.timeout = 0.3
    with pytest.raises(TimeoutError):
        await local.api.get("/api/v1/hang")


async def test_watch_lines_parses_one_event_per_line_across_chunks(local: Local) -> None:
    events = [
        e async for e in local.api.watch_lines("/api/v1/watch", {"watch": "1", "resourceVersion": None}, timeout=5)
    ]
    assert events == [
        {"type": "ADDED", "object": {"n": 1}},
        {"type": "MODIFIED", "object": {"n": 2}},
        {"type": "DELETED", "object": {"n": 3}},
    ]


async def test_watch_lines_raises_a_status_error_before_any_event(local: Local) -> None:
    with pytest.raises(KubeError) as info:
        async for _ in local.api.watch_lines("/api/v1/watch-gone", {"watch": "1"}, timeout=5):
            raise AssertionError("no event expected")
    assert info.value.gone and "too old" in info.value.message


async def test_watch_lines_stops_at_its_own_timeout(local: Local) -> None:
    got: list[dict[str, Any]] = []
    with pytest.raises(TimeoutError):
        async for event in local.api.watch_lines("/api/v1/watch-hang", {"watch": "1"}, timeout=0.5):
            got.append(event)
    assert got == [{"type": "ADDED", "object": {"n": 1}}]


# --- against the sandbox API server --------------------------------------------------------------------


async def api_for(kubeconfig: Path) -> KubeAPI:
    cfg = k8s_client.Configuration()
    await k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=10)


async def test_against_the_sandbox_api_server(tmp_path: Path) -> None:
    async with SandboxAPIServer(directory=tmp_path / "apiserver", controllers=False) as srv:
        api = await api_for(srv.kubeconfig_path)
        base = "/api/v1/namespaces/default/configmaps"
        try:
            created = await api.request("POST", base, body={"metadata": {"name": "c1"}, "data": {"k": "v"}})
            assert created["metadata"]["uid"]
            with pytest.raises(KubeError) as info:
                await api.request("POST", base, body={"metadata": {"name": "c1"}})
            assert info.value.conflict and info.value.reason == "AlreadyExists" and "c1" in info.value.message
            assert await api.get_or_none(f"{base}/absent") is None
            with pytest.raises(KubeError) as info:
                await api.get(f"{base}/absent")
            assert info.value.not_found and info.value.reason == "NotFound" and "absent" in info.value.message
            patched = await api.request("PATCH", f"{base}/c1", body={"data": {"k2": "v2"}}, content_type=MERGE_PATCH)
            assert patched["data"] == {"k": "v", "k2": "v2"}
            listed = await api.get(base, query={"fieldSelector": "metadata.name=c1"})
            assert [o["metadata"]["name"] for o in listed["items"]] == ["c1"]
            events = api.watch_lines(base, {"watch": "1", "timeoutSeconds": 30}, timeout=30)
            first = await anext(events)
            assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "c1"
            await events.aclose()
        finally:
            await api.close()
