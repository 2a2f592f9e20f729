"""The one aiohttp handler: authenticate, resolve the verb, authorize, and hand the request to its module."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import web

from vk_sandbox.apiserver.auth import Attributes, Identity
from vk_sandbox.apiserver.context import AccessContext, KubeletContext, ReadContext, SubresourceContext
from vk_sandbox.apiserver.errors import ApiError, method_not_allowed
from vk_sandbox.apiserver.handlers import kubelet
from vk_sandbox.apiserver.handlers.access import RequestAccess
from vk_sandbox.apiserver.handlers.deletes import Deletes
from vk_sandbox.apiserver.handlers.kubelet import KubeletProxy
from vk_sandbox.apiserver.handlers.nonresource import non_resource
from vk_sandbox.apiserver.handlers.reads import Reads
from vk_sandbox.apiserver.handlers.request import Target, parse_resource_path, truthy
from vk_sandbox.apiserver.handlers.response import error_response, json_response, wants_table
from vk_sandbox.apiserver.handlers.reviews import REVIEWS, Reviews
from vk_sandbox.apiserver.handlers.subresources import Subresources
from vk_sandbox.apiserver.handlers.writes import Writes
from vk_sandbox.apiserver.metrics_api import MetricsAPI, request_verb
from vk_sandbox.apiserver.resources import METRICS_GROUP

log = structlog.get_logger("vk_sandbox.apiserver")

# The RBAC verb of an HTTP method on a non-resource path, and on a named object (a collection's are list or watch,
# create and deletecollection).
_PATH_VERBS = {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "DELETE": "delete"}
_OBJECT_VERBS = {"GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}


def _attrs(verb: str, t: Target) -> Attributes:
    return Attributes(
        verb=verb,
        api_group=t.rt.group,
        resource=t.rt.plural,
        subresource=t.subresource or "",
        namespace=t.namespace or "",
        name=t.name or "",
    )


def _verb(method: str, t: Target, watch: bool) -> str:
    if t.name is None:
        if method in ("GET", "HEAD"):
            return "watch" if watch else "list"
        if method == "POST":
            return "create"
        if method == "DELETE":
            return "deletecollection"
        raise method_not_allowed()
    verb = _OBJECT_VERBS.get(method, "")
    if not verb:
        raise method_not_allowed()
    return "watch" if method == "GET" and watch else verb


class Router:
    def __init__(
        self,
        *,
        access: AccessContext,
        reads: ReadContext,
        subresources: SubresourceContext,
        kubelets: KubeletContext,
        address: Callable[[], str],
        write_requests: dict[str, int] | None = None,
        requests: dict[str, int] | None = None,
    ) -> None:
        self.address = address
        # Authenticated requests with a writing verb, by user, allowed or not (the server's write_requests), and
        # all authenticated requests by user (its requests).
        self.write_requests = write_requests if write_requests is not None else {}
        self.requests = requests if requests is not None else {}
        self.access = RequestAccess(access)
        self.reads = Reads(reads)
        self.writes = Writes(reads.store)
        self.deletes = Deletes(reads.store)
        self.subresources = Subresources(subresources)
        self.reviews = Reviews(access)
        self.kubelet = KubeletProxy(kubelets)
        self.metrics = MetricsAPI(kubelets)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            ident = self.access.identify(request)
            self.requests[ident.user] = self.requests.get(ident.user, 0) + 1
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                self.write_requests[ident.user] = self.write_requests.get(ident.user, 0) + 1
            return await self._route(request, ident)
        except ApiError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge:
            return error_response(ApiError(413, "RequestEntityTooLarge", "the request body is too large"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the sandbox must never crash on input; report it as the real server would
            log.error("handler failed", path=request.path, error=repr(exc), exc_info=exc)
            return error_response(ApiError(500, "InternalError", f"Internal error occurred: {type(exc).__name__}"))

    async def _route(self, request: web.Request, ident: Identity) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis") or len(parts) <= (2 if parts[0] == "api" else 3):
            verb = _PATH_VERBS.get(request.method, "get")
            self.access.authorize(ident, Attributes(verb=verb, path=path))
            return non_resource(request, parts, self.address())
        return await self._resource(request, ident, parse_resource_path(parts))

    async def _resource(self, request: web.Request, ident: Identity, t: Target) -> web.StreamResponse:
        m = request.method
        q = request.query
        if t.rt.group == METRICS_GROUP:
            verb = request_verb(m, t.name, q)
            self.access.authorize(ident, _attrs(verb, t))
            return json_response(await self.metrics.serve(verb, t, q, table=wants_table(request)))
        if t.subresource in kubelet.SUBRESOURCES:
            if t.subresource == "log" and m not in ("GET", "HEAD"):
                raise method_not_allowed()
            self.access.authorize(ident, _attrs(_OBJECT_VERBS.get(m, "get"), t))
            return await self.kubelet.handle(request, t)
        verb = _verb(m, t, truthy(q.get("watch")))
        if verb not in t.rt.verbs and not t.subresource:
            raise method_not_allowed()
        if t.rt.namespaced and t.namespace is None and verb not in ("list", "watch", "create"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self.access.authorize(ident, _attrs(verb, t))
        if t.rt.key in REVIEWS:
            return await self.reviews.review(request, ident, t)
        if t.rt.plural == "bindings" and t.name is None and m == "POST":
            return await self.subresources.binding(request, t)
        if t.subresource in ("binding", "eviction", "token", "scale"):
            return await self._subresource(request, t)
        if verb == "list":
            return self.reads.list(request, t)
        if verb == "watch":
            return await self.reads.watch(request, t)
        if verb == "get":
            return self.reads.get(request, t)
        if verb == "create":
            if t.rt.namespaced and t.namespace is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return await self.writes.create(request, t, ident)
        if verb == "update":
            return await self.writes.update(request, t, ident)
        if verb == "patch":
            return await self.writes.patch(request, t, ident)
        if verb == "delete":
            return await self.deletes.delete(request, t)
        if verb == "deletecollection":
            return await self.deletes.delete_collection(request, t)
        raise method_not_allowed()

    async def _subresource(self, request: web.Request, t: Target) -> web.Response:
        """Subresources with a handler of their own (status and approval are served by the verbs)."""
        if t.subresource == "scale":
            return await self.subresources.scale(request, t)
        if request.method != "POST":
            raise method_not_allowed()
        if t.subresource == "eviction":
            return await self.subresources.eviction(request, t)
        if t.subresource == "binding":
            return await self.subresources.binding(request, t)
        return await self.subresources.token_request(request, t)
