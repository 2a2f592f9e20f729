"""POST, PUT and PATCH of objects (and their status and approval subresources), server-side apply included.

Every object written here passes ``Admission.admit`` once, right before the store (which then defaults and
validates it). A patch is computed against the stored object outside the store, admitted (webhooks may take a
while), and written only if the object has not changed meanwhile; otherwise it is computed again (as the real
server's optimistic update loop), unless the patch itself named a resourceVersion: then it is a conflict.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vk_sandbox.apiserver import patch
from vk_sandbox.apiserver.admission import Admission
from vk_sandbox.apiserver.auth import Identity
from vk_sandbox.apiserver.errors import ApiError, bad_request, conflict, method_not_allowed, not_found
from vk_sandbox.apiserver.events import external, internal
from vk_sandbox.apiserver.handlers.request import Target, check_kind, dry_run, read_body, read_object
from vk_sandbox.apiserver.handlers.response import object_response
from vk_sandbox.apiserver.store import Store

PATCH_ATTEMPTS = 5


class Writes:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.admission = Admission(store)

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
        dry = dry_run(request)
        obj = await self.admission.admit("CREATE", t.rt, None, obj, ident, dry_run=dry)
        if dry:
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
        old = self.store.get(t.rt.key, t.namespace, t.name)
        obj = await self.admission.admit("UPDATE", t.rt, t.subresource, obj, ident, old=old, dry_run=dry)
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
                obj = await self.admission.admit("CREATE", t.rt, None, obj, ident, dry_run=dry)
                created = self.store.create_now(t.rt.key, obj, dry_run=dry)
                return object_response(request, t.rt, created, status=201)
        if existing is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        dry = dry_run(request)
        for _ in range(PATCH_ATTEMPTS):
            current = self.store.get(t.rt.key, t.namespace, t.name)
            if current is None:
                raise not_found(t.rt.plural, t.rt.group, t.name)
            new, pinned = self._patched(t, current, body, ctype)
            new = await self.admission.admit("UPDATE", t.rt, t.subresource, new, ident, old=current, dry_run=dry)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                updated = self.store.update_now(t.rt.key, new, subresource=t.subresource, dry_run=dry)
            except ApiError as exc:
                if exc.code == 409 and not pinned and self._changed_since(t, current):
                    continue  # someone wrote meanwhile: patch the newer object
                raise
            return object_response(request, t.rt, updated)
        raise conflict(t.rt.plural, t.rt.group, t.name, "the object kept changing while the patch was admitted")

    def _changed_since(self, t: Target, seen: dict[str, Any]) -> bool:
        now = self.store.get(t.rt.key, t.namespace, t.name or "")
        return now is not None and now["metadata"]["resourceVersion"] != seen["metadata"]["resourceVersion"]

    @staticmethod
    def _patched(t: Target, current: dict[str, Any], body: Any, ctype: str) -> tuple[dict[str, Any], bool]:
        """The object after the patch (internal form) and whether the patch named a resourceVersion."""
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
        pinned = (
            bool((body.get("metadata") or {}).get("resourceVersion"))
            if isinstance(body, dict)
            else bool(any(isinstance(op, dict) and "resourceVersion" in str(op.get("path", "")) for op in body or []))
        )
        return internal(t.rt, new), pinned
