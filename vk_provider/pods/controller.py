"""The pod controller: watch the pods bound to the node, reconcile each with its container group.

This module is the one control loop and the wiring. The watch (task ``pods.watch``) feeds a keyed
queue (``ns/name``); workers (``pods.worker.N``) take one key at a time and hand it to
``Reconciler.reconcile``. The other loops have their own modules, all sharing one ``PodState``:

- ``reconcile.py``: create, update (image change) and delete one pod's group, fail it for good;
- ``sync.py``: pod status from the provider (``pods.status`` consumes ``status_changes()`` and
  requeues the pod, whose worker writes the status if it differs) and the pod's Events;
- ``adoption.py``: after a restart, learn the existing groups before anything is created or deleted
  (``pods.adopt``);
- ``gc.py``: orphan GC and vanished groups (``pods.gc``);
- ``disruption.py``: announced interruptions (spot release notices): event, condition, eviction
  (``pods.disruption``);
- ``deadline.py``: groups pending past their deadline fail the pod and are deleted (``pods.deadline``);
- ``writeback.py``: the group id, size and zone written on the pod (called by reconcile).

The three directions of virtual-kubelet map onto them: pods from Kubernetes (watch, reconcile),
status from the provider (sync), deletes from Kubernetes (reconcile).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import structlog

from vk_provider.aio import Backoff
from vk_provider.errors import TransientError
from vk_provider.kube.client import KubeAPI
from vk_provider.kube.events import EventRecorder
from vk_provider.kube.watch import Informer, object_key
from vk_provider.metrics import PODS, RECONCILES
from vk_provider.pods.adoption import Adoption
from vk_provider.pods.deadline import PendingDeadline
from vk_provider.pods.disruption import Disruptions
from vk_provider.pods.gc import GarbageCollector
from vk_provider.pods.queue import KeyedQueue, QueueShutDown
from vk_provider.pods.reconcile import Reconciler, Requeue
from vk_provider.pods.resources import ResourceResolver
from vk_provider.pods.state import PodState, describe, phase
from vk_provider.pods.sync import StatusSync
from vk_provider.provider import Pod, PodLifecycle
from vk_provider.settings import PodsSettings

log = structlog.get_logger("vk_provider.pods")


class PodController:
    """Owns the pod watch, the queue and the workers, and builds the parts they share ``state`` with.

    Exposes ``ready``, the PodLookup view, and the parts whose loops the daemon's supervisor runs:
    ``sync.run()``, ``adoption.run()``, ``gc.run()``, ``disruptions.run()``, ``deadline.run()``.
    """

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
        self.recorder = recorder
        self.settings = settings
        self.informer = Informer(
            api, "/api/v1/pods", handler=self._on_pod_event, field_selector=f"spec.nodeName={node_name}"
        )
        self.queue = KeyedQueue(Backoff(base=settings.retry_base_seconds, cap=settings.retry_max_seconds))
        self.state = state = PodState(self.informer, self.queue)
        self.sync = StatusSync(state, api, provider, recorder)
        self.disruptions = Disruptions(
            state,
            self.sync,
            api,
            recorder,
            default_action=settings.spot_interruption,
            retry_seconds=settings.eviction_retry_seconds,
        )
        self.reconciler = Reconciler(
            state,
            self.sync,
            api,
            provider,
            recorder,
            resolver or ResourceResolver(api),
            self.disruptions,
            delete_poll_max_seconds=delete_poll_max_seconds,
        )
        self.deadline = PendingDeadline(state, self.sync, provider, recorder, settings)
        self.adoption = Adoption(state, provider, settings)
        self.gc = GarbageCollector(state, provider, settings, vanish_grace_seconds=vanish_grace_seconds)
        self._phases: dict[str, str] = {}
        self._phase_counts: Counter[str] = Counter()
        self._event_tasks: set[asyncio.Task[None]] = set()

    # ---- PodLookup -------------------------------------------------------------------------------
    def cached_pod(self, namespace: str, name: str) -> Pod | None:
        return self.informer.cache.get(f"{namespace}/{name}")

    def cached_pods(self) -> Iterator[Pod]:
        # One decoded pod at a time: a list of 10,000 decoded pods would take ~80 MB at once. The keys are
        # taken first, so the cache may change while the caller iterates.
        cache = self.informer.cache
        for key in list(cache):
            pod = cache.get(key)
            if pod is not None:
                yield pod

    @property
    def ready(self) -> bool:
        """The pod watch synced. The node also waits for the first adoption listing (``adoption.pending``)."""
        return self.informer.synced.is_set()

    # ---- watch -----------------------------------------------------------------------------------
    def _on_pod_event(self, kind: str, obj: Pod) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            self.state.deleted[key] = obj
            self.state.own_writes.pop(key, None)
            self.state.seen.pop(key, None)
            self._set_phase(key, None)
        else:
            current = phase(obj)
            self._set_phase(key, current)
            if kind == "ADDED" and current == "Pending":
                self.state.seen[key] = time.monotonic()
            elif current != "Pending":  # started (a standby's workers never reconcile it): nothing to create
                self.state.seen.pop(key, None)
            if kind == "MODIFIED" and self.state.own_echo(key, obj):
                return  # our own status or write-back PATCH coming back: nothing new to reconcile
        # Deletes go ahead of a backlog of creates, as status changes do (queue.py's first lane).
        self.queue.add(key, first=kind == "DELETED" or bool((obj.get("metadata") or {}).get("deletionTimestamp")))

    def _set_phase(self, key: str, current: str | None) -> None:
        old = self._phases.pop(key, None)
        if old is not None:
            self._phase_counts[old] -= 1
            PODS.labels(phase=old).set(self._phase_counts[old])
        if current is not None:
            self._phases[key] = current
            self._phase_counts[current] += 1
            PODS.labels(phase=current).set(self._phase_counts[current])

    async def run_watch(self) -> None:
        await self.informer.run()

    # ---- workers ---------------------------------------------------------------------------------
    async def run_worker(self) -> None:
        await self.informer.synced.wait()
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.reconciler.reconcile(key)
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
            log.warning("reconcile failed", key=key, error=describe(exc), failures=failures, retry_in=round(delay, 2))
        if failures == self.settings.max_retries:
            pod = self.informer.cache.get(key)
            if pod is not None:
                msg = (
                    f"reconcile failed {failures} times (last: {describe(exc)}); "
                    f"still retrying every {self.settings.retry_max_seconds:g}s at most"
                )
                self._spawn_event(pod, "Warning", "ReconcileRetrying", msg)

    def _spawn_event(self, pod: Pod, type_: str, reason: str, message: str) -> None:
        # Used from sync code paths; recorder.record never raises.
        task = asyncio.get_running_loop().create_task(self.recorder.record(pod, type_, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    # ---- shutdown --------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Stop taking work; workers finish their current key and exit."""
        await self.queue.shutdown()
