"""Adoption after a restart: learn every existing container group before any pod is created or deleted.

The ClientToken is no guard on its own: a repeated create carries freshly minted service-account
tokens (and possibly changed ConfigMaps), so its parameters differ and the simulator answers
IdempotentParameterMismatch (a permanent failure here) instead of the existing group; ECI's
idempotency window may be limited as well. So until ``run()`` (task ``pods.adopt``) has listed the
groups, workers do status work only (groups already reported by the status stream, DaemonSet
refusals, events) and hold creates, updates and deletes; the GC does not run. ``run()`` retries with
backoff for as long as it takes and then requeues every pod. The node's Ready waits for the first
listing only: if that fails (ECI down at start) the node turns Ready anyway with the adoption pending
(``pending()``), since NotReady would get every pod evicted after 5 minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from vk_provider.aio import Backoff
from vk_provider.metrics import ADOPTION_PENDING
from vk_provider.pods.state import PodState, describe, images, meta, uid
from vk_provider.provider import PodLifecycle
from vk_provider.settings import PodsSettings

log = structlog.get_logger("vk_provider.pods")

CONFIRM_PER_SECOND = 200.0  # adopted pods with a group requeued per second (10,000 in 50 s)


class Adoption:
    """Sets ``PodState.adopted`` once the existing groups are known; says why while it is pending."""

    def __init__(self, state: PodState, provider: PodLifecycle, settings: PodsSettings) -> None:
        self.state = state
        self.provider = provider
        self.settings = settings
        self._error: str | None = None  # the last failure of the adoption listing

    def pending(self) -> tuple[str, str] | None:
        """None once existing groups are adopted; else (state, why) for the node's Ready message."""
        if self.state.adopted.is_set():
            return None
        if self._error is None:
            return "listing", "listing existing ECI container groups for adoption"
        return (
            "failing",
            f"existing ECI container groups not adopted yet: listing them failed ({self._error}), retrying",
        )

    async def run(self, notify: Callable[[], None] | None = None) -> None:
        """After the watch synced: learn every existing group, so nothing is created twice.

        Retries with backoff until the listing succeeds (ECI may be down when the daemon starts);
        ``notify`` is called when ``pending()`` changes. Then every pod is requeued.
        """
        state = self.state
        ADOPTION_PENDING.set(1)
        await state.informer.synced.wait()
        attempt = 0
        backoff = Backoff(base=self.settings.retry_base_seconds, cap=min(30.0, self.settings.retry_max_seconds))
        while True:
            try:
                groups = await self.provider.backend_pods()
                break
            except Exception as exc:
                delay = backoff.delay(attempt)
                attempt += 1
                first = self._error is None
                self._error = describe(exc)[:200]
                log.warning("listing groups for adoption failed", error=repr(exc), retry_in=round(delay, 2))
                if first and notify is not None:
                    notify()
                await asyncio.sleep(delay)
        for bp in groups:
            state.remember(bp)  # the status stream may have reported it first: it keeps its first_seen
        adopted = 0
        for pod in state.informer.cache.values():
            pod_uid = uid(pod)
            if pod_uid in state.groups:
                adopted += 1
                state.spec_images[pod_uid] = images(pod)
        # No await from here on: a worker that saw "not adopted" and held a key is requeued below.
        state.adopted.set()
        ADOPTION_PENDING.set(0)
        self._error = None
        # Pods still without a group and pods being deleted first: after a takeover they are what waits.
        # The others only confirm their status: they come back at CONFIRM_PER_SECOND, behind the status
        # changes the new leader has to write.
        waiting: list[str] = []
        settled: list[str] = []
        for key, pod in state.informer.cache.items():
            needs_work = uid(pod) not in state.groups or bool(meta(pod).get("deletionTimestamp"))
            (waiting if needs_work else settled).append(key)
        state.queue.add_first(waiting + list(state.deleted))
        state.queue.spread(settled, per_second=CONFIRM_PER_SECOND)
        log.info("adopted existing groups", groups=len(groups), pods=adopted, attempts=attempt + 1)
        if notify is not None:
            notify()
