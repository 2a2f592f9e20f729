"""The simulator's HTTP server: the RPC endpoint at ``/``, plus ``/_sim/faults``, ``/_sim/stats``,
``/_sim/transitions`` and exec WebSockets at ``/_sim/exec/<token>``. ``ECISimulator`` runs it in-process."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import structlog
from aiohttp import web

from vk_sandbox.eci import exec_ws
from vk_sandbox.eci.actions import Actions
from vk_sandbox.eci.engine import LATENCY_PROFILES, Engine, Runtime
from vk_sandbox.eci.faults import Faults
from vk_sandbox.eci.store import Store
from vk_sandbox.eci.wire import ApiError, NonceCache, Params, error_body, missing, request_id, verify

log = structlog.get_logger("vk_sandbox.eci")
API_VERSION = "2018-08-08"
# ECI publishes no size limit for a request. These are assumptions, generous where aiohttp's defaults (an
# 8 KB request line) would refuse what the service is not known to refuse; docs/sandbox-eci.md says so.
MAX_REQUEST_LINE_BYTES = 64 << 10
MAX_BODY_BYTES = 8 << 20


def generate_access_key() -> tuple[str, str]:
    alphabet = string.ascii_letters + string.digits
    key_id = "LTAIsim" + "".join(secrets.choice(alphabet) for _ in range(17))
    return key_id, secrets.token_urlsafe(22)


class ECISimulator:
    """An ECI OpenAPI service on 127.0.0.1 that the real SDK talks to unchanged.

    ``async with ECISimulator(directory=..., runtime="process"|"virtual") as sim:`` then point the SDK at
    ``sim.endpoint`` with ``sim.access_key_id`` / ``sim.access_key_secret``.
    """

    def __init__(
        self,
        *,
        directory: Path | str,
        runtime: Literal["process", "virtual"] | str = "process",
        port: int = 0,
        region: str = "cn-hangzhou",
        access_keys: dict[str, str] | None = None,
        latency_profile: str = "fast",
        faults: dict[str, Any] | None = None,
        exec_options: exec_ws.ExecOptions | None = None,
    ) -> None:
        if runtime not in ("process", "virtual"):
            raise ValueError(f"unknown runtime {runtime!r} (process or virtual)")
        if latency_profile not in LATENCY_PROFILES:
            raise ValueError(f"unknown latency profile {latency_profile!r} ({', '.join(LATENCY_PROFILES)})")
        self.directory = Path(directory)
        self.runtime_name = runtime
        self.port = port
        self.region = region
        if not access_keys:
            key_id, secret = generate_access_key()
            access_keys = {key_id: secret}
        self.access_keys = dict(access_keys)
        self.access_key_id, self.access_key_secret = next(iter(self.access_keys.items()))
        self.latency_profile = latency_profile
        self.exec_options = exec_options or exec_ws.ExecOptions()
        self.faults = Faults()
        if faults:
            self.faults.update(faults)
        self.nonces = NonceCache()
        self.calls: dict[str, int] = {}
        self.calls_by_key: dict[str, dict[str, int]] = {}  # AccessKeyId -> action -> accepted calls
        self.errors: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._engine: Engine | None = None
        self._actions: Actions | None = None
        self._ws: set[web.WebSocketResponse] = set()
        self.endpoint = ""

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the simulator is not started"
        return self._engine

    async def __aenter__(self) -> ECISimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        runtime: Runtime
        if self.runtime_name == "process":
            from vk_sandbox.eci.process import ProcessRuntime

            runtime = ProcessRuntime(self.directory)
        else:
            from vk_sandbox.eci.virtual import VirtualRuntime

            runtime = VirtualRuntime()
        store = Store(self.directory / "eci-sim.sqlite3")
        self._engine = Engine(store, runtime, self.faults, LATENCY_PROFILES[self.latency_profile])
        self._actions = Actions(self._engine, self.region, lambda: self.endpoint)
        self._engine.zone_for = self._actions.zone_for
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/", self._rpc)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_get("/_sim/transitions", self._transitions)
        app.router.add_get("/_sim/faults", self._get_faults)
        app.router.add_post("/_sim/faults", self._post_faults)
        app.router.add_get("/_sim/exec/{token}", self._exec_ws)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1,
            max_line_size=MAX_REQUEST_LINE_BYTES,
            max_field_size=MAX_REQUEST_LINE_BYTES,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # the listening sockets, whatever the loop's server class
        assert sockets, "the simulator's site has no listening socket"
        self.port = sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        await self._engine.open()
        log.info("eci simulator listening", endpoint=self.endpoint, runtime=self.runtime_name)

    async def stop(self) -> None:
        for ws in list(self._ws):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._engine is not None:
            await self._engine.close()
            self._engine.store.close()
            self._engine = None

    # ---- faults and stats ---------------------------------------------------------------------

    async def set_faults(self, data: dict[str, Any]) -> dict[str, Any]:
        """Apply the JSON of ``POST /_sim/faults``: standing faults merge, one-shot faults act now."""
        data = dict(data)
        spot = data.pop("spot_reclaim", None)
        crash = data.pop("crash", None)
        expire = data.pop("expire", None)
        self.faults.update(data)
        eng = self.engine
        if spot is not None:
            notice = float(spot.get("notice_seconds", 1.0))
            ids = spot.get("group_ids") or [g.id for g in eng.groups.values() if g.spot_strategy != "NoSpot"]
            for gid in ids:
                group = eng.groups.get(gid)
                if group is None:
                    raise ValueError(f"no container group {gid}")
                eng.reclaim_spot(group, notice)
        if crash is not None:
            group = eng.groups.get(str(crash.get("group_id")))
            if group is None:
                raise ValueError(f"no container group {crash.get('group_id')}")
            container = str(crash.get("container") or group.containers[0].name)
            if group.status_of(container) is None:
                raise ValueError(f"group {group.id} has no container {container}")
            group.add_event("Crashed", f"Container {container} crashed (injected fault).", warning=True)
            eng.runtime.crash(group, container, int(crash.get("exit_code", 137)))
        if expire is not None:
            for gid in expire.get("group_ids", []):
                group = eng.groups.get(gid)
                if group is None:
                    raise ValueError(f"no container group {gid}")
                eng.expire(group)
        return self.faults.config.model_dump()

    def stats(self) -> dict[str, Any]:
        groups: dict[str, int] = {}
        for g in self.engine.groups.values():
            groups[g.status] = groups.get(g.status, 0) + 1
        return {
            "calls": dict(self.calls),
            "calls_by_key": {k: dict(v) for k, v in self.calls_by_key.items()},
            "errors": dict(self.errors),
            "faults_injected": dict(self.faults.injected),
            "groups": groups,
            "total_groups": len(self.engine.groups),
        }

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def transitions(self) -> dict[str, Any]:
        """When each group was created, first entered each status, and was gone (Unix seconds)."""
        return {"transitions": dict(self.engine.transitions)}

    async def _transitions(self, request: web.Request) -> web.Response:
        return web.json_response(self.transitions())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.config.model_dump())

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return web.json_response(await self.set_faults(data))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    # ---- the RPC endpoint ---------------------------------------------------------------------

    async def _rpc(self, request: web.Request) -> web.Response:
        rid = request_id()
        params = {k: v for k, v in request.query.items()}
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        action = params.get("Action", "")
        try:
            if request.method not in ("GET", "POST"):
                raise ApiError("UnsupportedHTTPMethod", f"HTTP method {request.method} is not supported.", 400)
            if not action:
                raise missing("Action")
            handler = self._actions.handlers.get(action) if self._actions else None
            if handler is None or params.get("Version") != API_VERSION:
                raise ApiError(
                    "InvalidAction.NotFound", "Specified api is not found, please check your url and method.", 404
                )
            key_id = verify(request.method, params, self.access_keys, self.nonces, now=self.faults.now())
            self.calls[action] = self.calls.get(action, 0) + 1
            by_key = self.calls_by_key.setdefault(key_id, {})
            by_key[action] = by_key.get(action, 0) + 1
            delay = self.faults.latency_for(action)
            if delay:
                await asyncio.sleep(delay)
            self.faults.check(action)
            body = await handler(Params(params))
        except ApiError as err:
            self.errors[err.code] = self.errors.get(err.code, 0) + 1
            return web.json_response(error_body(err, rid), status=err.status, headers=self._date())
        except Exception as exc:
            log.error("eci simulator action failed", action=action, error=repr(exc), exc_info=exc)
            internal = ApiError("InternalError", "The request processing has failed due to some unknown error.", 500)
            self.errors[internal.code] = self.errors.get(internal.code, 0) + 1
            return web.json_response(error_body(internal, rid), status=500, headers=self._date())
        return web.json_response({"RequestId": rid, **body}, headers=self._date())

    def _date(self) -> dict[str, str]:
        """The HTTP Date header from the simulator's clock (moved by the ``clock_offset_seconds`` fault)."""
        return {"Date": formatdate(self.faults.now(), usegmt=True)}

    # ---- exec ---------------------------------------------------------------------------------

    async def _exec_ws(self, request: web.Request) -> web.StreamResponse:
        assert self._actions is not None
        if request.headers.get("Upgrade", "").lower() != "websocket":
            # Plain HTTP (e.g. HttpUrl fetched directly) must not burn the one-time token.
            return web.json_response({"error": "this URL speaks WebSocket only"}, status=400)
        ticket = self._actions.take_ticket(request.match_info["token"])
        if ticket is None:
            return web.json_response({"error": "unknown, used or expired exec token"}, status=404)
        try:
            group = self.engine.groups.get(ticket.group_id)
            return await exec_ws.serve(request, ticket, group, self.engine.runtime, self.exec_options, self._ws.add)
        finally:
            self._ws = {ws for ws in self._ws if not ws.closed}
