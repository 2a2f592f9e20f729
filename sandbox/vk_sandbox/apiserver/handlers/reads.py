"""GET of one object, list (pages, Tables, metadata only) and watch (JSON lines, bookmarks, Tables)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from vk_sandbox.apiserver import tables
from vk_sandbox.apiserver.context import ReadContext
from vk_sandbox.apiserver.errors import ApiError, bad_request, method_not_allowed, not_found
from vk_sandbox.apiserver.events import external
from vk_sandbox.apiserver.handlers.request import Target, truthy
from vk_sandbox.apiserver.handlers.response import (
    dumps,
    json_response,
    object_response,
    wants_partial,
    wants_table,
)


class Reads:
    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def get(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = self.store.get(t.rt.key, t.namespace, t.name)
        if obj is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        if t.subresource and t.subresource not in ("status", "approval"):
            raise method_not_allowed()
        if wants_partial(request):
            return json_response(tables.partial(obj))
        return object_response(request, t.rt, obj)

    def list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        limit = None
        if q.get("limit"):
            try:
                limit = int(q["limit"])
            except ValueError as exc:
                raise bad_request(f'invalid limit "{q["limit"]}"') from exc
            if limit <= 0:
                limit = None
        rv_match = q.get("resourceVersionMatch")
        if rv_match == "Exact" and q.get("resourceVersion") and q["resourceVersion"] != self.store.resource_version:
            raise ApiError(410, "Expired", f"too old resource version: {q['resourceVersion']}")
        items, rv, token = self.store.list_page(
            t.rt.key,
            t.namespace,
            label_selector=q.get("labelSelector"),
            field_selector=q.get("fieldSelector"),
            limit=limit,
            continue_token=q.get("continue"),
        )
        items = [external(t.rt, i) for i in items]
        if wants_table(request):
            return json_response(
                tables.table(t.rt, items, rv=rv, cont=token, include=q.get("includeObject", "Metadata"))
            )
        meta: dict[str, Any] = {"resourceVersion": rv}
        if token:
            meta["continue"] = token
        if wants_partial(request):
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": [tables.partial(i) for i in items],
                }
            )
        # As the real server, the items of a list carry no apiVersion/kind of their own (the list's say it).
        bare = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
        return json_response({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version, "metadata": meta, "items": bare})

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        field_sel = q.get("fieldSelector")
        if t.name:
            field_sel = f"metadata.name={t.name}" + (f",{field_sel}" if field_sel else "")
        timeout: float | None = None
        if q.get("timeoutSeconds"):
            try:
                timeout = max(0.0, float(q["timeoutSeconds"]))
            except ValueError as exc:
                raise bad_request("invalid timeoutSeconds") from exc
        bookmarks = truthy(q.get("allowWatchBookmarks"))
        as_table = wants_table(request)
        include = q.get("includeObject", "Metadata")
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()
        try:
            w = self.store.watch(
                t.rt.key,
                t.namespace,
                resource_version=q.get("resourceVersion"),
                label_selector=q.get("labelSelector"),
                field_selector=field_sel,
                copy=False,
            )
        except ApiError as err:
            if err.code != 410:
                raise
            # A too-old version is answered 200 with one ERROR event, as the real server does.
            await resp.prepare(request)
            await resp.write((dumps({"type": "ERROR", "object": err.status()}) + "\n").encode())
            await resp.write_eof()
            return resp
        await resp.prepare(request)
        deadline = time.monotonic() + timeout if timeout is not None else None
        interval = self.ctx.bookmark_interval
        first_table = True
        try:
            while True:
                wait = interval
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                try:
                    ev = await w.get(timeout=wait)
                except StopAsyncIteration:
                    break
                except ApiError as err:
                    await resp.write((dumps({"type": "ERROR", "object": err.status()}) + "\n").encode())
                    break
                if ev is None:
                    if bookmarks and w.idle and not w.closed:
                        bm = {
                            "kind": t.rt.kind,
                            "apiVersion": t.rt.api_version,
                            "metadata": {"resourceVersion": str(w.seen_rv)},
                        }
                        if as_table:
                            bm = tables.table(t.rt, [], rv=str(w.seen_rv), headers=False, include=include)
                        await resp.write((dumps({"type": "BOOKMARK", "object": bm}) + "\n").encode())
                    elif request.transport is None or request.transport.is_closing():
                        break
                    continue
                obj = external(t.rt, ev["object"])
                if as_table:
                    obj = tables.table(
                        t.rt, [obj], rv=obj["metadata"].get("resourceVersion", ""), headers=first_table, include=include
                    )
                    first_table = False
                await resp.write((dumps({"type": ev["type"], "object": obj}) + "\n").encode())
        except (ConnectionResetError, ConnectionError):
            return resp
        finally:
            w.aclose_now()
        try:
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        return resp
