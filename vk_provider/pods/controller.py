"""The pod controller: watch the pods bound to the node, reconcile each with its container group.

Three directions, as in virtual-kubelet:
- sync pods from Kubernetes: the watch feeds a keyed queue (``ns/name``); workers reconcile one key
  at a time: create the group, update it (image change), delete it, and write status;
- sync pod status from the provider: ``status_changes()`` updates the known groups and requeues the
  pod, whose worker writes the status if (and only if) it differs;
- delete pods from Kubernetes: a pod with deletionTimestamp gets its group deleted, then the pod object
  is removed with grace 0 and a UID precondition once the group is gone or terminal.

Level-triggered: every reconcile compares the pod as it is now with the group as last seen, so a
missed event or a restart costs one extra comparison, never a duplicate group. Identity is the pod
UID: the backend tags groups with it and derives the ClientToken from it.

Adoption: after a restart the groups that already exist must be known before any pod is created or
deleted. The ClientToken is no guard on its own: a repeated create carries freshly minted
service-account tokens (and possibly changed ConfigMaps), so its parameters differ and the simulator
answers IdempotentParameterMismatch (a permanent failure here) instead of the existing group; ECI's
idempotency window may be limited as well. So until ``adopt()``
has listed the groups, workers do status work only (groups already reported by the status stream,
DaemonSet refusals, events) and hold creates, updates and deletes; the GC does not run. ``adopt()``
retries with backoff for as long as it takes and then requeues every pod. The node's Ready waits for
the first listing only: if that fails (ECI down at start) the node turns Ready anyway with the adoption
pending (``adoption_pending``), since NotReady would get every pod evicted after 5 minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from vk_provider.aio import Backoff
from vk_provider.errors import InvalidInput, NotSupported, PermanentError, ProviderError, TransientError
from vk_provider.kube.client import MERGE_PATCH, KubeAPI, KubeError, parse_time
from vk_provider.kube.events import EventRecorder
from vk_provider.kube.watch import Informer, compact, for_cache, object_key
from vk_provider.metrics import (
    ADOPTION_PENDING,
    GC_DELETED,
    POD_CREATED_TO_RUNNING,
    PODS,
    RECONCILES,
    STATUS_PROPAGATION,
    STATUS_WRITES,
)
from vk_provider.pods.queue import KeyedQueue, QueueShutDown
from vk_provider.pods.resources import (
    EXTENDED_TOKEN_SECONDS,
    ExpiringToken,
    Missing,
    MissingReferences,
    ResourceResolver,
)
from vk_provider.pods.status import (
    EPHEMERAL_MESSAGE,
    EPHEMERAL_REASON,
    TERMINAL_GROUP_STATES,
    TERMINAL_PHASES,
    ephemeral_refused,
    failed_status,
    merge_status,
    pending_status,
    with_ephemeral_statuses,
)
from vk_provider.provider import BackendEvent, BackendPod, Pod, PodLifecycle
from vk_provider.settings import PodsSettings

log = structlog.get_logger("vk_provider.pods")

VANISHED_REASON = "ContainerGroupVanished"
VANISHED_EXIT_CODE = 137
TOKEN_NOT_ROTATED_REASON = "TokenNotRotated"


class Requeue(Exception):
    """Reconcile could not finish now; try the key again after backoff (counted as a failure)."""


@dataclass
class _Known:
    """What the controller knows of one pod UID's group."""

    group: BackendPod
    first_seen: float = field(default_factory=time.monotonic)


def _hold(bp: BackendPod) -> BackendPod:
    """Make a group's view fit to be held for every pod: the status compacted (keys and short strings
    shared), the events dropped (only ``ingest`` mirrors them, from ``_pending_events``)."""
    bp.status = compact(bp.status)
    bp.events = []
    return bp


def _meta(pod: Pod) -> dict[str, Any]:
    return pod.get("metadata") or {}


def _uid(pod: Pod) -> str:
    return str(_meta(pod).get("uid") or "")


