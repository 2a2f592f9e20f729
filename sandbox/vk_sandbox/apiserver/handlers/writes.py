"""POST, PUT and PATCH of objects (and their status and approval subresources), server-side apply included.

Every object written here passes ``admission.admit`` once, right before the store (which then defaults and
validates it).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vk_sandbox.apiserver import patch
from vk_sandbox.apiserver.auth import Identity
from vk_sandbox.apiserver.errors import ApiError, bad_request, conflict, method_not_allowed, not_found
from vk_sandbox.apiserver.events import external, internal
from vk_sandbox.apiserver.handlers.admission import admit
from vk_sandbox.apiserver.handlers.request import Target, check_kind, dry_run, read_body, read_object
from vk_sandbox.apiserver.handlers.response import object_response
from vk_sandbox.apiserver.store import Store


class Writes:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _decode_object(self, request: web.Request, t: Target) -> dict[str, Any]:
        body = await read_object(request, t.rt)
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if t.rt.namespaced:
            ns = meta.get("namespace")
            if ns and t.namespace and ns != t.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = t.namespace
        return internal(t.rt, body)

    async def create(self, request: web.Request, t: Target, ident: Identity) -> web.Response:
        if t.subresource:
            raise method_not_allowed()
        obj = await self._decode_object(request, t)
        if t.name is not None:
            raise method_not_allowed()
        admit("CREATE", t.rt, None, obj, ident)
        if dry_run(request):
            return object_response(request, t.rt, self.store.create_now(t.rt.key, obj, dry_run=True), status=201)
        created = await self.store.create(t.rt.key, obj)
        return object_response(request, t.rt, created, status=201)

    async def update(self, request: web.Request, t: Target, ident: Identity) -> web.Response:
        assert t.name is not None
        obj = await self._decode_object(request, t)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != t.name:
            raise bad_request("the name of the object does not match the name on the URL")
        meta["name"] = t.name
        if not t.rt.namespaced:
            meta.pop("namespace", None)
        dry = dry_run(request)
        admit("UPDATE", t.rt, t.subresource, obj, ident)
        updated = self.store.update_now(t.rt.key, obj, subresource=t.subresource, dry_run=dry)
        return object_response(request, t.rt, updated)

    async def patch(self, request: web.Request, t: Target, ident: Identity) -> web.Response:
        assert t.name is not None
        body, ctype = await read_body(request, allow_patch=True)
        existing = self.store.get(t.rt.key, t.namespace, t.name)
        if ctype == patch.APPLY_PATCH:
            if not isinstance(body, dict):
                raise bad_request("apply patch must be an object")
            check_kind(t.rt, body)
            if not body.get("apiVersion") or not body.get("kind"):
                raise bad_request("apiVersion and kind must be set in an apply patch")
            meta = body.get("metadata")
            if not isinstance(meta, dict) or meta.get("name") != t.name:
                raise bad_request("metadata.name in an apply patch must match the name on the URL")
            if not request.query.get("fieldManager"):
                raise bad_request("PATCH requests of type apply must have a fieldManager")
            if existing is None:
                if t.subresource:
                    raise not_found(t.rt.plural, t.rt.group, t.name)
                if t.rt.namespaced:
                    meta["namespace"] = t.namespace
                obj = internal(t.rt, body)
                dry = dry_run(request)
                admit("CREATE", t.rt, None, obj, ident)
                created = self.store.create_now(t.rt.key, obj, dry_run=dry)
                return object_response(request, t.rt, created, status=201)
        if existing is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        sub = t.subresource

        def fn(current: dict[str, Any]) -> dict[str, Any]:
            doc = external(t.rt, current)
            rv = doc["metadata"].get("resourceVersion")
            if ctype == patch.JSON_PATCH:
                new = patch.apply_json_patch(doc, body)
            elif not isinstance(body, dict):
                raise bad_request("the patch must be a JSON object")
            elif ctype == patch.MERGE_PATCH:
                new = patch.json_merge_patch(doc, body)
            else:
                new = patch.strategic_merge(doc, body)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise ApiError(422, "Invalid", "the patched object must keep its metadata")
            want_rv = new["metadata"].get("resourceVersion")
            if want_rv and want_rv != rv:
                raise conflict(
                    t.rt.plural,
                    t.rt.group,
                    t.name or "",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if new["metadata"].get("name") != t.name:
                raise bad_request("the name of the object must not change")
            new = internal(t.rt, new)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            admit("UPDATE", t.rt, sub, new, ident)
            return new

        updated = self.store.mutate_now(t.rt.key, t.namespace, t.name, fn, subresource=sub, dry_run=dry_run(request))
        return object_response(request, t.rt, updated)
