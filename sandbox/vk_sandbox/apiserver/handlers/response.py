"""Answering a request: JSON bodies, metav1.Status errors, and the form the Accept header asks for."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from vk_sandbox.apiserver import tables
from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.events import external
from vk_sandbox.apiserver.resources import ResourceType


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(body=dumps(obj).encode(), status=status, headers={"Content-Type": content_type})


def error_response(err: ApiError) -> web.Response:
    return json_response(err.status(), status=err.code)


def success(status: int = 201) -> web.Response:
    """The bare Success Status that binding and eviction answer."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": status}
    return json_response(body, status=status)


def _media_ranges(accept: str) -> list[dict[str, str]]:
    """Each media range of an Accept header as {"type": ..., param: value}, in the client's order."""
    out = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        params = {"type": fields[0].lower()}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip()
        out.append(params)
    return out


def discovery_version(accept: str) -> str | None:
    """The aggregated discovery version the client prefers (v2 or v2beta1), or None for legacy discovery."""
    for r in _media_ranges(accept):
        if (
            r.get("as") == "APIGroupDiscoveryList"
            and r.get("g") == "apidiscovery.k8s.io"
            and r.get("v") in ("v2", "v2beta1")
        ):
            return r["v"]
    return None


def _preferred_form(request: web.Request) -> str:
    """What the client asks for first among what we serve: "Table", "PartialObjectMetadata(List)" or "" (objects)."""
    for r in _media_ranges(request.headers.get("Accept", "")):
        if r["type"] not in ("application/json", "application/*", "*/*"):
            continue
        form = r.get("as", "")
        if not form:
            return ""
        if r.get("g") == "meta.k8s.io" and form in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
            return form
    return ""


def wants_table(request: web.Request) -> bool:
    return _preferred_form(request) == "Table"


def wants_partial(request: web.Request) -> bool:
    return _preferred_form(request).startswith("PartialObjectMetadata")


def object_response(request: web.Request, rt: ResourceType, obj: dict[str, Any], status: int = 200) -> web.Response:
    """A stored object in its served form, or as a one-row Table for a GET that asks for one."""
    out = external(rt, obj)
    if wants_table(request) and request.method == "GET":
        rv = out["metadata"].get("resourceVersion", "")
        return json_response(tables.table(rt, [out], rv=rv, include=request.query.get("includeObject", "Metadata")))
    return json_response(out, status=status)
