"""Orphan GC and vanished groups (task ``pods.gc``), once adoption is done.

Every ``pods.gc_interval_seconds`` the groups of this cluster and node are listed: one whose pod UID
is not in the watch cache and older than ``pods.gc_min_age_seconds`` is deleted. A group known for
longer than the vanish grace that is missing from the listing, without our delete, is marked in
``PodState.vanished`` and its pod requeued; reconcile then fails the pod (not recreated).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from vk_provider.kube.watch import object_key
from vk_provider.metrics import GC_DELETED
from vk_provider.pods.state import PodState, describe, meta, phase, uid
from vk_provider.pods.status import TERMINAL_PHASES
from vk_provider.provider import PodLifecycle
from vk_provider.settings import PodsSettings

log = structlog.get_logger("vk_provider.pods")


class GarbageCollector:
    def __init__(
        self, state: PodState, provider: PodLifecycle, settings: PodsSettings, *, vanish_grace_seconds: float
    ) -> None:
        self.state = state
        self.provider = provider
        self.settings = settings
        # A group created moments ago may be missing from a listing (not described yet): only groups
        # known for longer than this can be declared vanished.
        self.vanish_grace_seconds = vanish_grace_seconds

    async def run(self) -> None:
        await self.state.adopted.wait()
        while True:
            await asyncio.sleep(self.settings.gc_interval_seconds)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("garbage collection failed", error=describe(exc))

    async def sweep(self) -> int:
        """Delete groups of this cluster+node whose pod UID is not alive; notice groups that vanished.

        Returns the number of groups deleted. Safe only after the watch synced and groups were adopted.
        """
        state = self.state
        if not state.adopted.is_set():  # adoption itself waits for the watch sync
            return 0
        started = time.monotonic()
        known_before = {
            pod_uid: k for pod_uid, k in state.groups.items() if k.first_seen <= started - self.vanish_grace_seconds
        }
        # Identity and age only: a sweep maps no group's status (10,000 BackendPods at once would take
        # about 35 MB for a moment, which the allocator keeps).
        listed = await self.provider.backend_groups()
        # uid -> key: the pods are decoded one at a time (the cache holds JSON), not all kept at once.
        alive = {uid(p): key for key, p in state.informer.cache.items()}
        listed_uids = set()
        deleted = 0
        now = time.time()
        for group in listed:
            listed_uids.add(group.uid)
            known = state.groups.get(group.uid)
            if group.uid in alive:
                if known is None:
                    await self._remember(alive[group.uid])
                continue
            if group.uid in state.delete_requested:
                continue
            age = (now - group.created.timestamp()) if group.created is not None else None
            if age is None and known is not None:
                age = started - known.first_seen
            if age is None or age < self.settings.gc_min_age_seconds:
                continue
            log.info(
                "deleting orphan group", group=group.group_id, pod=f"{group.namespace}/{group.name}", uid=group.uid
            )
            await self.provider.delete_group(group.group_id)
            state.groups.pop(group.uid, None)
            deleted += 1
        GC_DELETED.inc(deleted)
        for pod_uid, known in known_before.items():
            if pod_uid in listed_uids or pod_uid in state.delete_requested:
                continue
            key = alive.get(pod_uid)
            pod = state.informer.cache.get(key) if key is not None else None
            if (
                pod is None
                or uid(pod) != pod_uid
                or meta(pod).get("deletionTimestamp")
                or phase(pod) in TERMINAL_PHASES
            ):
                continue
            if state.groups.get(pod_uid) is not known:
                continue
            state.groups.pop(pod_uid, None)
            state.vanished[pod_uid] = known.group.group_id
            state.queue.add(object_key(pod))
        return deleted

    async def _remember(self, key: str) -> None:
        """A listed group of a live pod the controller does not know yet: hold its status as adoption would."""
        pod = self.state.informer.cache.get(key)
        if pod is None:
            return
        bp = await self.provider.backend_pod(pod)
        if bp is not None:
            self.state.remember(bp)
