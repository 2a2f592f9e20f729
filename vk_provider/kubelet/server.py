"""The kubelet HTTPS API: routes, authn/authz, error mapping, lifecycle.

Handlers are thin: they resolve the pod, parse the query, and hand over to the backend
(``PodStreams``) and the protocol modules. Errors become HTTP codes in one place (the middleware):
NotFound 404, InvalidInput 400, NotSupported 501, any other provider error 500, each with a
``metav1.Status`` body.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import structlog
from aiohttp import web

from vk_provider import jsoncodec
from vk_provider.errors import InvalidInput, NotFound, NotSupported, ProviderError
from vk_provider.kubelet import portforward, remotecommand
from vk_provider.kubelet.auth import Authenticator, Authorizer, request_attributes
from vk_provider.kubelet.cleanup import cancel_and_wait, release
from vk_provider.kubelet.logs import parse_log_options
from vk_provider.kubelet.remotecommand import status_response
from vk_provider.kubelet.stats import build_summary, render_resource_metrics
from vk_provider.kubelet.tls import ServingTLS
from vk_provider.metrics import KUBELET_REQUESTS, KUBELET_STREAMS
from vk_provider.provider import ExecSession, Pod, PodLookup, PodStreams
from vk_provider.settings import KubeletSettings

log = structlog.get_logger("vk_provider.kubelet")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FIRST_CHUNK_WAIT = 1.0  # logs -f: how long headers wait for a first chunk (to answer early errors properly)
WS_CLOSE_TIMEOUT = 2.0  # how long a closing WebSocket waits for the client's close reply


def _route_name(request: web.Request) -> str:
    info = request.match_info
    if isinstance(info, web.UrlMappingMatchInfo) and info.route.resource is not None:
        name = info.route.resource.canonical.split("/")
        return name[1] if len(name) > 1 and name[1] else "root"
    return "unknown"


def _pod_containers(pod: Pod) -> set[str]:
    spec = pod.get("spec") or {}
    names: set[str] = set()
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict) and c.get("name"):
                names.add(c["name"])
    return names


def _upgrade_kind(request: web.Request) -> str | None:
    upgrade = request.headers.get("Upgrade", "").lower()
    if "websocket" in upgrade:
        return "websocket"
    if upgrade.startswith("spdy/3.1"):
        return "spdy"
    return None


class KubeletServer:
    """The kubelet API as a component: ``await start()`` binds (then ``port`` is real), ``await stop()``."""

    def __init__(
        self,
        settings: KubeletSettings,
        *,
        node_name: str,
        node_addresses: list[str],
        pods: PodLookup,
        streams: PodStreams,
        api: Any,
        client_ca_pem: bytes | None = None,
    ) -> None:
        self.settings = settings
        self.node_name = node_name
        self.pods = pods
        self.streams = streams
        self.tls = ServingTLS(
            settings, node_name=node_name, addresses=node_addresses, api=api, client_ca_pem=client_ca_pem
        )
        self.authn = Authenticator(api, anonymous=settings.anonymous_auth, cache_ttl=settings.authn_cache_ttl_seconds)
        self.authz = Authorizer(
            api,
            node_name,
            allow_ttl=settings.authz_allow_ttl_seconds,
            deny_ttl=settings.authz_deny_ttl_seconds,
        )
        self.port = 0
        self.started_at = dt.datetime.now(dt.UTC)
        self._runner: web.AppRunner | None = None
        self._active: set[asyncio.Task[Any]] = set()

    @property
    def ready(self) -> bool:
        return self.tls.ready

    # -- lifecycle -------------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/pods", self._list_pods)
        r.add_get("/runningpods/", self._running_pods)
        r.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        for verb in ("GET", "POST"):
            r.add_route(verb, "/exec/{namespace}/{pod}/{container}", self._exec)
            r.add_route(verb, "/attach/{namespace}/{pod}/{container}", self._attach)
            r.add_route(verb, "/portForward/{namespace}/{pod}", self._port_forward)
        r.add_get("/stats/summary", self._stats_summary)
        r.add_get("/metrics/resource", self._metrics_resource)
        return app

    async def start(self) -> None:
        await self.tls.start()
        # handler_cancellation: a client that goes away cancels its handler, which releases the
        # backend's resources (log iterators, exec sessions) in the handlers' finally blocks.
        self._runner = web.AppRunner(
            self.make_app(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self.settings.shutdown_timeout_seconds,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.settings.bind_address,
            self.settings.port,
            ssl_context=self.tls.context,
        )
        await site.start()
        server = site._server  # aiohttp keeps the asyncio server here; we need the bound port
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("kubelet API listening", address=self.settings.bind_address, port=self.port)

    async def stop(self) -> None:
        for task in list(self._active):
            task.cancel()
        if self._active:
            await asyncio.wait(list(self._active), timeout=max(1.0, self.settings.shutdown_timeout_seconds))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.tls.stop()

    # -- middleware: authn, authz, error mapping, metrics ---------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = _route_name(request)
        code = 500
        try:
            resp = await self._guarded(request, handler)
            code = resp.status
            return resp
        except web.HTTPException as exc:
            code = exc.status
            if exc.status >= 400:
                return status_response(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
            raise
        finally:
            KUBELET_REQUESTS.labels(route, str(code)).inc()

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        peercert = request.transport.get_extra_info("peercert") if request.transport is not None else None
        user = await self.authn.authenticate(peercert, request.headers.get("Authorization"))
        if user is None:
            return status_response(401, "Unauthorized", "Unauthorized")
        verb, subresource = request_attributes(request.method, request.path)
        if not await self.authz.authorize(user, verb, subresource):
            return status_response(
                403,
                "Forbidden",
                f"Forbidden (user={user.name}, verb={verb}, resource=nodes, subresource={subresource})",
            )
        try:
            return await handler(request)
        except NotFound as exc:
            return status_response(404, "NotFound", exc.message)
        except InvalidInput as exc:
            return status_response(400, "BadRequest", exc.message)
        except NotSupported as exc:
            return status_response(501, "NotImplemented", exc.message)
        except ProviderError as exc:
            log.warning("kubelet request failed", path=request.path, error=exc.message)
            return status_response(500, "InternalError", exc.message)
        except (web.HTTPException, ConnectionError):
            raise
        except Exception as exc:
            # A bug or an unexpected client library error: answer like the kubelet (500 Status), keep serving.
            log.error("kubelet request crashed", path=request.path, error=repr(exc), exc_info=exc)
            return status_response(500, "InternalError", f"internal error: {type(exc).__name__}")

    # -- helpers ---------------------------------------------------------------------------------
    def _pod(self, request: web.Request, *, container: bool = True) -> tuple[Pod, str]:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self.pods.cached_pod(ns, name)
        if pod is None:
            raise NotFound(f'pods "{name}" not found in namespace "{ns}"')
        if not container:
            return pod, ""
        cname = request.match_info["container"]
        if cname not in _pod_containers(pod):
            raise NotFound(f'container "{cname}" not found in pod "{ns}/{name}"')
        return pod, cname

    @contextlib.contextmanager
    def _track(self, kind: str) -> Iterator[None]:
        """Count an open stream and let stop() find (and cancel) the handler serving it."""
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        KUBELET_STREAMS.labels(kind).inc()
        try:
            yield
        finally:
            KUBELET_STREAMS.labels(kind).dec()
            if task is not None:
                self._active.discard(task)

    # -- routes ----------------------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _list_pods(self, request: web.Request) -> web.StreamResponse:
        items = list(self.pods.cached_pods())
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def _running_pods(self, request: web.Request) -> web.StreamResponse:
        # Like the kubelet's runtime view: only pods with running containers, only identity and containers.
        items = []
        for pod in self.pods.cached_pods():
            status = pod.get("status") or {}
            if status.get("phase") != "Running":
                continue
            meta = pod.get("metadata") or {}
            items.append(
                {
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta},
                    "spec": {
                        "containers": [
                            {"name": c.get("name"), "image": c.get("image")}
                            for c in (pod.get("spec") or {}).get("containers") or []
                        ]
                    },
                    "status": {},
                }
            )
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        pod, container = self._pod(request)
        opts = parse_log_options(request.query)
        iterator: AsyncIterator[bytes] = aiter(self.streams.container_logs(pod, container, opts))
        remaining = opts.limit_bytes
        resp: web.StreamResponse | None = None
        first: asyncio.Task[bytes] = asyncio.ensure_future(anext(iterator))
        with self._track("logs"):
            try:
                # Without follow there is no reason to answer before the backend has: errors keep their code.
                done, _ = await asyncio.wait({first}, timeout=FIRST_CHUNK_WAIT if opts.follow else None)
                if done and first.exception() is not None:
                    exc = first.exception()
                    if isinstance(exc, StopAsyncIteration):
                        return web.Response(body=b"", content_type="text/plain")
                    assert exc is not None
                    raise exc
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                try:
                    chunk = await first
                except StopAsyncIteration:
                    await resp.write_eof()
                    return resp
                while True:
                    if remaining is not None:
                        chunk = chunk[:remaining]
                        remaining -= len(chunk)
                    if chunk:
                        await resp.write(chunk)
                    if remaining is not None and remaining <= 0:
                        break
                    try:
                        chunk = await anext(iterator)
                    except StopAsyncIteration:
                        break
                await resp.write_eof()
                return resp
            except ProviderError:
                if resp is None:
                    raise
                log.warning("log stream ended by a backend error", path=request.path)
                return resp
            except (ConnectionError, asyncio.CancelledError):
                log.debug("log client went away", path=request.path)
                raise
            finally:
                # The first read may still be pending (client left early): stop it before closing the
                # iterator, which cannot be closed while a read is running.
                steps: list[Callable[[], Awaitable[object]]] = [lambda: cancel_and_wait(first)]
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    steps.append(aclose)
                await release(*steps)

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, attach=False)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, attach=True)

    async def _remote_command(self, request: web.Request, *, attach: bool) -> web.StreamResponse:
        kind = _upgrade_kind(request)
        if kind is None:
            raise InvalidInput("an upgrade to SPDY/3.1 or websocket is required")
        opts = remotecommand.parse_stream_options(request.query, needs_command=not attach)
        pod, container = self._pod(request)

        async def open_session() -> ExecSession:
            if attach:
                return await self.streams.attach(pod, container, stdin=opts.stdin, tty=opts.tty)
            return await self.streams.exec(pod, container, list(opts.command), stdin=opts.stdin, tty=opts.tty)

        label = "attach" if attach else "exec"
        if kind == "spdy":
            offered = remotecommand.offered_protocols(request.headers)
            protocol = remotecommand.negotiate(offered, remotecommand.SPDY_PROTOCOLS) if offered else "channel.k8s.io"
            if protocol is None:
                return remotecommand.refuse_protocols(remotecommand.SPDY_PROTOCOLS)
            session = await open_session()
            with self._track(label):
                return await remotecommand.serve_spdy(
                    request, session, opts, protocol, timeout=self.settings.stream_creation_timeout_seconds
                )
        ws = web.WebSocketResponse(protocols=remotecommand.WS_PROTOCOLS, max_msg_size=0, timeout=WS_CLOSE_TIMEOUT)
        offered = remotecommand.offered_protocols(request.headers, "Sec-WebSocket-Protocol")
        ready = ws.can_prepare(request)
        if not ready.ok:
            raise InvalidInput("invalid websocket handshake")
        if offered and ready.protocol is None:
            return remotecommand.refuse_protocols(remotecommand.WS_PROTOCOLS)
        session = await open_session()
        try:
            await ws.prepare(request)
        except BaseException:
            await session.close()
            raise
        with self._track(label):
            return await remotecommand.serve_websocket(request, session, opts, ws)

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        kind = _upgrade_kind(request)
        if kind is None:
            raise InvalidInput("an upgrade to SPDY/3.1 or websocket is required")
        pod, _ = self._pod(request, container=False)

        async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await self.streams.port_forward(pod, port)

        if kind == "spdy":
            offered = remotecommand.offered_protocols(request.headers)
            protocol = portforward.SPDY_PROTOCOLS[0]
            if offered and remotecommand.negotiate(offered, portforward.SPDY_PROTOCOLS) is None:
                return remotecommand.refuse_protocols(portforward.SPDY_PROTOCOLS)
            with self._track("port-forward"):
                return await portforward.serve_spdy(request, dial, protocol)
        ports = portforward.parse_ports(request.query)
        offered = remotecommand.offered_protocols(request.headers, "Sec-WebSocket-Protocol")
        ws = web.WebSocketResponse(protocols=portforward.WS_PROTOCOLS, max_msg_size=0, timeout=WS_CLOSE_TIMEOUT)
        ready = ws.can_prepare(request)
        if not ready.ok:
            raise InvalidInput("invalid websocket handshake")
        if offered and ready.protocol is None:
            # e.g. kubectl's "SPDY/3.1+portforward.k8s.io" tunnel: refusing the upgrade makes it fall back to SPDY.
            return remotecommand.refuse_protocols(
                portforward.WS_PROTOCOLS, "tunnelled SPDY over websocket is not supported"
            )
        await ws.prepare(request)
        with self._track("port-forward"):
            await portforward.serve_websocket(request, dial, ports, ws)
        return ws

    async def _stats_summary(self, request: web.Request) -> web.StreamResponse:
        usage = await self.streams.pod_usage()
        now = dt.datetime.now(dt.UTC)
        body = build_summary(self.node_name, self.started_at, usage, now)
        return web.Response(body=jsoncodec.dumps(body), content_type="application/json")

    async def _metrics_resource(self, request: web.Request) -> web.StreamResponse:
        try:
            usage = await self.streams.pod_usage()
        except ProviderError as exc:
            log.warning("resource metrics scrape failed", error=exc.message)
            usage = None
        text = render_resource_metrics(usage, dt.datetime.now(dt.UTC))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
