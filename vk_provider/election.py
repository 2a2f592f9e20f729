"""Leader election on a coordination.k8s.io/v1 Lease: one control loop (task ``ha.election``).

Every replica of a virtual node runs the same loop (client-go's rules, our code):

- **standby**: read the Lease every ``retry_period/2``. It is free when it does not exist, when its
  ``holderIdentity`` is empty (released by a leader on SIGTERM), or when the record (resourceVersion
  and holder) has not changed for ``leaseDurationSeconds`` *as measured by this replica's own
  monotonic clock since it saw it change* (no comparison of wall clocks across machines). Taking it
  is a create, or an update with the read resourceVersion as the optimistic lock (409: someone was
  faster), with ``acquireTime``, ``renewTime`` and ``leaseTransitions`` + 1.
- **leader**: renew every ``retry_period`` with the resourceVersion of its own last write. A renewal
  that started at t grants the write fence (``fence.py``) until t + ``renew_deadline``. Before each
  renewal it checks the fence: once the deadline has passed (renewals failed for that long, or the
  process was paused), it is no longer leader — ``lost`` is set and it never writes the Lease again
  (the daemon exits with code 3 and its Pod restarts as a standby). A renewal refused because another
  replica holds the Lease loses at once.
- **release** (SIGTERM, after the writers stopped): the fence closes, then the Lease is written with an
  empty holder and a 1 s duration, so a standby takes over within about ``retry_period/2``.

Why not ``kubernetes_asyncio.leaderelection``: it never releases the Lease on shutdown, it measures
the renew deadline and the Lease's age on the wall clock (``time.time``, skewed across replicas and
not paused-aware) and writes naive local timestamps as renewTime, it keeps the application running
until its renew loop notices the loss (no fence: a resumed process would write first), and it runs
one election only.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from vk_provider.fence import Fence
from vk_provider.kube.client import JSON, KubeAPI, KubeError, now_micro
from vk_provider.metrics import LEADER, LEADER_TRANSITIONS
from vk_provider.settings import HASettings

log = structlog.get_logger("vk_provider.ha")

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def lease_namespace(settings: HASettings, sa_file: Path = SA_NAMESPACE_FILE) -> str:
    """``ha.namespace``, else $POD_NAMESPACE, else the service account's namespace, else ``default``."""
    if settings.namespace:
        return settings.namespace
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return sa_file.read_text().strip() or "default"
    except OSError:
        return "default"


def lease_name(settings: HASettings, node_name: str) -> str:
    return settings.lease_name or f"vk-eci-{node_name}"


def replica_identity(settings: HASettings) -> str:
    """``ha.identity``, else $POD_NAME (or the host name) plus a random suffix: a restarted replica is a
    new candidate, never mistaken for the leader it was."""
    if settings.identity:
        return settings.identity
    base = os.environ.get("POD_NAME") or socket.gethostname() or "vk-eci"
    return f"{base}-{secrets.token_hex(3)}"


class _Lost(Exception):
    """Another replica holds the Lease."""