def _images(pod: Pod) -> dict[str, str]:
    return {str(c.get("name")): str(c.get("image")) for c in (pod.get("spec") or {}).get("containers") or []}


def _is_daemonset_pod(pod: Pod) -> bool:
    return any(ref.get("kind") == "DaemonSet" for ref in _meta(pod).get("ownerReferences") or [])


def _phase(pod: Pod) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


class PodController:
    """Owns the pod watch, the queue and the workers. Exposes ``ready`` and the PodLookup view."""

    def __init__(
        self,
        api: KubeAPI,
        provider: PodLifecycle,
        recorder: EventRecorder,
        settings: PodsSettings,
        *,
        node_name: str,
        resolver: ResourceResolver | None = None,
        delete_poll_max_seconds: float = 5.0,
        vanish_grace_seconds: float = 60.0,
    ) -> None:
        self.api = api
        self.provider = provider
        self.recorder = recorder
        self.settings = settings
        self.node_name = node_name
        self.resolver = resolver or ResourceResolver(api)
        self.delete_poll_max_seconds = delete_poll_max_seconds
        # A group created moments ago may be missing from a listing (not described yet): only groups
        # known for longer than this can be declared vanished.
        self.vanish_grace_seconds = vanish_grace_seconds
        self.informer = Informer(
            api, "/api/v1/pods", handler=self._on_pod_event, field_selector=f"spec.nodeName={node_name}"
        )
        self.queue = KeyedQueue(Backoff(base=settings.retry_base_seconds, cap=settings.retry_max_seconds))
        self.adopted = asyncio.Event()
        self._adoption_error: str | None = None  # the last failure of the adoption listing
        self.groups: dict[str, _Known] = {}  # pod uid -> group
        self._deleted: dict[str, Pod] = {}  # key -> last state of a pod the watch reported deleted
        self._delete_polls: dict[str, int] = {}  # uid -> polls since delete_pod
        self._delete_requested: set[str] = set()
        self._spec_images: dict[str, dict[str, str]] = {}
        self._vanished: dict[str, str] = {}  # uid -> group id
        self._failed: set[str] = set()  # uids failed for good by us (no recreate)
        self._announced: dict[str, set[str]] = {}  # uid -> one-off events already sent
        self._seen_at: dict[str, float] = {}  # uid -> monotonic time a backend change was seen
        self._pending_events: dict[str, list[BackendEvent]] = {}
        # uid -> digest of (type, reason, message) -> count mirrored; a digest, not the strings, is kept per pod
        self._mirrored: dict[str, dict[bytes, int]] = {}
        self._phases: dict[str, str] = {}
        self._phase_counts: Counter[str] = Counter()
        self._stopping = False
        self._event_tasks: set[asyncio.Task[None]] = set()

    # ---- PodLookup -------------------------------------------------------------------------------
    def get_pod(self, namespace: str, name: str) -> Pod | None:
        return self.informer.cache.get(f"{namespace}/{name}")

    def list_pods(self) -> list[Pod]:
        return list(self.informer.cache.values())

    @property
    def ready(self) -> bool:
        """The pod watch synced. The node also waits for the first adoption listing (``adoption_pending``)."""
        return self.informer.synced.is_set()

    def adoption_pending(self) -> tuple[str, str] | None:
        """None once existing groups are adopted; else (state, why) for the node's Ready message."""
        if self.adopted.is_set():
            return None
        if self._adoption_error is None:
            return "listing", "listing existing ECI container groups for adoption"
        return (
            "failing",
            f"existing ECI container groups not adopted yet: listing them failed ({self._adoption_error}), retrying",
        )

    # ---- watch -----------------------------------------------------------------------------------
    def _on_pod_event(self, kind: str, obj: Pod, old: Pod | None) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            self._deleted[key] = obj
            self._set_phase(key, None)
        else:
            self._set_phase(key, _phase(obj))
        self.queue.add(key)

    def _set_phase(self, key: str, phase: str | None) -> None:
        old = self._phases.pop(key, None)
        if old is not None:
            self._phase_counts[old] -= 1
            PODS.labels(phase=old).set(self._phase_counts[old])
        if phase is not None:
            self._phases[key] = phase
            self._phase_counts[phase] += 1
            PODS.labels(phase=phase).set(self._phase_counts[phase])

    async def run_watch(self) -> None:
        await self.informer.run()

    async def adopt(self, notify: Callable[[], None] | None = None) -> None:
        """After the watch synced: learn every existing group, so nothing is created twice.

        Retries with backoff until the listing succeeds (ECI may be down when the daemon starts);
        ``notify`` is called when ``adoption_pending()`` changes. Then every pod is requeued.
        """
        ADOPTION_PENDING.set(1)
        await self.informer.synced.wait()
        attempt = 0
        backoff = Backoff(base=self.settings.retry_base_seconds, cap=min(30.0, self.settings.retry_max_seconds))
        while True:
            try:
                groups = await self.provider.list_pods()
                break
            except Exception as exc:
                delay = backoff.delay(attempt)
                attempt += 1
                first = self._adoption_error is None
                self._adoption_error = _describe(exc)[:200]
                log.warning("listing groups for adoption failed", error=repr(exc), retry_in=round(delay, 2))
                if first and notify is not None:
                    notify()
                await asyncio.sleep(delay)
        for bp in groups:
            _hold(bp)
            known = self.groups.get(bp.uid)
            if known is None:
                self.groups[bp.uid] = _Known(bp)
            else:  # the status stream reported it first: keep its first_seen
                bp.group_id = bp.group_id or known.group.group_id
                known.group = bp
        adopted = 0
        for pod in self.informer.cache.values():
            uid = _uid(pod)
            if uid in self.groups:
                adopted += 1
                self._spec_images[uid] = _images(pod)
        # No await from here on: a worker that saw "not adopted" and held a key is requeued below.
        self.adopted.set()
        ADOPTION_PENDING.set(0)
        self._adoption_error = None
        for key in list(self.informer.cache) + list(self._deleted):
            self.queue.add(key)
        log.info("adopted existing groups", groups=len(groups), pods=adopted, attempts=attempt + 1)
        if notify is not None:
            notify()

    # ---- workers ---------------------------------------------------------------------------------
    async def run_worker(self) -> None:
        await self.informer.synced.wait()
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.reconcile(key)
                self.queue.forget(key)
                RECONCILES.labels(result="ok").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                RECONCILES.labels(result="error").inc()
                self._on_failure(key, exc)
            finally:
                self.queue.done(key)

    def _on_failure(self, key: str, exc: Exception) -> None:
        min_delay = (exc.retry_after or 0.0) if isinstance(exc, TransientError) else 0.0
        delay = self.queue.retry(key, min_delay=min_delay)
        failures = self.queue.failures(key)
        if not isinstance(exc, Requeue):
            log.warning("reconcile failed", key=key, error=_describe(exc), failures=failures, retry_in=round(delay, 2))
        if failures == self.settings.max_retries:
            pod = self.informer.cache.get(key)
            if pod is not None:
                msg = (
                    f"reconcile failed {failures} times (last: {_describe(exc)}); "
                    f"still retrying every {self.settings.retry_max_seconds:g}s at most"
                )
                self._spawn_event(pod, "Warning", "ReconcileRetrying", msg)

    def _spawn_event(self, pod: Pod, type_: str, reason: str, message: str) -> None:
        # Used from sync code paths; recorder.record never raises.
        task = asyncio.get_running_loop().create_task(self.recorder.record(pod, type_, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def reconcile(self, key: str) -> None:
        if not self.adopted.is_set():
            await self._reconcile_before_adoption(key)
            return
        pod = self.informer.cache.get(key)
        gone = self._deleted.pop(key, None)
        if gone is not None and (pod is None or _uid(pod) != _uid(gone)):
            await self._reconcile_removed(gone)
        if pod is None:
            self.queue.discard(key)
            return
        uid = _uid(pod)
        if _meta(pod).get("deletionTimestamp"):
            await self._reconcile_delete(key, pod)
            return
        if _phase(pod) in TERMINAL_PHASES:
            await self._flush_backend_events(pod)
            return
        if uid in self._vanished:
            await self._fail_vanished(pod, self._vanished[uid])
            return
        if _is_daemonset_pod(pod):
            await self._refuse_daemonset(pod)
            return
        known = self.groups.get(uid)
        if known is None:
            if uid not in self._failed:
                await self._create(key, pod)
            return
        await self._flush_backend_events(pod)
        await self._maybe_update(key, pod, known.group)
        await self._sync_status(pod, known.group)

    async def _reconcile_before_adoption(self, key: str) -> None:
        """Existing groups are not known yet: status work only. A pod without a known group may have
        one on ECI, so creates wait, and so do updates and deletes (a removed pod stays in
        ``_deleted``); ``adopt()`` requeues every key when it is done."""
        pod = self.informer.cache.get(key)
        if pod is None or _meta(pod).get("deletionTimestamp"):
            return
        if _phase(pod) in TERMINAL_PHASES:
            await self._flush_backend_events(pod)
            return
        if _is_daemonset_pod(pod):
            await self._refuse_daemonset(pod)
            return
        known = self.groups.get(_uid(pod))
        if known is not None:  # reported by the status stream meanwhile
            await self._flush_backend_events(pod)
            await self._sync_status(pod, known.group)

    # ---- create / update -------------------------------------------------------------------------
    async def _announce(self, pod: Pod, what: str, type_: str, reason: str, message: str) -> None:
        done = self._announced.setdefault(_uid(pod), set())
        if what in done:
            return
        done.add(what)
        await self.recorder.record(pod, type_, reason, message)

    async def _missing_events(self, pod: Pod, missing: list[Missing]) -> None:
        for m in missing:
            kind = "ConfigMap" if m.kind == "ConfigMap" else "Secret"
            reason = ("Optional" if m.optional else "Mandatory") + kind + "NotFound"
            what = f"{kind.lower()} {m.name!r}" + (f" (key {m.key!r})" if m.key else "")
            msg = f"{'optional' if m.optional else 'required'} {what} not found"
            if m.optional:
                await self._announce(pod, f"missing:{reason}:{m.name}:{m.key}", "Warning", reason, msg)
            else:
                await self.recorder.record(pod, "Warning", reason, msg + "; the pod will start once it exists")

    async def _create(self, key: str, pod: Pod) -> None:
        uid = _uid(pod)
        try:
            resolution = await self.resolver.resolve(pod)
        except MissingReferences as exc:
            await self._missing_events(pod, exc.missing)
            raise Requeue(str(exc)) from None
        await self._missing_events(pod, resolution.missing)
        try:
            await self.provider.create_pod(pod, resolution.resources)
        except (PermanentError, InvalidInput, NotSupported) as exc:
            reason, message = exc.reason, exc.message
            await self.recorder.record(pod, "Warning", "ProviderCreateFailed", f"{reason}: {message}")
            self._failed.add(uid)
            await self._write_status(pod, lambda p: failed_status(p, reason, message))
            return
        except ProviderError as exc:
            await self.recorder.record(
                pod, "Warning", "ProviderCreateFailed", f"{exc.reason}: {exc.message} (retrying)"
            )
            raise
        meta = _meta(pod)
        placeholder = BackendPod(
            namespace=str(meta.get("namespace")),
            name=str(meta.get("name")),
            uid=uid,
            group_id="",
            group_status="Pending",
            status={},
        )
        self.groups.setdefault(uid, _Known(placeholder))
        self._spec_images[uid] = _images(pod)
        await self.recorder.record(pod, "Normal", "ProviderCreateSuccess", "container group created")
        if resolution.expiring_tokens:
            msg = _tokens_not_rotated(resolution.expiring_tokens)
            await self._announce(pod, "token-not-rotated", "Warning", TOKEN_NOT_ROTATED_REASON, msg)

    async def _maybe_update(self, key: str, pod: Pod, group: BackendPod) -> None:
        """An image change on a running pod is the one spec change sent to the backend.

        Projected service-account tokens are not rotated: on ECI replacing a mounted file means
        UpdateContainerGroup, which restarts the group's containers (see ``_tokens_not_rotated``).
        """
        uid = _uid(pod)
        images = _images(pod)
        image_changed = uid in self._spec_images and self._spec_images[uid] != images
        if not image_changed or group.group_status in TERMINAL_GROUP_STATES:
            return
        if group.group_status not in ("Running", "Pending", "Restarting"):
            # Scheduling/Updating/Terminating: try again shortly.
            self.queue.add_after(key, 2.0)
            return
        try:
            resolution = await self.resolver.resolve(pod)
        except MissingReferences as exc:
            await self._missing_events(pod, exc.missing)
            raise Requeue(str(exc)) from None
        try:
            await self.provider.update_pod(pod, resolution.resources)
        except (PermanentError, InvalidInput, NotSupported) as exc:
            await self.recorder.record(pod, "Warning", "ProviderUpdateFailed", f"{exc.reason}: {exc.message}")
            self._spec_images[uid] = images  # do not retry a rejected update forever
            return
        self._spec_images[uid] = images
        await self.recorder.record(pod, "Normal", "ProviderUpdateSuccess", "container group updated: image changed")

    async def _refuse_daemonset(self, pod: Pod) -> None:
        msg = "DaemonSet pods are not run on the virtual node (a container group per node has no meaning on ECI)"
        await self._announce(pod, "daemonset", "Warning", "DaemonSetPodNotSupported", msg)
        await self._write_status(pod, lambda p: pending_status(p, "DaemonSetPodNotSupported", msg))

    # ---- status ----------------------------------------------------------------------------------
    async def _sync_status(self, pod: Pod, group: BackendPod) -> None:
        ephemeral = (pod.get("spec") or {}).get("ephemeralContainers") or []
        if not group.status and not ephemeral:
            return
        for c in ephemeral:
            # kubectl debug adds them through the ephemeralcontainers subresource (a pod update event).
            name = str(c.get("name"))
            if not ephemeral_refused(pod, name):
                msg = f"ephemeral container {name!r} not started: {EPHEMERAL_MESSAGE}"
                await self._announce(pod, f"ephemeral:{name}", "Warning", EPHEMERAL_REASON, msg)

        def desired(p: Pod) -> dict[str, Any]:
            current = p.get("status") or {}
            status = merge_status(current, group.status) if group.status else current
            return with_ephemeral_statuses(p, status)

        await self._write_status(pod, desired)

    async def _write_status(self, pod: Pod, desired: Any) -> None:
        """Write ``desired(pod)`` to pods/<name>/status if it differs; on a conflict re-read and retry."""
        uid = _uid(pod)
        meta = _meta(pod)
        path = f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta.get('name')}/status"
        current = pod
        for _attempt in range(4):
            if _phase(current) in TERMINAL_PHASES and current is not pod:
                return  # someone else finished it meanwhile; terminal pods never change again
            old_status = current.get("status") or {}
            status = desired(current)
            if status == old_status:
                self._seen_at.pop(uid, None)
                return
            try:
                written = await self.api.request(
                    "PATCH", path, body={"metadata": {"uid": uid}, "status": status}, content_type=MERGE_PATCH
                )
            except KubeError as exc:
                if exc.not_found:
                    return
                if not exc.conflict:
                    raise
                fresh = await self.api.get_or_none(path[: -len("/status")])
                if fresh is None or _uid(fresh) != uid:
                    return
                current = fresh
                continue
            STATUS_WRITES.inc()
            seen = self._seen_at.pop(uid, None)
            if seen is not None:
                STATUS_PROPAGATION.observe(time.monotonic() - seen)
            if status.get("phase") == "Running" and old_status.get("phase") != "Running":
                created = parse_time(meta.get("creationTimestamp"))
                if created is not None:
                    POD_CREATED_TO_RUNNING.observe(max(0.0, time.time() - created.timestamp()))
            if written.get("metadata"):
                key = object_key(written)
                cached = self.informer.cache.get(key)
                based_on = _meta(current).get("resourceVersion")
                if cached is not None and _uid(cached) == uid and _meta(cached).get("resourceVersion") == based_on:
                    # Let the next reconcile compare against what we wrote, not the stale copy.
                    self.informer.cache[key] = for_cache(written)
            return
        raise TransientError(f"status of {meta.get('namespace')}/{meta.get('name')} kept conflicting")

    def ingest(self, bp: BackendPod) -> None:
        """A group's status changed on the backend: remember it and requeue its pod."""
        if bp.uid in self._delete_requested and bp.uid not in self.groups:
            return
        if bp.events:
            self._pending_events.setdefault(bp.uid, []).extend(bp.events)
        _hold(bp)  # events are mirrored once from _pending_events, not kept for every pod
        known = self.groups.get(bp.uid)
        if known is None:
            self.groups[bp.uid] = _Known(bp)
        else:
            if not bp.group_id:
                bp.group_id = known.group.group_id
            known.group = bp
        self._seen_at.setdefault(bp.uid, time.monotonic())
        key = f"{bp.namespace}/{bp.name}"
        pod = self.informer.cache.get(key)
        if pod is not None and _uid(pod) == bp.uid:
            self.queue.add(key)

    async def _flush_backend_events(self, pod: Pod) -> None:
        uid = _uid(pod)
        pending = self._pending_events.pop(uid, [])
        if not pending:
            return
        mirrored = self._mirrored.setdefault(uid, {})
        for ev in pending:
            mark = _event_mark(ev)
            if mirrored.get(mark, 0) >= ev.count:
                continue
            mirrored[mark] = ev.count
            await self.recorder.record(pod, ev.type or "Normal", ev.reason or "Backend", ev.message)

    async def run_status_sync(self) -> None:
        """Consume the backend's status stream; restart it after a failure. Runs before adoption too."""
        await self.informer.synced.wait()
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
                log.warning("status stream failed", error=_describe(exc))
            delay = backoff.delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    # ---- delete ----------------------------------------------------------------------------------
    async def _reconcile_removed(self, gone: Pod) -> None:
        """The pod object is gone (force delete, or our own final delete): its group must go too."""
        uid = _uid(gone)
        known = self.groups.pop(uid, None)
        self._forget(uid)
        if known is not None and uid not in self._delete_requested:
            await self.provider.delete_pod(gone)
            log.info("deleted the group of a removed pod", pod=object_key(gone), uid=uid)
        self._delete_requested.discard(uid)

    def _forget(self, uid: str) -> None:
        self._spec_images.pop(uid, None)
        self._vanished.pop(uid, None)
        self._failed.discard(uid)
        self._seen_at.pop(uid, None)
        self._pending_events.pop(uid, None)
        self._delete_polls.pop(uid, None)
        self._mirrored.pop(uid, None)
        self._announced.pop(uid, None)

    async def _reconcile_delete(self, key: str, pod: Pod) -> None:
        uid = _uid(pod)
        known = self.groups.get(uid)
        if known is None:
            await self._delete_pod_object(pod)  # never got a group: nothing to wait for
            return
        if uid not in self._delete_requested:
            await self.provider.delete_pod(pod)
            self._delete_requested.add(uid)
            await self.recorder.record(pod, "Normal", "ProviderDeleteSuccess", "container group deletion requested")
        if known.group.group_status not in TERMINAL_GROUP_STATES:
            fresh = await self.provider.get_pod(pod)
            if fresh is not None and fresh.group_status not in TERMINAL_GROUP_STATES:
                known.group = _hold(fresh)
                polls = self._delete_polls.get(uid, 0)
                self._delete_polls[uid] = polls + 1
                self.queue.add_after(key, min(self.delete_poll_max_seconds, 0.25 * (2**polls)))
                return
        await self._delete_pod_object(pod)

    async def _delete_pod_object(self, pod: Pod) -> None:
        meta = _meta(pod)
        path = f"/api/v1/namespaces/{meta.get('namespace')}/pods/{meta.get('name')}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": _uid(pod)},
        }
        try:
            await self.api.request("DELETE", path, query={"gracePeriodSeconds": 0}, body=body)
        except KubeError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    # ---- garbage collection and vanished groups ---------------------------------------------------
    async def gc_once(self) -> int:
        """Delete groups of this cluster+node whose pod UID is not alive; notice groups that vanished.

        Returns the number of groups deleted. Safe only after the watch synced and groups were adopted.
        """
        if not self.adopted.is_set():  # adoption itself waits for the watch sync
            return 0
        started = time.monotonic()
        known_before = {uid: k for uid, k in self.groups.items() if k.first_seen <= started - self.vanish_grace_seconds}
        listed = await self.provider.list_pods()
        alive = {_uid(p): p for p in self.informer.cache.values()}
        listed_uids = set()
        deleted = 0
        now = time.time()
        for bp in listed:
            listed_uids.add(bp.uid)
            known = self.groups.get(bp.uid)
            if bp.uid in alive:
                if known is None:
                    self.groups[bp.uid] = _Known(_hold(bp))
                continue
            if bp.uid in self._delete_requested:
                continue
            age = (now - bp.created.timestamp()) if bp.created is not None else None
            if age is None and known is not None:
                age = started - known.first_seen
            if age is None or age < self.settings.gc_min_age_seconds:
                continue
            log.info("deleting orphan group", group=bp.group_id, pod=f"{bp.namespace}/{bp.name}", uid=bp.uid)
            await self.provider.delete_group(bp.group_id)
            self.groups.pop(bp.uid, None)
            deleted += 1
        GC_DELETED.inc(deleted)
        for uid, known in known_before.items():
            if uid in listed_uids or uid in self._delete_requested:
                continue
            pod = alive.get(uid)
            if pod is None or _meta(pod).get("deletionTimestamp") or _phase(pod) in TERMINAL_PHASES:
                continue
            if self.groups.get(uid) is not known:
                continue
            self.groups.pop(uid, None)
            self._vanished[uid] = known.group.group_id
            self.queue.add(object_key(pod))
        return deleted

    async def _fail_vanished(self, pod: Pod, group_id: str) -> None:
        msg = (
            f"the container group {group_id or '(unknown id)'} disappeared from ECI without a delete from vk-eci "
            "(deleted in the console or by another tool, or expired); the pod is not recreated"
        )
        await self._announce(pod, "vanished", "Warning", VANISHED_REASON, msg)
        self._failed.add(_uid(pod))
        await self._write_status(pod, lambda p: failed_status(p, VANISHED_REASON, msg, exit_code=VANISHED_EXIT_CODE))

    async def run_gc(self) -> None:
        await self.adopted.wait()
        while True:
            await asyncio.sleep(self.settings.gc_interval_seconds)
            try:
                await self.gc_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("garbage collection failed", error=_describe(exc))

    # ---- shutdown --------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Stop taking work; workers finish their current key and exit."""
        self._stopping = True
        await self.queue.shutdown()


def _event_mark(ev: BackendEvent) -> bytes:
    """What identifies a mirrored backend event: a 12-byte digest of its type, reason and message."""
    text = f"{ev.type}\0{ev.reason}\0{ev.message}"
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


def _tokens_not_rotated(tokens: list[ExpiringToken]) -> str:
    """The TokenNotRotated message: which token files stop working when, why, and what to do."""
    parts = [
        f"{t.volume}/{t.path} (expirationSeconds {t.seconds}) expires at "
        f"{datetime.fromtimestamp(t.expires_at, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for t in tokens
    ]
    return (
        f"service account token not renewed: {'; '.join(parts)}. ECI cannot replace a mounted file without "
        f"restarting the container group; use the default lifetime (expirationSeconds {EXTENDED_TOKEN_SECONDS}, "
        "no audience), which the API server extends, or restart the pod before then"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return f"{exc.reason}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
