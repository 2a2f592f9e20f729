"""HTTP handlers: parse the path, authenticate, authorize, then read or write the store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import yaml
from aiohttp import web

from vk_sandbox.apiserver import discovery, metrics_api, patch, protobuf, tables
from vk_sandbox.apiserver.auth import ANONYMOUS_IDENTITY, Attributes, Identity, identity_from_peercert
from vk_sandbox.apiserver.errors import ApiError, bad_request, conflict, method_not_allowed, not_found
from vk_sandbox.apiserver.events import from_events_v1, to_events_v1
from vk_sandbox.apiserver.resources import BY_PATH, GROUPS, METRICS_GROUP, ResourceType
from vk_sandbox.apiserver.store import now_rfc3339

if TYPE_CHECKING:
    from vk_sandbox.apiserver.server import SandboxAPIServer

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
MAX_BODY = 3 * 1024 * 1024
_JSON_TYPES = ("application/json", "")
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_response(obj: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(body=dumps(obj).encode(), status=status, headers={"Content-Type": content_type})


def error_response(err: ApiError) -> web.Response:
    return json_response(err.status(), status=err.code)


def dry_run(request: web.Request) -> bool:
    """``dryRun=All`` validates and answers without persisting; any other value is a 400, as the real server."""
    values = request.query.getall("dryRun", [])
    if any(v != "All" for v in values):
        raise bad_request(f"Invalid dry run value: {values}")
    return bool(values)


def _dry_in_options(opts: dict[str, Any]) -> bool:
    """kubectl puts a delete's dry run in the DeleteOptions body."""
    values = opts.get("dryRun") or []
    if not isinstance(values, list) or any(v != "All" for v in values):
        raise bad_request(f"Invalid dry run value: {values}")
    return bool(values)


def truthy(value: str | None) -> bool:
    """Query booleans are false only for "0" and (case-insensitive) "false", as the real server parses them."""
    return value is not None and value.lower() not in ("0", "false")


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
            and r.get("v")
            in (
                "v2",
                "v2beta1",
            )
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


