"""What the provider reports of its groups: an index entry as a ``BackendPod``, and the stream of
changed ones that ``status_changes()`` hands to the pod controller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from vk_provider.eci.index import Entry, Index
from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.placement import report_placement
from vk_provider.eci.status import container_group_to_pod_status, group_events, spot_notice
from vk_provider.provider import BackendGroup, BackendPod, Pod, PodLookup

# A group in these states has no zone or size of its own yet (Pending is placed once ECI reports a zone).
_UNPLACED = frozenset({"", "Scheduling", "ScheduleFailed"})


def billed_size(group: ContainerGroup) -> str:
    """What ECI bills the group as: its instance type when it has one, else ``<vCPU>-<GiB>Gi``."""
    if group.InstanceType:
        return group.InstanceType
    if group.Cpu is None or group.Memory is None:
        return ""
    return f"{group.Cpu:g}-{group.Memory:g}Gi"


class Feed:
    """Maps entries to BackendPods (status mapping reads the current pod from ``pods``, when set) and
    batches the published ones until the consumer of ``changes()`` takes them."""

    def __init__(self, index: Index, pods: PodLookup | None = None) -> None:
        self.pods = pods
        self._index = index
        self._pending: dict[str, BackendPod] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def _current_pod(self, entry: Entry) -> Pod | None:
        if self.pods is None:
            return None
        pod = self.pods.cached_pod(entry.namespace, entry.name)
        if pod is not None and (pod.get("metadata") or {}).get("uid") == entry.uid:
            return pod
        return None

    def backend_pod(self, entry: Entry, pod: Pod | None = None, group: ContainerGroup | None = None) -> BackendPod:
        """The entry as a BackendPod; ``group`` is the entry's group when the caller has already read it."""
        # A group created moments ago and not described yet is reported as Pending.
        group = group or entry.group or ContainerGroup(ContainerGroupId=entry.group_id, Status="Pending")
        status = container_group_to_pod_status(group, pod or self._current_pod(entry))
        report_placement(entry, group, status)
        return BackendPod(
            namespace=entry.namespace,
            name=entry.name,
            uid=entry.uid,
            group_id=entry.group_id,
            group_status=group.Status,
            status=status,
            created=group.CreationTime,
            events=entry.events + group_events(group),
            interruption=spot_notice(group),
            zone=group.ZoneId if group.Status not in _UNPLACED else "",
            size=billed_size(group) if group.Status not in _UNPLACED else "",
        )

    def backend_pods(self) -> list[BackendPod]:
        """Every group of the index."""
        return [self.backend_pod(e) for e in self._index.entries()]

    def backend_groups(self) -> list[BackendGroup]:
        """Every group of the index, identity and age only: no status mapping, no pod read."""
        return [BackendGroup(e.namespace, e.name, e.uid, e.group_id, e.created) for e in self._index.entries()]

    def publish(self, entry: Entry, group: ContainerGroup | None = None) -> None:
        """Hand the entry's group to ``changes()``; ``group`` is that group when the caller has it (as just
        described, or read from the entry)."""
        group = group or entry.group
        if group is None:
            return
        self._pending[entry.uid] = self.backend_pod(entry, group=group)
        self._index.mark_published(entry, group)
        self._wakeup.set()

    async def changes(self) -> AsyncIterator[BackendPod]:
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, {}
            for bp in batch.values():
                self._handed_over(bp)
                yield bp

    def _handed_over(self, bp: BackendPod) -> None:
        """``bp`` goes to the consumer, which mirrors each of its events once: its entry need not hold the
        events we report with the group's (translation warnings, NoStock, ContainerGroupScheduled) any more.
        Not at ``publish``: a later publish of the pod before the consumer came replaces the pending one."""
        entry = self._index.get(bp.uid)
        if entry is not None and entry.events:
            entry.events = [e for e in entry.events if not any(e is sent for sent in bp.events)]

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
