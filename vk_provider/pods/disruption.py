"""Announced interruptions (ECI spot reclamation): warn, mark the pod, evict it before the release.

When a pod's group carries an ``Interruption`` (ECI's ``SpotToBeReleased`` notice, about 3 minutes
before the group is released), reconcile hands it to ``notice()``; the task ``pods.disruption`` then,
for each pod, at once:

- records a Warning ``SpotInterruption`` event naming the group and the release time;
- sets the pod condition ``DisruptionTarget=True`` with reason ``SpotInterruption`` (the condition the
  kubelet and the eviction machinery set for their own disruptions);
- unless the pod says ``vk-eci.io/spot-interruption: report`` (or the daemon's default is report),
  evicts it through the Eviction API (``POST pods/<name>/eviction``, policy/v1), so PodDisruptionBudgets
  are honoured and a controller starts the replacement while the old group still runs. A 429 (the
  budget forbids it now) is retried every ``pods.eviction_retry_seconds`` until the release time; a pod
  without a controller is evicted just the same (its owner asked for spot).

What happens at the release is the status mapping's (``BidFailed``), not this module's: an evicted
pod is deleted as usual; one that could not be evicted in time fails when its group is released.
Each pod has its own coroutine, so 100 notices at once are 100 concurrent evictions, none waiting on
another's 429s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.kube.events import EventRecorder
from vk_provider.kube.watch import object_key
from vk_provider.metrics import SPOT_EVICTIONS
from vk_provider.pods.state import PodState, describe, meta, phase, uid
from vk_provider.pods.status import TERMINAL_PHASES, merge_conditions
from vk_provider.pods.sync import StatusSync
from vk_provider.provider import Interruption, Pod

log = structlog.get_logger("vk_provider.pods")

ACTION_ANNOTATION = "vk-eci.io/spot-interruption"
ACTIONS = ("evict", "report")
REASON = "SpotInterruption"
CONDITION = "DisruptionTarget"


@dataclass(frozen=True)
class Notice:
    key: str
    uid: str
    group_id: str
    interruption: Interruption


def action(pod: Pod, default: str) -> str:
    """What the pod asks for at a notice: its annotation when valid, else ``default``."""
    value = str((meta(pod).get("annotations") or {}).get(ACTION_ANNOTATION) or "").strip().lower()
    return value if value in ACTIONS else default


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Disruptions:
    """The ``pods.disruption`` loop: one coroutine per announced pod, owned by ``run()``."""

    def __init__(
        self,
        state: PodState,
        sync: StatusSync,
        api: KubeAPI,
        recorder: EventRecorder,
        *,
        default_action: str = "evict",
        retry_seconds: float = 2.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.state = state
        self.sync = sync
        self.api = api
        self.recorder = recorder
        self.default_action = default_action
        self.retry_seconds = retry_seconds
        self._now = now
        self._sleep = sleep
        self._seen: dict[str, Notice] = {}  # pod uid -> the notice taken (one per group)
        self._queue: asyncio.Queue[Notice] = asyncio.Queue()

    def notice(self, pod: Pod, group_id: str, interruption: Interruption) -> None:
        """A pod's group announced its release: handle it once per (pod, group). Never blocks."""
        pod_uid = uid(pod)
        seen = self._seen.get(pod_uid)
        if seen is not None and seen.group_id == group_id:
            return
        self._seen[pod_uid] = n = Notice(object_key(pod), pod_uid, group_id, interruption)
        self._queue.put_nowait(n)

    def notice_for(self, pod_uid: str) -> Notice | None:
        """The notice taken for the pod, if any (a group gone after one was released, not vanished)."""
        return self._seen.get(pod_uid)

    def forget(self, pod_uid: str) -> None:
        self._seen.pop(pod_uid, None)

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                n = await self._queue.get()
                task = asyncio.get_running_loop().create_task(self._handle(n), name=f"pods.disruption:{n.key}")
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _current(self, n: Notice) -> Pod | None:
        pod = self.state.informer.cache.get(n.key)
        return pod if pod is not None and uid(pod) == n.uid else None

    async def _handle(self, n: Notice) -> None:
        try:
            await self._interrupt(n)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one pod's trouble never ends the loop
            log.warning("spot interruption handling failed", pod=n.key, error=describe(exc))

    async def _interrupt(self, n: Notice) -> None:
        pod = self._current(n)
        if pod is None or phase(pod) in TERMINAL_PHASES:
            return
        release = _rfc3339(n.interruption.release_at)
        what = action(pod, self.default_action)
        then = (
            "evicting the pod so its controller can replace it first"
            if what == "evict"
            else f"the pod is only reported ({ACTION_ANNOTATION}: report) and fails at the release"
        )
        message = f"ECI will release spot container group {n.group_id} at {release} ({n.interruption.message}); {then}"
        log.info("spot interruption", pod=n.key, group=n.group_id, release_at=release, action=what)
        await self.recorder.record(pod, "Warning", REASON, message)
        condition = {
            "type": CONDITION,
            "status": "True",
            "reason": REASON,
            "message": f"spot container group {n.group_id} is released at {release}",
        }

        def marked(p: Pod) -> dict[str, Any]:
            status = dict(p.get("status") or {})
            status["conditions"] = merge_conditions(status.get("conditions") or [], [condition])
            return status

        await self.sync.write_status(pod, marked)
        if what == "evict" and not meta(pod).get("deletionTimestamp"):
            await self._evict(n, pod)

    async def _evict(self, n: Notice, pod: Pod) -> None:
        """POST the Eviction until it is accepted, the pod is gone, or the release time has passed."""
        m = meta(pod)
        path = f"/api/v1/namespaces/{m.get('namespace')}/pods/{m.get('name')}/eviction"
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": m.get("name"), "namespace": m.get("namespace")},
            "deleteOptions": {"preconditions": {"uid": n.uid}},
        }
        blocked = False
        while True:
            try:
                await self.api.request("POST", path, body=body)
            except KubeError as exc:
                if exc.not_found or exc.conflict:  # gone, or replaced by a pod of the same name
                    SPOT_EVICTIONS.labels(result="gone").inc()
                    return
                left = (n.interruption.release_at - self._now()).total_seconds()
                if exc.status == 429:
                    if not blocked:
                        blocked = True
                        SPOT_EVICTIONS.labels(result="blocked").inc()
                        msg = f"eviction refused for now ({exc.message}); retrying until the release at "
                        await self.recorder.record(
                            pod, "Warning", "SpotEvictionBlocked", msg + _rfc3339(n.interruption.release_at)
                        )
                else:
                    log.warning("spot eviction failed", pod=n.key, error=str(exc))
                if left <= 0:
                    SPOT_EVICTIONS.labels(result="too_late").inc()
                    msg = "the group was released before the eviction was allowed; the pod fails with BidFailed"
                    await self.recorder.record(pod, "Warning", "SpotEvictionTooLate", msg)
                    return
                await self._sleep(min(self.retry_seconds, left))
                if self._current(n) is None:
                    return
                continue
            SPOT_EVICTIONS.labels(result="evicted").inc()
            await self.recorder.record(
                pod, "Normal", "SpotEvicted", "evicted through the Eviction API ahead of the spot release"
            )
            return