class Handlers:
    def __init__(self, server: SandboxAPIServer) -> None:
        self.server = server
        self.store = server.store
        self.metrics = metrics_api.MetricsAPI(server)

    # ---- entry

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            ident = self.impersonate(request, self.authenticate(request))
            return await self._route(request, ident)
        except ApiError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge:
            return error_response(ApiError(413, "RequestEntityTooLarge", "the request body is too large"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the sandbox must never crash on input; report it as the real server would
            self.server.log.error("handler failed", path=request.path, error=repr(exc), exc_info=exc)
            return error_response(ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}"))

    def authenticate(self, request: web.Request) -> Identity:
        auth = request.headers.get("Authorization", "")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            ident = self.server.authenticator.token_identity(token.strip())
            if ident is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            return ident
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        ident = identity_from_peercert(peer)
        return ident or ANONYMOUS_IDENTITY

    def impersonate(self, request: web.Request, ident: Identity) -> Identity:
        """Honour Impersonate-User/-Group (kubectl --as/--as-group) when RBAC allows the impersonate verb."""
        user = request.headers.get("Impersonate-User")
        groups = request.headers.getall("Impersonate-Group", [])
        if not user:
            if groups:
                raise bad_request("impersonating groups requires impersonating a user")
            return ident
        if user.startswith("system:serviceaccount:") and user.count(":") == 3:
            _, _, ns, name = user.split(":")
            self.authorize(ident, Attributes("impersonate", resource="serviceaccounts", namespace=ns, name=name))
        else:
            self.authorize(ident, Attributes("impersonate", resource="users", name=user))
        for g in groups:
            self.authorize(ident, Attributes("impersonate", resource="groups", name=g))
        if user.startswith("system:serviceaccount:") and not groups:
            ns = user.split(":")[2] if user.count(":") == 3 else ""
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        return Identity(user, (*groups, "system:authenticated"))

    def authorize(self, ident: Identity, attrs: Attributes) -> None:
        allowed, _ = self.server.authorizer.authorize(ident, attrs)
        if not allowed:
            msg = self.server.authorizer.forbidden_message(ident, attrs)
            details: dict[str, Any] = {}
            if attrs.is_resource:
                details = {"kind": attrs.resource}
                if attrs.api_group:
                    details["group"] = attrs.api_group
                if attrs.name:
                    details["name"] = attrs.name
                res = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
                msg = f'{res} "{attrs.name}" is forbidden: {msg}' if attrs.name else f"{res} is forbidden: {msg}"
            else:
                msg = f"forbidden: {msg}"
            raise ApiError(403, "Forbidden", msg, details=details or None)

    async def _route(self, request: web.Request, ident: Identity) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        method = request.method
        if not parts or parts[0] not in ("api", "apis") or len(parts) <= (2 if parts[0] == "api" else 3):
            verb = {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "DELETE": "delete"}.get(method, "get")
            self.authorize(ident, Attributes(verb=verb, path=path))
            return await self.non_resource(request, parts)
        target = parse_resource_path(parts)
        return await self.resource(request, ident, target)

    # ---- non-resource

    async def non_resource(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
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
                return json_response(discovery.api_versions(self.server.host_port))
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

    # ---- resources

    def _attrs(self, verb: str, target: Target, ident: Identity) -> Attributes:
        return Attributes(
            verb=verb,
            api_group=target.rt.group,
            resource=target.rt.plural,
            subresource=target.subresource or "",
            namespace=target.namespace or "",
            name=target.name or "",
        )

    async def resource(self, request: web.Request, ident: Identity, t: Target) -> web.StreamResponse:
        m = request.method
        q = request.query
        if t.rt.group == METRICS_GROUP:
            verb = metrics_api.request_verb(m, t.name, q)
            self.authorize(ident, self._attrs(verb, t, ident))
            return json_response(await self.metrics.serve(verb, t, q, table=wants_table(request)))
        if t.subresource in ("log", "exec", "attach", "portforward", "proxy"):
            verb = {
                "GET": "get",
                "HEAD": "get",
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
            }.get(m, "get")
            if t.subresource == "log" and m not in ("GET", "HEAD"):
                raise method_not_allowed()
            self.authorize(ident, self._attrs(verb, t, ident))
            return await self.kubelet_proxy(request, t)
        if t.name is None:
            if m in ("GET", "HEAD"):
                verb = "watch" if truthy(q.get("watch")) else "list"
            elif m == "POST":
                verb = "create"
            elif m == "DELETE":
                verb = "deletecollection"
            else:
                raise method_not_allowed()
        else:
            verb = {
                "GET": "get",
                "HEAD": "get",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
                "POST": "create",
            }.get(m, "")
            if not verb:
                raise method_not_allowed()
            if m == "GET" and truthy(q.get("watch")):
                verb = "watch"
        if verb not in t.rt.verbs and not t.subresource:
            raise method_not_allowed()
        if t.rt.namespaced and t.namespace is None and verb not in ("list", "watch", "create"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self.authorize(ident, self._attrs(verb, t, ident))
        if t.rt.key in (
            "tokenreviews.authentication.k8s.io",
            "subjectaccessreviews.authorization.k8s.io",
            "selfsubjectaccessreviews.authorization.k8s.io",
            "selfsubjectrulesreviews.authorization.k8s.io",
        ):
            return await self.review(request, ident, t)
        if t.rt.plural == "bindings" and t.name is None and m == "POST":
            return await self.pod_binding_or_eviction(request, t)
        if t.subresource == "binding" or t.subresource == "eviction":
            if m != "POST":
                raise method_not_allowed()
            return await self.pod_binding_or_eviction(request, t)
        if t.subresource == "token":
            if m != "POST":
                raise method_not_allowed()
            return await self.token_request(request, t)
        if t.subresource == "scale":
            return await self.scale(request, t)
        if verb == "list":
            return self.list(request, t)
        if verb == "watch":
            return await self.watch(request, t)
        if verb == "get":
            return self.get(request, t)
        if verb == "create":
            if t.rt.namespaced and t.namespace is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return await self.create(request, t, ident)
        if verb == "update":
            return await self.update(request, t)
        if verb == "patch":
            return await self.patch(request, t, ident)
        if verb == "delete":
            return await self.delete(request, t)
        if verb == "deletecollection":
            return await self.delete_collection(request, t)
        raise method_not_allowed()

    def _out(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if rt.group == "events.k8s.io":
            return to_events_v1(obj)
        return obj

    def _in(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if rt.group == "events.k8s.io":
            return from_events_v1(obj)
        return obj

    def _obj_response(
        self, request: web.Request, rt: ResourceType, obj: dict[str, Any], status: int = 200
    ) -> web.Response:
        out = self._out(rt, obj)
        if wants_table(request) and request.method == "GET":
            return json_response(
                tables.table(
                    rt,
                    [out],
                    rv=out["metadata"].get("resourceVersion", ""),
                    include=request.query.get("includeObject", "Metadata"),
                )
            )
        return json_response(out, status=status)

    def get(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = self.store.get(t.rt.key, t.namespace, t.name)
        if obj is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        if t.subresource and t.subresource not in ("status", "approval"):
            raise method_not_allowed()
        if wants_partial(request):
            return json_response(tables.partial(obj))
        return self._obj_response(request, t.rt, obj)

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
        items = [self._out(t.rt, i) for i in items]
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
        return json_response({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version, "metadata": meta, "items": items})

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
        self.server.watches.add(w)
        await resp.prepare(request)
        deadline = time.monotonic() + timeout if timeout is not None else None
        interval = self.server.bookmark_interval
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
                obj = self._out(t.rt, ev["object"])
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
            self.server.watches.discard(w)
        try:
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    async def _decode_object(self, request: web.Request, t: Target) -> dict[str, Any]:
        body, _ = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        self._check_kind(t.rt, body)
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
        return self._in(t.rt, body)

    def _check_kind(self, rt: ResourceType, body: dict[str, Any]) -> None:
        kind = body.get("kind")
        api_version = body.get("apiVersion")
        if kind is not None and not isinstance(kind, str):
            raise bad_request("kind must be a string")
        if kind and kind != rt.kind:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
                if api_version != rt.api_version
                else f'no kind "{kind}" is registered for the endpoint of {rt.kind}'
            )
        if api_version and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
            )

    async def create(self, request: web.Request, t: Target, ident: Identity) -> web.Response:
        if t.subresource:
            raise method_not_allowed()
        obj = await self._decode_object(request, t)
        if t.name is not None:
            raise method_not_allowed()
        if t.rt.key == "certificatesigningrequests.certificates.k8s.io":
            spec = obj.get("spec")
            if isinstance(spec, dict):
                # The real server records who asked, whatever the body says.
                spec["username"] = ident.user
                spec["groups"] = list(ident.groups)
                if ident.uid:
                    spec["uid"] = ident.uid
                else:
                    spec.pop("uid", None)
                if ident.extra:
                    spec["extra"] = ident.extra
        if dry_run(request):
            return self._obj_response(request, t.rt, self.store.create_now(t.rt.key, obj, dry_run=True), status=201)
        created = await self.store.create(t.rt.key, obj)
        return self._obj_response(request, t.rt, created, status=201)

    async def update(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = await self._decode_object(request, t)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != t.name:
            raise bad_request("the name of the object does not match the name on the URL")
        meta["name"] = t.name
        if not t.rt.namespaced:
            meta.pop("namespace", None)
        updated = self.store.update_now(t.rt.key, obj, subresource=t.subresource, dry_run=dry_run(request))
        return self._obj_response(request, t.rt, updated)

    async def patch(self, request: web.Request, t: Target, ident: Identity) -> web.Response:
        assert t.name is not None
        body, ctype = await read_body(request, allow_patch=True)
        existing = self.store.get(t.rt.key, t.namespace, t.name)
        if ctype == patch.APPLY_PATCH:
            if not isinstance(body, dict):
                raise bad_request("apply patch must be an object")
            self._check_kind(t.rt, body)
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
                created = self.store.create_now(t.rt.key, self._in(t.rt, body), dry_run=dry_run(request))
                return self._obj_response(request, t.rt, created, status=201)
        if existing is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        sub = t.subresource

        def fn(current: dict[str, Any]) -> dict[str, Any]:
            doc = self._out(t.rt, current)
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
            new = self._in(t.rt, new)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return new

        updated = self.store.mutate_now(t.rt.key, t.namespace, t.name, fn, subresource=sub, dry_run=dry_run(request))
        return self._obj_response(request, t.rt, updated)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if request.can_read_body:
            raw = await read_raw_body(request)
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise bad_request("the DeleteOptions body could not be decoded") from exc
                if not isinstance(body, dict):
                    raise bad_request("DeleteOptions must be an object")
                opts.update(body)
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError as exc:
                raise bad_request("invalid gracePeriodSeconds") from exc
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q and truthy(q["orphanDependents"]):
            opts["propagationPolicy"] = "Orphan"
        grace = opts.get("gracePeriodSeconds")
        if grace is not None and not isinstance(grace, int):
            raise bad_request("gracePeriodSeconds must be an integer")
        return opts

    async def _delete_one(
        self, rt: ResourceType, ns: str | None, name: str, opts: dict[str, Any], *, dry: bool = False
    ) -> dict[str, Any] | None:
        pre = opts.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise bad_request("preconditions must be an object")
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is True:
            policy = "Orphan"
        return self.store.delete_now(
            rt.key,
            ns,
            name,
            grace_period_seconds=opts.get("gracePeriodSeconds"),
            uid_precondition=pre.get("uid"),
            resource_version_precondition=pre.get("resourceVersion"),
            propagation_policy=policy,
            dry_run=dry,
        )

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        if t.subresource:
            raise method_not_allowed()
        opts = await self._delete_options(request)
        dry = dry_run(request) or _dry_in_options(opts)
        result = await self._delete_one(t.rt, t.namespace, t.name, opts, dry=dry)
        assert result is not None
        still_there = not dry and self.store.get(t.rt.key, t.namespace, t.name) is not None
        out = self._out(t.rt, result)
        if still_there:
            return json_response(out)  # 200 even while grace or finalizers hold it, as the real server
        if t.rt.key in (
            "pods",
            "namespaces",
            "nodes",
            "services",
            "deployments.apps",
            "replicasets.apps",
            "jobs.batch",
            "leases.coordination.k8s.io",
            "configmaps",
            "secrets",
            "serviceaccounts",
            "certificatesigningrequests.certificates.k8s.io",
        ):
            return json_response(out)
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": t.name,
                    "group": t.rt.group,
                    "kind": t.rt.plural,
                    "uid": result["metadata"].get("uid"),
                },
            }
        )

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        items, _ = self.store.list(
            t.rt.key,
            t.namespace,
            label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"),
        )
        out = []
        for item in items:
            meta = item["metadata"]
            try:
                res = await self._delete_one(
                    t.rt, meta.get("namespace"), meta["name"], opts, dry=dry_run(request) or _dry_in_options(opts)
                )
            except ApiError as err:
                if err.code == 404:
                    continue
                raise
            if res is not None:
                out.append(self._out(t.rt, res))
        return json_response(
            {
                "kind": t.rt.list_kind,
                "apiVersion": t.rt.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": out,
            }
        )

    # ---- subresources

    async def pod_binding_or_eviction(self, request: web.Request, t: Target) -> web.Response:
        body, _ = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        raw_meta = body.get("metadata")
        body_meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        name = t.name or str(body_meta.get("name") or "")
        if not name:
            raise bad_request("metadata.name is required in a Binding")
        if t.subresource == "eviction":
            opts = body.get("deleteOptions") or {}
            if not isinstance(opts, dict):
                raise bad_request("deleteOptions must be an object")
            await self._delete_one(t.rt, t.namespace, name, opts)
            return json_response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, status=201
            )
        target = body.get("target")
        if not isinstance(target, dict) or not target.get("name"):
            raise ApiError(
                422,
                "Invalid",
                "Binding is invalid: target.name: Required value",
                details={
                    "kind": "Binding",
                    "name": name,
                    "causes": [{"reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}],
                },
            )
        node = str(target["name"])

        def bind(pod: dict[str, Any]) -> dict[str, Any]:
            if pod["metadata"].get("deletionTimestamp"):
                raise conflict("pods", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                raise conflict("pods", "", name, f'pod {name} is already assigned to node "{current}"')
            want_uid = body_meta.get("uid")
            if want_uid and want_uid != pod["metadata"]["uid"]:
                raise conflict("pods", "", name, "Precondition failed: UID in precondition does not match")
            pod.setdefault("spec", {})["nodeName"] = node
            status = pod.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
            )
            status["conditions"] = conds
            return pod

        await self.store.mutate("pods", t.namespace, name, bind, subresource="binding")
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, status=201
        )

    async def token_request(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None and t.namespace is not None
        body, _ = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        sa = self.store.get("serviceaccounts", t.namespace, t.name)
        if sa is None:
            raise not_found("serviceaccounts", "", t.name)
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise bad_request("spec must be an object")
        exp = spec.get("expirationSeconds") or 3600
        if not isinstance(exp, int) or exp < 600:
            raise ApiError(
                422,
                "Invalid",
                "TokenRequest is invalid: spec.expirationSeconds: Invalid value: may not "
                "specify a duration less than 10 minutes",
                details={
                    "kind": "TokenRequest",
                    "name": t.name,
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec.expirationSeconds",
                            "message": "may not specify a duration less than 10 minutes",
                        }
                    ],
                },
            )
        audiences = spec.get("audiences") or None
        pod = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref.get("kind") == "Pod":
            p = self.store.get("pods", t.namespace, str(ref.get("name", "")))
            if p is None:
                raise not_found("pods", "", str(ref.get("name", "")))
            pod = {"name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}
        token = self.server.signer.mint(
            t.namespace, t.name, sa_uid=sa["metadata"]["uid"], audiences=audiences, expiration_seconds=exp, pod=pod
        )
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": None},
            "spec": {
                "audiences": audiences or ["https://kubernetes.default.svc.cluster.local"],
                "expirationSeconds": exp,
                "boundObjectRef": ref if isinstance(ref, dict) else None,
            },
            "status": {"token": token, "expirationTimestamp": now_rfc3339(exp)},
        }
        return json_response(out, status=201)

    async def scale(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = self.store.get(t.rt.key, t.namespace, t.name)
        if obj is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)

        def to_scale(o: dict[str, Any]) -> dict[str, Any]:
            sel = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            m = o["metadata"]
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m
                },
                "spec": {"replicas": (o.get("spec") or {}).get("replicas", 0)},
                "status": {
                    "replicas": (o.get("status") or {}).get("replicas", 0),
                    "selector": ",".join(f"{k}={v}" for k, v in sel.items()),
                },
            }

        if request.method == "GET":
            return json_response(to_scale(obj))
        if request.method == "PUT":
            body, _ = await read_body(request)
        elif request.method == "PATCH":
            raw, ctype = await read_body(request, allow_patch=True)
            current = to_scale(obj)
            if ctype == patch.JSON_PATCH:
                body = patch.apply_json_patch(current, raw)
            elif ctype == patch.MERGE_PATCH:
                body = patch.json_merge_patch(current, raw)
            else:
                body = patch.strategic_merge(current, raw)
        else:
            raise method_not_allowed()
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise bad_request("a Scale object with spec is required")
        replicas = body["spec"].get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                "Scale is invalid: spec.replicas: must be greater than or equal to 0",
                details={
                    "kind": "Scale",
                    "name": t.name,
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec.replicas",
                            "message": "must be greater than or equal to 0",
                        }
                    ],
                },
            )
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if request.method == "PUT" and want_rv and want_rv != obj["metadata"]["resourceVersion"]:
            raise conflict(
                t.rt.plural,
                t.rt.group,
                t.name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )

        def set_replicas(o: dict[str, Any]) -> dict[str, Any]:
            o.setdefault("spec", {})["replicas"] = replicas
            return o

        updated = await self.store.mutate(t.rt.key, t.namespace, t.name, set_replicas)
        return json_response(to_scale(updated))

    async def review(self, request: web.Request, ident: Identity, t: Target) -> web.Response:
        if request.method != "POST" or t.name is not None:
            raise method_not_allowed()
        body, _ = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        self._check_kind(t.rt, body)
        spec = body.get("spec")
        if not isinstance(spec, dict):
            raise ApiError(
                422,
                "Invalid",
                f"{t.rt.kind} is invalid: spec: Required value",
                details={
                    "kind": t.rt.kind,
                    "causes": [{"reason": "FieldValueRequired", "field": "spec", "message": "Required value"}],
                },
            )
        out: dict[str, Any] = {
            "kind": t.rt.kind,
            "apiVersion": t.rt.api_version,
            "metadata": {"creationTimestamp": None},
            "spec": spec,
        }
        if t.rt.plural == "tokenreviews":
            out["status"] = self.server.token_review(spec)
        elif t.rt.plural == "selfsubjectrulesreviews":
            res, non_res = self.server.authorizer.rules_for(ident, str(spec.get("namespace") or ""))
            out["status"] = {"resourceRules": res, "nonResourceRules": non_res, "incomplete": False}
        else:
            if t.rt.plural == "selfsubjectaccessreviews":
                subject = ident
                spec = dict(spec)
                spec.update({"user": ident.user, "groups": list(ident.groups)})
            else:
                groups = spec.get("groups") or []
                if not isinstance(groups, list) or (not spec.get("user") and not groups):
                    raise ApiError(
                        422,
                        "Invalid",
                        "SubjectAccessReview is invalid: spec.user: Invalid value: "
                        "at least one of user or group must be specified",
                        details={
                            "kind": "SubjectAccessReview",
                            "causes": [
                                {
                                    "reason": "FieldValueInvalid",
                                    "field": "spec.user",
                                    "message": "at least one of user or group must be specified",
                                }
                            ],
                        },
                    )
                subject = Identity(
                    str(spec.get("user") or ""), tuple(str(g) for g in groups), str(spec.get("uid") or "")
                )
            ra = spec.get("resourceAttributes")
            nra = spec.get("nonResourceAttributes")
            if isinstance(ra, dict):
                attrs = Attributes(
                    verb=str(ra.get("verb", "")),
                    api_group=str(ra.get("group", "")),
                    resource=str(ra.get("resource", "")),
                    subresource=str(ra.get("subresource", "")),
                    namespace=str(ra.get("namespace", "")),
                    name=str(ra.get("name", "")),
                )
            elif isinstance(nra, dict):
                attrs = Attributes(verb=str(nra.get("verb", "")), path=str(nra.get("path", "")))
            else:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{t.rt.kind} is invalid: spec.resourceAttributes: Required value",
                    details={
                        "kind": t.rt.kind,
                        "causes": [
                            {
                                "reason": "FieldValueRequired",
                                "field": "spec.resourceAttributes",
                                "message": "exactly one of nonResourceAttributes or resourceAttributes must "
                                "be specified",
                            }
                        ],
                    },
                )
            allowed, reason = self.server.authorizer.authorize(subject, attrs)
            out["status"] = {"allowed": allowed}
            if reason:
                out["status"]["reason"] = reason
        return json_response(out, status=201)

    async def kubelet_proxy(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        if t.rt.key == "nodes":
            node = self.store.get("nodes", None, t.name)
            if node is None:
                raise not_found("nodes", "", t.name)
            path_qs = "/" + t.rest
            if request.query:
                path_qs += "?" + _encoded_query(request)
            return await self._proxy(request, node, path_qs)
        pod = self.store.get("pods", t.namespace, t.name)
        if pod is None:
            raise not_found("pods", "", t.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {t.name} does not have a host assigned")
        node = self.store.get("nodes", None, node_name)
        if node is None:
            raise not_found("nodes", "", node_name)
        ns, name = quote(t.namespace or "", safe=""), quote(t.name, safe="")
        qs = _encoded_query(request)
        if t.subresource == "portforward":
            path_qs = f"/portForward/{ns}/{name}" + (f"?{qs}" if qs else "")
            return await self._proxy(request, node, path_qs)
        container = request.query.get("container") or default_container(pod)
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        names += [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
        names += [c.get("name") for c in (pod.get("spec") or {}).get("ephemeralContainers") or []]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {t.name}")
        prefix = {"log": "containerLogs", "exec": "exec", "attach": "attach"}[t.subresource or "log"]
        path_qs = f"/{prefix}/{ns}/{name}/{quote(container, safe='')}" + (f"?{qs}" if qs else "")
        return await self._proxy(request, node, path_qs)

    async def _proxy(self, request: web.Request, node: dict[str, Any], path_qs: str) -> web.StreamResponse:
        try:
            from vk_sandbox.apiserver import proxy
        except ModuleNotFoundError as exc:
            raise ApiError(503, "ServiceUnavailable", "the kubelet proxy is not available in this build") from exc
        fn: Callable[..., Awaitable[web.StreamResponse]] = proxy.proxy_to_kubelet
        return await fn(request, node=node, path_qs=path_qs, ssl_context=self.server.kubelet_client_ssl)


def _encoded_query(request: web.Request) -> str:
    """The query string, re-encoded from its parsed pairs as the real server does (exec args may hold spaces)."""
    return urlencode(list(request.query.items()), quote_via=quote)


def default_container(pod: dict[str, Any]) -> str:
    """The annotation kubectl.kubernetes.io/default-container, else the first container."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    name = annotations.get("kubectl.kubernetes.io/default-container")
    if name:
        return str(name)
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0].get("name", "")) if containers else ""
