"""Reading a request: the resource path, the body, and the query flags every verb shares."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from aiohttp import web

from vk_sandbox.apiserver import patch, protobuf
from vk_sandbox.apiserver.errors import ApiError, bad_request
from vk_sandbox.apiserver.resources import BY_PATH, GROUPS, ResourceType

MAX_BODY = 3 * 1024 * 1024
_JSON_TYPES = ("application/json", "")
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


@dataclass
class Target:
    """A parsed resource path."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    rest: str  # the remainder after a proxy subresource


def parse_resource_path(parts: list[str]) -> Target:
    """Parse ``['api','v1','namespaces','ns','pods','x','status']`` and friends; ApiError 404 when unknown."""
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    if GROUPS.get(group) != version or not rest:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in BY_PATH:
        rt0 = BY_PATH[(group, version, rest[2])]
        if rt0.namespaced:
            namespace = rest[1]
            rest = rest[2:]
    rt = BY_PATH.get((group, version, rest[0]))
    if rt is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    tail = "/".join(rest[3:])
    if sub is not None and sub not in rt.subresources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if sub not in ("proxy",) and tail:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if name == "":
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Target(rt, namespace, name, sub, tail)


def truthy(value: str | None) -> bool:
    """Query booleans are false only for "0" and (case-insensitive) "false", as the real server parses them."""
    return value is not None and value.lower() not in ("0", "false")


def dry_run(request: web.Request) -> bool:
    """``dryRun=All`` validates and answers without persisting; any other value is a 400, as the real server."""
    values = request.query.getall("dryRun", [])
    if any(v != "All" for v in values):
        raise bad_request(f"Invalid dry run value: {values}")
    return bool(values)


def dry_in_options(opts: dict[str, Any]) -> bool:
    """kubectl puts a delete's dry run in the DeleteOptions body."""
    values = opts.get("dryRun") or []
    if not isinstance(values, list) or any(v != "All" for v in values):
        raise bad_request(f"Invalid dry run value: {values}")
    return bool(values)


def encoded_query(request: web.Request) -> str:
    """The query string, re-encoded from its parsed pairs as the real server does (exec args may hold spaces)."""
    return urlencode(list(request.query.items()), quote_via=quote)


async def read_raw_body(request: web.Request) -> bytes:
    """The whole body, at most MAX_BODY bytes (a StreamReader's read(n) may return only the first chunk)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
            chunks.append(chunk)
    except (ValueError, ConnectionError) as exc:
        raise bad_request("could not read the request body") from exc
    return b"".join(chunks)


async def read_body(request: web.Request, *, allow_patch: bool = False) -> tuple[Any, str]:
    """The decoded body and its media type. 415 for unknown types, 413 for oversized, 400 for garbage."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if allow_patch:
        if ctype not in patch.PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(patch.PATCH_TYPES)}",
            )
    elif ctype not in (*_JSON_TYPES, *_YAML_TYPES, protobuf.PROTOBUF):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f'the body of the request was in an unknown format ("{ctype}") - accepted media types include: '
            "application/json, application/yaml",
        )
    raw = await read_raw_body(request)
    if not raw.strip():
        raise bad_request("the request body is empty")
    if ctype == protobuf.PROTOBUF:
        return protobuf.decode(raw), ctype
    try:
        body = yaml.safe_load(raw) if ctype in _YAML_TYPES or ctype == patch.APPLY_PATCH else json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        # Keep the parser's message short: never echo the body (it may hold a Secret).
        raise bad_request(f"the body of the request could not be decoded: {type(exc).__name__}") from exc
    return body, ctype


async def read_object(request: web.Request, rt: ResourceType) -> dict[str, Any]:
    """A body that must be one object of ``rt``'s kind (a kind or apiVersion it states must be ``rt``'s)."""
    body, _ = await read_body(request)
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    check_kind(rt, body)
    return body


def check_kind(rt: ResourceType, body: dict[str, Any]) -> None:
    kind = body.get("kind")
    api_version = body.get("apiVersion")
    if kind is not None and not isinstance(kind, str):
        raise bad_request("kind must be a string")
    if kind and kind != rt.kind:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            if api_version != rt.api_version
            else f'no kind "{kind}" is registered for the endpoint of {rt.kind}'
        )
    if api_version and api_version != rt.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )
