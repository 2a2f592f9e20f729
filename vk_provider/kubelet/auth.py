"""Who is calling (x509 client certificate or bearer token) and may they (SubjectAccessReview).

As the real kubelet: a client certificate verified by the TLS layer against the client CA names
the user (CN) and groups (O); otherwise a bearer token is checked with TokenReview; otherwise the
request is anonymous, refused with 401 unless anonymous auth is on. Authorization asks the API
server with resource ``nodes``, the node's name and a subresource picked from the path.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from kubernetes_asyncio import client as k8s

log = structlog.get_logger("vk_provider.kubelet.auth")

K = TypeVar("K")
V = TypeVar("V")

_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


def request_attributes(method: str, path: str) -> tuple[str, str]:
    """(verb, subresource) of a request, as the kubelet derives them."""
    verb = _VERBS.get(method.upper(), method.lower())
    if path == "/stats" or path.startswith("/stats/"):
        sub = "stats"
    elif path == "/metrics" or path.startswith("/metrics/"):
        sub = "metrics"
    elif path.startswith("/logs/") or path == "/logs":
        sub = "log"
    else:
        sub = "proxy"
    return verb, sub


class TTLCache(Generic[K, V]):
    """A small bounded cache whose entries each carry their own time to live."""

    def __init__(self, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if self._clock() >= expires:
            del self._data[key]
            return None
        return value

    def put(self, key: K, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        self._data[key] = (self._clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def user_from_peercert(peercert: dict[str, Any] | None) -> UserInfo | None:
    """CN is the user, each O a group (the API server's x509 convention)."""
    if not peercert:
        return None
    name = ""
    groups: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and not name:
                name = value
            elif key == "organizationName":
                groups.append(value)
    if not name:
        return None
    return UserInfo(name, groups=(*groups, "system:authenticated"))


class Authenticator:
    def __init__(
        self,
        api: Any,
        *,
        anonymous: bool,
        cache_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._anonymous = anonymous
        self._ttl = cache_ttl
        self._cache: TTLCache[str, tuple[UserInfo | None]] = TTLCache(clock=clock)
        self._inflight: dict[str, asyncio.Future[UserInfo | None]] = {}
        self.token_reviews = 0  # calls made to the API server (for tests and debugging)

    async def authenticate(self, peercert: dict[str, Any] | None, authorization: str | None) -> UserInfo | None:
        """The caller, ANONYMOUS when allowed, or None (answer 401)."""
        user = user_from_peercert(peercert)
        if user is not None:
            return user
        if authorization:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return await self._review_token(token)
            return None
        return ANONYMOUS if self._anonymous else None

    async def _review_token(self, token: str) -> UserInfo | None:
        # The cache key is a digest: the token itself is never kept or logged.
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(key)
        if hit is not None:
            return hit[0]
        # Concurrent requests with the same new token share one TokenReview, run as its own task so a
        # caller that goes away does not cancel it for the others.
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._call_token_review(key, token))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _call_token_review(self, key: str, token: str) -> UserInfo | None:
        self.token_reviews += 1
        try:
            review = await k8s.AuthenticationV1Api(self._api).create_token_review(
                k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
            )
        except Exception as exc:
            # Not cached: an API outage must not lock callers out for the whole TTL.
            log.warning("token review failed", error=type(exc).__name__)
            return None
        status = review.status
        user: UserInfo | None = None
        if status is not None and status.authenticated and status.user is not None:
            extra = tuple(sorted((k, tuple(v)) for k, v in (status.user.extra or {}).items()))
            user = UserInfo(
                status.user.username or "",
                uid=status.user.uid or "",
                groups=tuple(status.user.groups or ()),
                extra=extra,
            )
        self._cache.put(key, (user,), self._ttl)
        return user


class Authorizer:
    def __init__(
        self,
        api: Any,
        node_name: str,
        *,
        allow_ttl: float,
        deny_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._node = node_name
        self._allow_ttl = allow_ttl
        self._deny_ttl = deny_ttl
        self._cache: TTLCache[tuple[UserInfo, str, str], bool] = TTLCache(clock=clock)
        self._inflight: dict[tuple[UserInfo, str, str], asyncio.Future[bool]] = {}
        self.reviews = 0

    async def authorize(self, user: UserInfo, verb: str, subresource: str) -> bool:
        key = (user, verb, subresource)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._review(key, user, verb, subresource))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _review(self, key: tuple[UserInfo, str, str], user: UserInfo, verb: str, subresource: str) -> bool:
        self.reviews += 1
        spec = k8s.V1SubjectAccessReviewSpec(
            user=user.name,
            uid=user.uid or None,
            groups=list(user.groups) or None,
            extra={k: list(v) for k, v in user.extra} or None,
            resource_attributes=k8s.V1ResourceAttributes(
                verb=verb, version="v1", resource="nodes", name=self._node, subresource=subresource
            ),
        )
        try:
            review = await k8s.AuthorizationV1Api(self._api).create_subject_access_review(
                k8s.V1SubjectAccessReview(spec=spec)
            )
        except Exception as exc:
            log.warning("subject access review failed", error=type(exc).__name__)
            return False
        allowed = bool(review.status is not None and review.status.allowed)
        self._cache.put(key, allowed, self._allow_ttl if allowed else self._deny_ttl)
        return allowed
