"""Pod status from the provider: the status stream, the status writes, and the pod's Events.

``run()`` (task ``pods.status``) consumes ``status_changes()``; each changed group is held in
``PodState.groups`` and its pod requeued, so the pod's worker writes the status if (and only if) it
differs (``sync_status``). ECI's group events wait here until that worker mirrors them as Kubernetes
Events, de-duplicated by a digest. ``write_status`` (conflicts re-read and retried) and ``announce``
(one-off events per pod) also serve reconcile's own verdicts (failed, refused, vanished).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from vk_provider.aio import Backoff
from vk_provider.errors import TransientError
from vk_provider.kube.client import MERGE_PATCH, KubeAPI, KubeError, parse_time
from vk_provider.kube.events import EventRecorder
from vk_provider.metrics import POD_CREATED_TO_RUNNING, STATUS_PROPAGATION, STATUS_WRITES
from vk_provider.pods.state import Held, PodState, describe, meta, phase, uid
from vk_provider.pods.status import (
    EPHEMERAL_MESSAGE,
    EPHEMERAL_REASON,
    TERMINAL_PHASES,
    ephemeral_refused,
    merge_status,
    with_ephemeral_statuses,
)
from vk_provider.pods.writeback import write_backs
from vk_provider.provider import BackendEvent, BackendPod, Pod, PodLifecycle

log = structlog.get_logger("vk_provider.pods")


class StatusSync:
    """Keeps each pod's status and Events in step with its group; the ``pods.status`` loop."""

    def __init__(self, state: PodState, api: KubeAPI, provider: PodLifecycle, recorder: EventRecorder) -> None:
        self.state = state
        self.api = api
        self.provider = provider
        self.recorder = recorder
        self._seen_at: dict[str, float] = {}  # uid -> monotonic time a backend change was seen
        self._pending_events: dict[str, list[BackendEvent]] = {}
        # uid -> digest of (type, reason, message) -> count mirrored; a digest, not the strings, is kept per pod
        self._mirrored: dict[str, dict[bytes, int]] = {}
        self._announced: dict[str, set[str]] = {}  # uid -> one-off events already sent

    async def run(self) -> None:
        """Consume the backend's status stream; restart it after a failure. Runs before adoption too."""
        await self.state.informer.synced.wait()
        attempt = 0
        backoff = Backoff(base=1.0, cap=30.0)
        while True:
            try:
                async for bp in self.provider.status_changes():
                    attempt = 0
                    self.ingest(bp)
                log.warning("status stream ended; restarting it")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("status stream failed", error=describe(exc))
            delay = backoff.delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    def ingest(self, bp: BackendPod) -> None:
        """A group's status changed on the backend: remember it and requeue its pod."""
        state = self.state
        if bp.uid in state.delete_requested and bp.uid not in state.groups:
            return
        if bp.events:
            self._pending_events.setdefault(bp.uid, []).extend(bp.events)
        state.remember(bp)  # events are mirrored once from _pending_events, not kept for every pod
        self._seen_at.setdefault(bp.uid, time.monotonic())
        key = f"{bp.namespace}/{bp.name}"
        pod = state.informer.cache.get(key)
        if pod is not None and uid(pod) == bp.uid:
            state.queue.add(key, first=True)  # ahead of a backlog of creates

    def forget(self, pod_uid: str) -> None:
        """The pod is gone: drop what is kept for it here."""
        self._seen_at.pop(pod_uid, None)
        self._pending_events.pop(pod_uid, None)
        self._mirrored.pop(pod_uid, None)
        self._announced.pop(pod_uid, None)

    # ---- events ----------------------------------------------------------------------------------
    async def mirror_events(self, pod: Pod) -> None:
        """Record the group's events that arrived since the last call, each (type, reason, message) once
        per count."""
        pod_uid = uid(pod)
        pending = self._pending_events.pop(pod_uid, [])
        if not pending:
            return
        mirrored = self._mirrored.setdefault(pod_uid, {})
        for ev in pending:
            mark = _event_mark(ev)
            if mirrored.get(mark, 0) >= ev.count:
                continue
            mirrored[mark] = ev.count
            await self.recorder.record(pod, ev.type or "Normal", ev.reason or "Backend", ev.message)

    async def announce(self, pod: Pod, what: str, type_: str, reason: str, message: str) -> None:
        """Record an event once per pod and ``what``."""
        done = self._announced.setdefault(uid(pod), set())
        if what in done:
            return
        done.add(what)
        await self.recorder.record(pod, type_, reason, message)

    # ---- status ----------------------------------------------------------------------------------
    async def sync_status(self, pod: Pod, group: Held) -> bool:
        """Write the group's status (and the refused ephemeral containers') to the pod if it differs, with the
        write-back annotations when they are due (writeback.py); True when they went with it."""
        ephemeral = (pod.get("spec") or {}).get("ephemeralContainers") or []
        if not group.status_json and not ephemeral:
            return False
        for c in ephemeral:
            # kubectl debug adds them through the ephemeralcontainers subresource (a pod update event).
            name = str(c.get("name"))
            if not ephemeral_refused(pod, name):
                msg = f"ephemeral container {name!r} not started: {EPHEMERAL_MESSAGE}"
                await self.announce(pod, f"ephemeral:{name}", "Warning", EPHEMERAL_REASON, msg)

        reported = group.status

        def desired(p: Pod) -> dict[str, Any]:
            current = p.get("status") or {}
            status = merge_status(current, reported) if reported else current
            return with_ephemeral_statuses(p, status)

        return await self.write_status(pod, desired, annotations=lambda p: write_backs(p, group))

    async def write_status(
        self,
        pod: Pod,
        desired: Callable[[Pod], dict[str, Any]],
        *,
        annotations: Callable[[Pod], dict[str, str] | None] | None = None,
    ) -> bool:
        """Write ``desired(pod)`` to pods/<name>/status if it differs; on a conflict re-read and retry.

        ``annotations(pod)``, if any, go in the same PATCH: kube-apiserver keeps the metadata of a pods/status
        write (but spec, ownerReferences and deletionTimestamp), which saves a write and the watch event it
        causes. True when annotations were written; none are written when the status has not changed.
        """
        pod_uid = uid(pod)
        m = meta(pod)
        path = f"/api/v1/namespaces/{m.get('namespace')}/pods/{m.get('name')}/status"
        current = pod
        for _attempt in range(4):
            if phase(current) in TERMINAL_PHASES and current is not pod:
                return False  # someone else finished it meanwhile; terminal pods never change again
            old_status = current.get("status") or {}
            status = desired(current)
            if status == old_status:
                self._seen_at.pop(pod_uid, None)
                return False
            metadata: dict[str, Any] = {"uid": pod_uid}
            extra = annotations(current) if annotations is not None else None
            if extra:
                metadata["annotations"] = extra
            try:
                written = await self.api.request(
                    "PATCH", path, body={"metadata": metadata, "status": status}, content_type=MERGE_PATCH
                )
            except KubeError as exc:
                if exc.not_found:
                    return False
                if not exc.conflict:
                    raise
                fresh = await self.api.get_or_none(path[: -len("/status")])
                if fresh is None or uid(fresh) != pod_uid:
                    return False
                current = fresh
                continue
            STATUS_WRITES.inc()
            seen = self._seen_at.pop(pod_uid, None)
            if seen is not None:
                STATUS_PROPAGATION.observe(time.monotonic() - seen)
            if status.get("phase") == "Running" and old_status.get("phase") != "Running":
                created = parse_time(m.get("creationTimestamp"))
                if created is not None:
                    POD_CREATED_TO_RUNNING.observe(max(0.0, time.time() - created.timestamp()))
            self.state.cache_written(current, written)
            return bool(extra)
        raise TransientError(f"status of {m.get('namespace')}/{m.get('name')} kept conflicting")


def _event_mark(ev: BackendEvent) -> bytes:
    """What identifies a mirrored backend event: a 12-byte digest of its type, reason and message."""
    text = f"{ev.type}\0{ev.reason}\0{ev.message}"
    return hashlib.blake2b(text.encode(), digest_size=12).digest()
