"""Paths outside /api/v1/... and /apis/G/V/...: version, health, discovery documents and OpenAPI v3."""

from __future__ import annotations

from aiohttp import web

from vk_sandbox.apiserver import discovery
from vk_sandbox.apiserver.errors import ApiError, method_not_allowed
from vk_sandbox.apiserver.handlers.response import discovery_version, json_response
from vk_sandbox.apiserver.resources import GROUPS

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.3",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-03-11T00:00:00Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def non_resource(request: web.Request, parts: list[str], host_port: str) -> web.Response:
    """The answer for the path ``parts``; ``host_port`` is where clients reach the server (legacy /api names it)."""
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed()
    path = "/" + "/".join(parts)
    if path == "/version":
        return json_response(VERSION)
    if path in ("/healthz", "/livez", "/readyz"):
        return web.Response(text="ok", content_type="text/plain")
    accept = request.headers.get("Accept", "")
    if path in ("/api", "/apis"):
        version = discovery_version(accept)
        if version:
            body = discovery.aggregated(core=path == "/api", version=version)
            ctype = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
            return json_response(body, content_type=ctype)
        if path == "/api":
            return json_response(discovery.api_versions(host_port))
        return json_response(discovery.api_group_list())
    if path == "/api/v1":
        return json_response(discovery.resource_list("", "v1"))
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in GROUPS:
        return json_response(discovery.api_group(parts[1]))
    if len(parts) == 3 and parts[0] == "apis" and GROUPS.get(parts[1]) == parts[2]:
        return json_response(discovery.resource_list(parts[1], parts[2]))
    if parts and parts[0] == "openapi" and len(parts) >= 2 and parts[1] == "v3":
        if len(parts) == 2:
            return json_response(discovery.openapi_root())
        doc = discovery.openapi_group("/".join(parts[2:]))
        if doc is not None:
            return json_response(doc)
    raise ApiError(404, "NotFound", "the server could not find the requested resource")