class LeaderElector:
    """Runs the election for one Lease; ``leading`` is set on acquiring, ``lost`` when leadership ended
    other than by ``release()``."""

    def __init__(
        self,
        api: KubeAPI,
        settings: HASettings,
        *,
        namespace: str,
        name: str,
        identity: str,
        fence: Fence,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api = api
        self.settings = settings
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.fence = fence
        self._clock = clock
        self._sleep = sleep
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self.acquired_at: float | None = None  # monotonic
        self.previous_holder = ""  # whom this replica took the Lease from
        self._record: JSON | None = None  # the Lease as this replica last wrote it
        self._observed: tuple[str, str] | None = None  # (resourceVersion, holder) last seen as a standby
        self._observed_at = 0.0
        self._released = False

    @property
    def _base(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _spec(self, current: dict[str, Any], *, acquiring: bool) -> dict[str, Any]:
        now = now_micro()
        spec = dict(current)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.settings.lease_duration_seconds)
        spec["renewTime"] = now
        if acquiring:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + (1 if current else 0)
        return spec

    # ---- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Stand by until the Lease is ours, then renew it until leadership is lost (then return)."""
        poll = self.settings.retry_period_seconds / 2
        log.info("standing by for leadership", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        LEADER.set(0)
        while True:
            started = self._clock()
            try:
                if await self.try_acquire():
                    break
            except Exception as exc:
                log.warning("reading the leader Lease failed", error=repr(exc))
            await self._sleep(max(0.0, started + poll - self._clock()))
        self.acquired_at = started
        self.fence.grant(started + self.settings.renew_deadline_seconds)
        LEADER.set(1)
        LEADER_TRANSITIONS.labels("acquired").inc()
        log.info(
            "became leader",
            lease=f"{self.namespace}/{self.name}",
            identity=self.identity,
            previous=self.previous_holder or None,
        )
        self.leading.set()
        await self._renew_loop()

    async def _renew_loop(self) -> None:
        deadline = self.settings.renew_deadline_seconds
        while True:
            await self._sleep(self.settings.retry_period_seconds)
            if not self.fence.allowed():
                self._lose("the renew deadline passed without a renewal")
                return
            started = self._clock()
            try:
                # A renewal may not outlive the fence it would extend.
                await asyncio.wait_for(self._renew(), timeout=max(0.01, self.fence.remaining()))
            except _Lost:
                self._lose("another replica holds the Lease")
                return
            except Exception as exc:
                log.warning(
                    "renewing the leader Lease failed",
                    error=repr(exc) or type(exc).__name__,
                    fence_left=round(self.fence.remaining(), 2),
                )
                continue
            self.fence.grant(started + deadline)

    def _lose(self, why: str) -> None:
        self.fence.revoke()
        LEADER.set(0)
        LEADER_TRANSITIONS.labels("lost").inc()
        log.error("leadership lost: every write stopped", reason=why, identity=self.identity)
        self.lost.set()

    # ---- one attempt -------------------------------------------------------------------------------
    async def try_acquire(self) -> bool:
        """One standby attempt: True when the Lease is now ours."""
        current = await self.api.get_or_none(f"{self._base}/{self.name}")
        now = self._clock()
        if current is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec({}, acquiring=True),
            }
            try:
                self._record = await self.api.request("POST", self._base, body=body)
            except KubeError as exc:
                if exc.conflict:
                    return False
                raise
            return True
        meta = current.get("metadata") or {}
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        seen = (str(meta.get("resourceVersion") or ""), holder)
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration_seconds)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False
        body = {**current, "spec": self._spec(spec, acquiring=holder != self.identity)}
        try:
            self._record = await self.api.request("PUT", f"{self._base}/{self.name}", body=body)
        except KubeError as exc:
            if exc.conflict:
                return False
            raise
        self.previous_holder = holder
        return True

    async def _renew(self) -> None:
        record = self._record
        assert record is not None
        body = {**record, "spec": self._spec(record.get("spec") or {}, acquiring=False)}
        try:
            self._record = await self.api.request("PUT", f"{self._base}/{self.name}", body=body)
            return
        except KubeError as exc:
            if not exc.conflict and not exc.not_found:
                raise
        # Someone else wrote the Lease: still ours (a stray update) or taken over?
        current = await self.api.get_or_none(f"{self._base}/{self.name}")
        if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
            raise _Lost
        body = {**current, "spec": self._spec(current.get("spec") or {}, acquiring=False)}
        self._record = await self.api.request("PUT", f"{self._base}/{self.name}", body=body)

    async def release(self) -> None:
        """Hand the Lease over (SIGTERM, after the writers stopped): fence closed, holder cleared."""
        if self._released or not self.leading.is_set() or self.lost.is_set() or self._record is None:
            return
        self._released = True
        still_ours = self.fence.allowed()
        self.fence.revoke()
        LEADER.set(0)
        if not still_ours:
            log.warning("leadership had already expired; the Lease is left to expire", identity=self.identity)
            return
        record = self._record
        spec = dict(record.get("spec") or {})
        spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now_micro())
        try:
            await asyncio.wait_for(
                self.api.request("PUT", f"{self._base}/{self.name}", body={**record, "spec": spec}),
                timeout=self.settings.renew_deadline_seconds,
            )
        except Exception as exc:
            log.warning("releasing the leader Lease failed; a standby takes it when it expires", error=repr(exc))
            return
        LEADER_TRANSITIONS.labels("released").inc()
        log.info("released leadership", lease=f"{self.namespace}/{self.name}", identity=self.identity)
