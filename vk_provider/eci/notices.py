"""Spot release notices, looked for with DescribeContainerGroupEvents within the poller's call budget.

The status poll describes a group only when DescribeContainerGroupStatus reports its status changed;
a ``SpotToBeReleased`` event changes no status, and whether ECI's ``SinceSecond`` even lists a group
whose only news is an event is not documented. So ``poll_once`` asks DescribeContainerGroupEvents for
this node's groups (by tag) with events since its last success, and describes the groups that carry a
``SpotToBeReleased`` event the index does not know yet; they are published like any changed group, and
the pod controller evicts their pods. At most ``MAX_PAGES`` pages (200 groups each, ECI's documented
default) per round: a burst of starting groups (each with its Pulled/Started events) cannot turn it into
a flood of calls; the rest is read in the next round (its window overlaps).

This module has no loop of its own: the poller (poller.py) asks ``due`` each time it has a slow tick's
spare call and, when it is, spends that call here instead of on a sweep page, so the notices fit in the
poller's budget (at most 20 calls/min idle). ``due`` is true every ``every`` spare calls
(``eci.spot_notice_poll_interval_seconds`` in slow ticks, rounded, at least one: 10 s with 6 s ticks is
every other tick, 12 s) and only while a spot group is in the index: no spot group, no call. The worst
case from a notice to its detection is therefore ``every`` slow ticks plus the call (12 s with the
defaults; on an HA standby, ticking every 15 s, 30 s), against a notice ECI gives about 3 minutes ahead.
"""

from __future__ import annotations

import math
import time

import structlog

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
    def __init__(self, settings: ECISettings, *, node_name: str, index: Index, feed: Feed, call: Call) -> None:
        self.interval = settings.spot_notice_poll_interval_seconds
        # Checks come with the poller's slow ticks: every ``every``-th spare call, 0 = never.
        self.every = max(1, round(self.interval / settings.status_poll_interval_seconds)) if self.interval > 0 else 0
        self._tags = tag_params(settings.cluster_name, node_name)
        self._index = index
        self._feed = feed
        self._call = call
        self._last_ok: float | None = None
        self._spare = 0  # spare calls offered since the last check

    def due(self) -> bool:
        """The poller has a spare call: whether it goes to a notice check (see the module's docstring)."""
        if not self.every:
            return False
        if not any(e.spot for e in self._index.entries()):
            self._spare, self._last_ok = 0, None  # nothing to look back for: a new spot group is checked first
            return False
        self._spare += 1
        if self._last_ok is not None and self._spare < self.every:
            return False
        self._spare = 0
        return True

    async def check(self) -> None:
        """A notice check in the poller's spare call; a failure is logged (the next one looks back further)."""
        try:
            found = await self.poll_once()
            if found:
                log.info("spot release notices", groups=found)
        except ProviderError as exc:
            log.warning("spot notice poll failed", error=exc.message, reason=exc.reason)
        except Exception as exc:  # a malformed answer must not stop the poller
            log.error("spot notice poll crashed", error=repr(exc), exc_info=exc)

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
                group = entry.group if entry is not None else None
                if entry is not None and (group is None or spot_notice(group) is None):
                    ids.append(item.ContainerGroupId)
        published = 0
        for group in await describe_ids(self._call, ids) if ids else []:
            entry = self._index.remember(group)
            if entry is not None:
                self._feed.publish(entry, group)
                published += 1
        self._last_ok = now
        return published
