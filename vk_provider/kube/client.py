"""Kubernetes access: a kubernetes_asyncio ApiClient (kubeconfig or in-cluster) and a raw-JSON wrapper.

The controllers keep Kubernetes objects as plain JSON dicts (what a watch delivers): at 10k pods the
generated models cost far more memory and CPU than dicts. ``KubeAPI`` therefore sends requests through
the ApiClient's own aiohttp session (its TLS set-up and connection pool) with the ApiClient's auth
(``update_params_for_auth``: the bearer token, refreshed by the client when its kubeconfig says so)
and default headers, and encodes and parses the JSON itself. It skips ``ApiClient.call_api``: that walks
every body and header through ``sanitize_for_serialization`` (meant for generated models) and re-checks
the content type with a regex on every request (about 7 % of the daemon's CPU in a burst of pods, py-spy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from vk_provider import jsoncodec
from vk_provider.log import redact_text
from vk_provider.settings import KubeSettings

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeError(Exception):
    """A non-2xx answer of the API server, parsed from its metav1.Status body."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


async def create_api_client(settings: KubeSettings) -> k8s_client.ApiClient:
    """An ApiClient from ``settings.kubeconfig`` (and context), or from the in-cluster service account."""
    cfg = k8s_client.Configuration()
    if settings.kubeconfig is not None:
        await k8s_config.load_kube_config(
            config_file=str(settings.kubeconfig), context=settings.context, client_configuration=cfg
        )
    else:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    # Loopback servers must never go through a proxy picked up from the environment.
    cfg.proxy = None
    api = k8s_client.ApiClient(configuration=cfg)
    # kubernetes_asyncio opens its aiohttp session with trust_env=True: every request then looks up
    # ~/.netrc and the *_PROXY variables in a worker thread (two executor trips; about a fifth of the
    # daemon's CPU in a burst of pods) and would send API calls through an environment proxy. Requests
    # carry their own bearer token and no proxy, so neither lookup is wanted.
    api.rest_client.pool_manager._trust_env = False
    return api


def now_rfc3339() -> str:
    """Seconds-precision RFC 3339 UTC, the form of metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """Microsecond RFC 3339 UTC, the form of metav1.MicroTime (Lease renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class KubeAPI:
    """Raw JSON requests over an ApiClient's authenticated session.

    With a ``write_gate`` (the daemon's ``Fence.check``: only the leader writes) every verb but GET
    passes it first; it raises to refuse the request. The leader election uses a KubeAPI without one.
    """

    def __init__(
        self,
        api: k8s_client.ApiClient,
        *,
        timeout: float = 30.0,
        write_gate: Callable[[str, str], None] | None = None,
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.write_gate = write_gate
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | None,
    ) -> aiohttp.ClientResponse:
        """One request through the ApiClient's session, with its auth and default headers; the answer
        unread (the caller reads and releases it)."""
        api = self.api
        headers = {**api.default_headers, "Accept": "application/json", "Content-Type": content_type}
        if api.cookie:
            headers["Cookie"] = api.cookie
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        await api.update_params_for_auth(headers, params, ["BearerToken"])
        url = f"{api.configuration.host}{path}"
        if params:
            url += "?" + urlencode(params)
        seconds = timeout if timeout is not None else self.timeout
        client_timeout = self._timeouts.get(seconds)
        if client_timeout is None:
            client_timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        rest = api.rest_client  # no proxy: create_api_client turns it off
        data = None if body is None else body if isinstance(body, bytes) else jsoncodec.dumps(body)
        session: aiohttp.ClientSession = rest.pool_manager
        return await session.request(
            method,
            url,
            data=data,
            headers=headers,
            timeout=client_timeout,
            server_hostname=rest.server_hostname or None,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One request; returns the parsed JSON body or raises KubeError (a write the gate refused: its
        error, ``NotLeader``, and nothing sent)."""
        if method != "GET" and self.write_gate is not None:
            self.write_gate("kube", f"{method} {path}")
        resp = await self._send(method, path, query=query, body=body, content_type=content_type, timeout=None)
        try:
            raw = await resp.read()
        finally:
            resp.release()
        if not 200 <= resp.status <= 299:
            raise _error(resp.status, raw)
        if not raw:
            return {}
        data = jsoncodec.loads(raw)
        return data if isinstance(data, dict) else {"items": data}

    async def get_text(self, path: str, *, query: dict[str, Any] | None = None) -> str:
        """A GET whose answer is not JSON (pods/log)."""
        resp = await self._send("GET", path, query=query, body=None, content_type="application/json", timeout=None)
        try:
            raw = await resp.read()
        finally:
            resp.release()
        if not 200 <= resp.status <= 299:
            raise _error(resp.status, raw)
        return bytes(raw).decode("utf-8", "replace")

    async def get(self, path: str, *, query: dict[str, Any] | None = None) -> JSON:
        return await self.request("GET", path, query=query)

    async def get_or_none(self, path: str) -> JSON | None:
        try:
            return await self.get(path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def watch_lines(self, path: str, query: dict[str, Any], *, timeout: float) -> AsyncIterator[JSON]:
        """A watch stream: one parsed JSON event per line, until the server ends it or ``timeout`` passes."""
        resp = await self._send("GET", path, query=query, body=None, content_type="application/json", timeout=timeout)
        try:
            if not 200 <= resp.status <= 299:
                raise _error(resp.status, await resp.read())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield jsoncodec.loads(line)
            if buf.strip():
                yield jsoncodec.loads(buf)
        finally:
            resp.release()

    async def close(self) -> None:
        await self.api.close()


def _error(status: int, raw: bytes) -> KubeError:
    reason, message = "", raw.decode("utf-8", "replace")[:500]
    try:
        data = jsoncodec.loads(raw)
        if isinstance(data, dict):
            reason = str(data.get("reason") or "")
            message = str(data.get("message") or message)
    except ValueError:
        pass
    return KubeError(status, reason or "Error", redact_text(message))
