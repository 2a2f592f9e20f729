"""The pending deadline (task ``pods.deadline``): a group that never gets Running is not billed forever.

Every ``pods.pending_check_interval_seconds`` each pod whose group is still Pending or Scheduling is
checked against its deadline: the pod's ``k8s.aliyun.com/eci-max-pending-minute`` (10 to 1440, ECI's
documented range, validated when the group is created) or ``pods.max_pending_minutes`` (240, ECI's
default). Past it, counted from the group's creation, the pod fails with reason ``PendingTimeout`` and
a message with what ECI last said (a container's waiting reason, e.g. an image pull back-off), and then
its group is deleted. The status is written first: a Failed pod is never given a new group.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from vk_provider.kube.events import EventRecorder
from vk_provider.kube.watch import object_key
from vk_provider.metrics import PENDING_TIMEOUTS
from vk_provider.pods.state import Known, PodState, describe, meta, phase, uid
from vk_provider.pods.status import TERMINAL_PHASES, failed_status
from vk_provider.pods.sync import StatusSync
from vk_provider.provider import Pod, PodLifecycle
from vk_provider.settings import PodsSettings

log = structlog.get_logger("vk_provider.pods")

ANNOTATION = "k8s.aliyun.com/eci-max-pending-minute"
REASON = "PendingTimeout"
PENDING_GROUP_STATES = frozenset({"", "Pending", "Scheduling"})


def deadline_minutes(pod: Pod, default: float) -> float:
    """The pod's pending deadline in minutes: its annotation (validated at create) or ``default``."""
    value = str((meta(pod).get("annotations") or {}).get(ANNOTATION) or "").strip()
    return float(value) if value.isdigit() and int(value) > 0 else default


def last_said(pod: Pod, group_status: str) -> str:
    """What the backend last said about a pending pod: a waiting container's reason and message, the
    status message, or the group's status word."""
    status = pod.get("status") or {}
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (s.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting.get("reason") != "ContainerCreating":
            text = f"{s.get('name')}: {waiting['reason']}"
            return f"{text}: {waiting['message']}" if waiting.get("message") else text
    if status.get("message"):
        return str(status["message"])
    return f"the group is {group_status or 'not yet described'}"


class PendingDeadline:
    def __init__(
        self,
        state: PodState,
        sync: StatusSync,
        provider: PodLifecycle,
        recorder: EventRecorder,
        settings: PodsSettings,
    ) -> None:
        self.state = state
        self.sync = sync
        self.provider = provider
        self.recorder = recorder
        self.settings = settings

    async def run(self) -> None:
        await self.state.adopted.wait()
        while True:
            await asyncio.sleep(self.settings.pending_check_interval_seconds)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pending deadline check failed", error=describe(exc))

    def _age_seconds(self, known: Known) -> float:
        created = known.group.created
        if created is not None:
            return time.time() - created.timestamp()
        return time.monotonic() - known.first_seen

    async def sweep(self) -> int:
        """Fail and delete the groups past their pending deadline; returns how many."""
        state = self.state
        timed_out = 0
        for pod_uid, known in list(state.groups.items()):
            if known.group.group_status not in PENDING_GROUP_STATES or pod_uid in state.delete_requested:
                continue
            key = f"{known.group.namespace}/{known.group.name}"
            pod = state.informer.cache.get(key)
            if pod is None or uid(pod) != pod_uid or meta(pod).get("deletionTimestamp"):
                continue
            if phase(pod) in TERMINAL_PHASES:
                continue
            minutes = deadline_minutes(pod, self.settings.max_pending_minutes)
            if self._age_seconds(known) < minutes * 60:
                continue
            try:
                await self._time_out(pod, known, minutes)
                timed_out += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pending timeout not applied; retrying later", pod=key, error=describe(exc))
        return timed_out

    async def _time_out(self, pod: Pod, known: Known, minutes: float) -> None:
        group = known.group
        said = last_said(pod, group.group_status)
        message = (
            f"the container group {group.group_id or '(no id yet)'} was not Running after {minutes:g} minutes "
            f"({ANNOTATION}); ECI last said: {said}. The group was deleted"
        )
        log.info("pending deadline passed", pod=object_key(pod), group=group.group_id, minutes=minutes)
        await self.sync.write_status(pod, lambda p: failed_status(p, REASON, message))
        await self.recorder.record(pod, "Warning", REASON, message)
        self.state.delete_requested.add(uid(pod))
        await self.provider.delete_pod(pod)
        PENDING_TIMEOUTS.inc()
