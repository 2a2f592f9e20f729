"""Spot release notices, looked for on their own (task ``eci-spot-notices``).

The status poll describes a group only when DescribeContainerGroupStatus reports its status changed;
a ``SpotToBeReleased`` event changes no status, and whether ECI's ``SinceSecond`` even lists a group
whose only news is an event is not documented. So every ``eci.spot_notice_poll_interval_seconds``
(10 s; the notice comes about 3 minutes ahead) this loop asks DescribeContainerGroupEvents for this
node's groups (by tag) with events since its last success, and describes the groups that carry a
``SpotToBeReleased`` event the index does not know yet; they are published like any changed group, and
the pod controller evicts their pods. At most ``MAX_PAGES`` pages (200 groups each, ECI's documented
default) per round: a burst of starting groups (each with its Scheduled/Pulled/Started events) cannot
turn it into a flood of calls; the rest is read in the next round (its window overlaps).

ECI call budget: one call per interval in steady state (6/min), at most ``MAX_PAGES`` per interval
during bursts of events, plus one describe per 20 newly noticed groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable

import structlog

from vk_provider.aio import create_guarded_task
from vk_provider.eci.feed import Feed
from vk_provider.eci.index import Index
from vk_provider.eci.listing import STATUS_PAGE, Call, Listing, describe_ids, tag_params
from vk_provider.eci.models import DescribeContainerGroupEventsResponse
from vk_provider.eci.status import SPOT_NOTICE_REASON, spot_notice
from vk_provider.errors import ProviderError
from vk_provider.settings import ECISettings

log = structlog.get_logger("vk_provider.eci.notices")

MAX_PAGES = 5
# ECI's documented answer has no NextToken, though the request takes one "obtained from the previous
# query": a NextToken, when sent, is followed; without one a round reads one page of 200 groups.


class SpotNotices:
    def __init__(
        self,
        settings: ECISettings,
        *,
        node_name: str,
        index: Index,
        feed: Feed,
        call: Call,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.interval = settings.spot_notice_poll_interval_seconds
        self._tags = tag_params(settings.cluster_name, node_name)
        self._index = index
        self._feed = feed
        self._call = call
        self._sleep = sleep
        self._last_ok: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = create_guarded_task(self._loop(), name="eci-spot-notices")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll_once(self) -> int:
        """One round; returns how many groups with a new notice were described and published."""
        now = time.monotonic()
        since = max(10, math.ceil(now - (self._last_ok or now) + 2 * self.interval + 5))
        params = {**self._tags, "SinceSecond": since, "Limit": STATUS_PAGE}
        ids: list[str] = []
        listing = Listing(self._call, DescribeContainerGroupEventsResponse, params, max_pages=MAX_PAGES)
        async for page, _ in listing.pages_left():
            for item in page.Data:
                if not any(e.Reason == SPOT_NOTICE_REASON for e in item.Events):
                    continue
                entry = self._index.by_group(item.ContainerGroupId)
                if entry is not None and (entry.group is None or spot_notice(entry.group) is None):
                    ids.append(item.ContainerGroupId)
        published = 0
        for group in await describe_ids(self._call, ids) if ids else []:
            entry = self._index.remember(group)
            if entry is not None:
                self._feed.publish(entry)
                published += 1
        self._last_ok = now
        return published

    async def _loop(self) -> None:
        while True:
            try:
                found = await self.poll_once()
                if found:
                    log.info("spot release notices", groups=found)
            except ProviderError as exc:
                log.warning("spot notice poll failed", error=exc.message, reason=exc.reason)
            except Exception as exc:
                log.error("spot notice poll crashed", error=repr(exc), exc_info=exc)
            await self._sleep(self.interval)
