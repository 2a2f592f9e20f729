"""The status poller: keeps the index of this node's groups fresh, publishing what changed.

Every ``eci.status_poll_interval_seconds`` (a tick) it makes one incremental poll —
DescribeContainerGroupStatus with SinceSecond (and our cluster/node tags) names the groups whose status
changed; their details come from DescribeContainerGroups by id, 20 per call — and advances the periodic
listings by tag ("sweeps") by at most one page:

- the presence check, ``eci.presence_check_interval_seconds`` after the last one completed:
  DescribeContainerGroupStatus by tag without SinceSecond, 200 ids per page, tells which groups still
  exist (groups deleted behind our back leave the index, so backend_pods and the GC see them gone; ids
  the index does not know are described);
- the full resync, ``eci.full_resync_interval_seconds`` after the last one completed:
  DescribeContainerGroups by tag, 20 per page, each page applied to the index as it arrives.

When both are under way they take pages in turn. At the end of a sweep, groups it did not see that
were in the index 30 s before it started are described by id and forgotten if gone. A page that fails
abandons its sweep (it starts again later) and never holds up the polls. Only the first resync (the
index, and adoption, wait for it), backend_pods with a stale index and the resync after the poller was
down for an hour run at full speed (a "burst").

Ticks are fast while groups are in transition (``eci.status_poll_fast_interval_seconds``, 0.5 s) and
slow otherwise (``eci.status_poll_interval_seconds``, 6 s). A group is in transition from its create
until it leaves Scheduling/Pending/Restarting/Updating, if that happens within
``eci.status_poll_fast_window_seconds`` (so a group stuck Pending does not keep the poller fast), and
from a delete (ours or anyone's: Terminating) until it is gone. A create or a delete wakes a poller
that sleeps a slow tick (``hurry``). The sweeps, and the polls that look back far (``poll_once``),
come once per slow tick's worth of ticks, whatever the cadence.

ECI call budget at 10,000 steady pods with the defaults: one poll per 6 s tick and at most one more call
per slow tick — a sweep page, or, while spot groups exist, every other slow tick a spot notice check
(notices.py) — i.e. at most 20 calls/min whatever the pod count, plus describes of groups that
really changed. On average, without spot groups: 10 polls/min, a 50-page presence check every 10 to
15 min (300 s plus its own 300 to 600 s) and a 500-page resync about every 2 h (3600 s plus the 50 to
75 min it takes, sharing slow ticks with presence checks), about 18 calls/min; with spot groups the
notice checks take every other slow tick (5 calls/min) and the sweeps the rest, so they take twice as
long (a presence check at 10,000 pods 10 minutes rather than 5), still at most 20 calls/min. The
node's ping is free while the poller's calls succeed.
While groups are in transition the polls come 12 times as often: 120 DescribeContainerGroupStatus a
minute plus their pages, well inside ECI's 2,000/min.

On an HA standby (``standby_interval``, set from ``ha.standby_poll_interval_seconds``, 15 s by default)
a tick comes at most that often: at most 8 calls/min (4 polls, 4 sweep pages or notice checks) plus
describes of groups that changed, whatever the pod count; the index stays warm for a takeover.

A described group that failed to schedule for lack of stock goes to placement.py for its next attempt
instead of being published.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from vk_provider import jsoncodec
from vk_provider.aio import create_guarded_task
from vk_provider.eci.feed import Feed
from vk_provider.eci.index import Entry, Index, digest
from vk_provider.eci.listing import PAGE, STATUS_PAGE, Call, Listing, describe_ids, describe_pages, tag_params
from vk_provider.eci.models import ContainerGroup, DescribeContainerGroupsResponse, DescribeContainerGroupStatusResponse
from vk_provider.eci.notices import SpotNotices
from vk_provider.eci.placement import Placement
from vk_provider.eci.status import failure_reason, is_no_stock
from vk_provider.errors import ProviderError
from vk_provider.settings import ECISettings

log = structlog.get_logger("vk_provider.eci.poller")

RESYNC, PRESENCE = "resync", "presence"
_TRANSIENT_STATUSES = frozenset({"Scheduling", "Pending", "Restarting", "Updating"})


@dataclass
class _Sweep:
    """One listing by tag of this node's groups — a full resync (DescribeContainerGroups) or a presence
    check (DescribeContainerGroupStatus) — walked page by page: all at once (a burst), or by the poller,
    one page per tick (paced)."""

    kind: str  # RESYNC or PRESENCE
    listing: Listing[DescribeContainerGroupsResponse] | Listing[DescribeContainerGroupStatusResponse]
    started: float = field(default_factory=time.monotonic)
    seen: set[str] = field(default_factory=set)


class Poller:
    """The guarded task ``eci-status-poller`` (``start``/``close``), and the listings it makes, which
    the provider also calls at full speed (``resync``, ``presence_check``)."""

    def __init__(
        self,
        settings: ECISettings,
        *,
        node_name: str,
        index: Index,
        feed: Feed,
        placement: Placement,
        notices: SpotNotices,
        call: Call,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self._notices = notices
        self._tags = tag_params(settings.cluster_name, node_name)
        self._index = index
        self._feed = feed
        self._placement = placement
        self._call = call
        self._sleep = sleep
        self.synced = False  # a full resync completed: the index knows every group of this node
        self._last_poll_ok: float | None = None
        self._last_resync: float | None = None
        self._last_presence: float | None = None
        self._last_burst = -math.inf  # when the last full-speed resync completed
        self._sweeps: dict[str, _Sweep] = {}  # the paced sweeps under way, by kind
        self._sweep_retry_at: dict[str, float] = {}  # a sweep that failed starts again from then
        self._sweep_turn = ""  # the kind that had the last page
        self._resync_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._sweep_credit = 0.0  # tick time since the last sweep step: a page per slow tick's worth
        # On an HA standby (set by the daemon): tick no more often than this, to keep the index warm
        # at a small call budget; None on the leader.
        self.standby_interval: float | None = None
        self._standby_next = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        if self._task is None:
            self._task = create_guarded_task(self._poll_loop(), name="eci-status-poller")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def index_current(self) -> bool:
        """Whether backend_pods may answer from the index: a full resync completed within its interval, or
        the poller's paced resync is under way (the GC asks every few minutes, and a listing is 500
        calls at 10k pods)."""
        fresh = self._last_resync is not None and (
            time.monotonic() - self._last_resync < self.settings.full_resync_interval_seconds
        )
        running = self._task is not None and not self._task.done() and not self._closed
        pacing = (RESYNC in self._sweeps or RESYNC in self._sweep_retry_at) and running
        return self.synced and (fresh or pacing)

    # --- sweeps: the listings by tag (full resync, presence check) -----------------------------------

    def _new_sweep(self, kind: str) -> _Sweep:
        if kind == RESYNC:
            return _Sweep(kind, Listing(self._call, DescribeContainerGroupsResponse, {**self._tags, "Limit": PAGE}))
        params = {**self._tags, "Limit": STATUS_PAGE}
        return _Sweep(kind, Listing(self._call, DescribeContainerGroupStatusResponse, params))

    async def _sweep_page(self, sweep: _Sweep) -> None:
        """Fetch and apply the next page of a sweep.

        A resync page's groups go into the index at once (``remember`` + ``_after_change``), so what
        a sweep learns is never older than its last call; a presence page only records the ids."""
        page, _ = await sweep.listing.next_page()
        if isinstance(page, DescribeContainerGroupsResponse):
            for g in page.ContainerGroups:
                sweep.seen.add(g.ContainerGroupId)
                await self._apply(g)
        else:
            sweep.seen.update(item.ContainerGroupId for item in page.Data)

    async def _apply(self, group: ContainerGroup) -> None:
        changed = self._index.remember(group)
        if changed is not None:
            await self._after_change(changed, group)

    async def _after_change(self, entry: Entry, group: ContainerGroup) -> None:
        """``group``: the entry's group as just described (what the entry holds, with its tags)."""
        if is_no_stock(group) and await self._placement.next_attempt(entry, failure_reason(group)[1]):
            return
        self._feed.publish(entry, group)

    async def _finish_sweep(self, sweep: _Sweep, *, verify: bool) -> None:
        """What a listing does once complete: forget the groups it did not see (unless created less than
        30 s before it started: they may be missing from it), and, for a presence check, describe the
        ids it saw but the index does not know. A paced sweep (``verify``) spans minutes, long enough
        for groups to be created and deleted under its cursor, so it forgets a group only after a
        describe by id has confirmed it is gone."""
        index = self._index
        missing = [e for e in index.entries() if e.group_id not in sweep.seen and e.created_at < sweep.started - 30]
        unknown = [gid for gid in sweep.seen if index.by_group(gid) is None] if sweep.kind == PRESENCE else []
        to_describe = unknown + ([e.group_id for e in missing] if verify else [])
        found = await describe_ids(self._call, to_describe) if to_describe else []
        found_ids = {g.ContainerGroupId for g in found}
        for entry in missing:
            if entry.group_id not in found_ids and index.get(entry.uid) is entry:
                index.forget(entry.uid)
        for g in found:
            await self._apply(g)
        now = time.monotonic()
        if sweep.kind == RESYNC:
            self.synced = True
            self._last_resync = now
        else:
            self._last_presence = now
        # A listing completed, paced or not: the poller's sweep of that kind has nothing left to do.
        if self._sweeps.get(sweep.kind) is sweep or not verify:
            self._sweeps.pop(sweep.kind, None)
            self._sweep_retry_at.pop(sweep.kind, None)

    async def _burst(self, kind: str) -> None:
        """A listing at full speed, every page at once."""
        sweep = self._new_sweep(kind)
        while not sweep.listing.done:
            await self._sweep_page(sweep)
        await self._finish_sweep(sweep, verify=False)

    async def resync(self) -> None:
        """Full resync by tag at full speed: refresh the index, publish what changed, forget vanished
        groups. Used at start (adoption waits for it), by backend_pods/backend_groups when the index is
        stale, and after the poller was down for an hour; the periodic resync is a paced sweep instead
        (``_sweep_step``). A caller that waited for a burst already under way takes its result (the index
        it left)."""
        asked = time.monotonic()
        async with self._resync_lock:
            if self.synced and self._last_burst >= asked:
                return
            await self._burst(RESYNC)
            self._last_burst = time.monotonic()

    async def presence_check(self) -> None:
        """Which groups still exist, at full speed: DescribeContainerGroupStatus by tag without SinceSecond,
        200 per page (50 calls at 10k pods, against 500 for a full resync). Groups gone from it leave the
        index, so backend_pods — and the GC's vanished-group check — see them gone; unknown ones are described.
        The poller runs the same listing as a paced sweep (``_sweep_step``)."""
        await self._burst(PRESENCE)

    def _sweep_interval(self, kind: str) -> float:
        if kind == RESYNC:
            return self.settings.full_resync_interval_seconds
        return self.settings.presence_check_interval_seconds

    async def _sweep_step(self) -> None:
        """One page of the periodic sweeps, at most, per poller tick.

        A sweep starts when its interval has passed since the previous listing of its kind completed;
        when both are under way they take pages in turn, so a long resync does not hold up the presence
        check. A page that fails abandons its sweep, which starts again from the first page later
        (after ``min(interval, 20 polls)``); the status polls go on meanwhile."""
        now = time.monotonic()
        for kind, last in ((RESYNC, self._last_resync), (PRESENCE, self._last_presence)):
            if kind in self._sweeps or last is None or now - last < self._sweep_interval(kind):
                continue
            if now < self._sweep_retry_at.get(kind, now):
                continue
            self._sweep_retry_at.pop(kind, None)
            self._sweeps[kind] = self._new_sweep(kind)
            log.info("eci sweep started", sweep=kind, groups=len(self._index))
        if not self._sweeps:
            return
        kind = next((k for k in self._sweeps if k != self._sweep_turn), self._sweep_turn)
        self._sweep_turn = kind
        sweep = self._sweeps[kind]
        page = sweep.listing.pages + 1
        try:
            await self._sweep_page(sweep)
            if self._sweeps.get(kind) is not sweep:
                return  # a burst listing of the same kind completed meanwhile
            if sweep.listing.done:
                await self._finish_sweep(sweep, verify=True)
                took = round(time.monotonic() - sweep.started, 1)
                log.info("eci sweep done", sweep=kind, pages=sweep.listing.pages, seconds=took)
        except Exception as exc:
            if self._sweeps.get(kind) is not sweep:
                return
            del self._sweeps[kind]
            retry_in = min(self._sweep_interval(kind), 20 * self.settings.status_poll_interval_seconds)
            self._sweep_retry_at[kind] = time.monotonic() + retry_in
            error = exc.message if isinstance(exc, ProviderError) else repr(exc)
            log.warning(
                "eci sweep failed, starting it again later", sweep=kind, page=page, error=error, retry_in=retry_in
            )

    # --- the incremental poll ------------------------------------------------------------------------

    async def poll_once(self, *, wide: bool = True) -> None:
        """One incremental poll: statuses changed since the last successful poll, then their details.

        A wide poll (every slow tick's worth) looks back the time since the last successful poll plus
        two slow ticks and 5 s, at least 10 s; a fast tick's poll only that time plus 2 s, at least 3 s:
        during a burst every group changes a few times within 10 s, and 20 overlapping listings of all of
        them per 10 s cost more than everything else the daemon does (a missed change is listed by the
        next wide poll, at most a slow tick later)."""
        now = time.monotonic()
        elapsed = now - (self._last_poll_ok or now)
        if wide:
            since = max(10, math.ceil(elapsed + 2 * self.settings.status_poll_interval_seconds + 5))
        else:
            since = max(3, math.ceil(elapsed + 2))
        if since > 3600:
            await self.resync()
            self._last_poll_ok = now
            return
        index = self._index
        ids: dict[str, None] = {}  # ordered, without repeats: a list's `in` made this quadratic in a burst
        new_fps: dict[str, bytes] = {}
        params = {**self._tags, "SinceSecond": since, "Limit": STATUS_PAGE}
        async for page, data in Listing(
            self._call, DescribeContainerGroupStatusResponse, params, max_pages=1000
        ).pages_left():
            for item, raw in zip(page.Data, data.get("Data") or [], strict=False):
                gid = item.ContainerGroupId
                # The window overlaps earlier polls: describe a group only when its reported status
                # (phase, conditions, container states) differs from the last one we acted on.
                fp = digest(jsoncodec.dumps(raw, sort_keys=True, default=str))
                known = index.by_group(gid)
                if known is not None and known.described and index.last_status(gid) == fp:
                    continue
                new_fps[gid] = fp
                ids[gid] = None
        # Groups we just created or are deleting are described too: their first status may predate
        # the window, and a deleted group simply stops being returned.
        # A group someone else is deleting (Terminating without our asking) is followed the same way,
        # so that it leaves the index — and backend_groups, which the GC reads — as soon as it is gone.
        for entry in index.entries():
            following = not entry.described or entry.deleting or entry.group_status == "Terminating"
            if following:
                ids.setdefault(entry.group_id)
        if ids:
            found_ids: set[str] = set()
            async for groups in describe_pages(self._call, list(ids)):
                for g in groups:
                    found_ids.add(g.ContainerGroupId)
                    await self._apply(g)
            for gid in ids:
                gone = index.by_group(gid)
                if gid not in found_ids and gone is not None and (gone.deleting or gone.described):
                    index.forget(gone.uid)
        # Only now, with the details in the index, may an unchanged status be skipped next time.
        index.set_last_statuses(new_fps)
        self._last_poll_ok = now

    # --- the cadence ----------------------------------------------------------------------------------

    def hurry(self) -> None:
        """A group was just created or deleted: a poller asleep for a slow tick polls now."""
        self._wake.set()

    def in_transition(self) -> bool:
        """Whether a group of this node is on its way to a new status soon (see the module's docstring)."""
        window = self.settings.status_poll_fast_window_seconds
        young = time.monotonic() - window
        for entry in self._index.entries():
            if entry.deleting or entry.group_status == "Terminating":
                return True
            if entry.created_at > young and (not entry.described or entry.group_status in _TRANSIENT_STATUSES):
                return True
        return False

    def _tick_interval(self) -> float:
        slow = self.settings.status_poll_interval_seconds
        fast = min(slow, self.settings.status_poll_fast_interval_seconds)
        return fast if fast < slow and self.in_transition() else slow

    async def _nap(self, interval: float) -> None:
        """Sleep ``interval``; a slow tick ends early when ``hurry`` is called."""
        self._wake.clear()
        if interval <= self.settings.status_poll_fast_interval_seconds:
            await self._sleep(interval)
            return
        sleeper = asyncio.ensure_future(self._sleep(interval))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()

    async def _poll_loop(self) -> None:
        """Each tick: the first full resync (at full speed) until one succeeded; then one incremental
        poll and, when the poll succeeded and the ticks since the last add up to a slow one, at most one
        page of the periodic sweeps."""
        slow = self.settings.status_poll_interval_seconds
        self._sweep_credit = slow
        while not self._closed:
            if self.standby_interval is not None:
                wait = self._standby_next - time.monotonic()
                if wait > 0:
                    await self._sleep(min(slow, wait))
                    continue
                self._standby_next = time.monotonic() + self.standby_interval
                self._sweep_credit = slow  # a standby tick is a slow one: a wide poll and a sweep page
            polled = False
            try:
                if self._last_resync is None:
                    await self.resync()
                    self._last_poll_ok = self._last_poll_ok or time.monotonic()
                    self._last_presence = time.monotonic()
                else:
                    await self.poll_once(wide=self._sweep_credit >= slow)
                    polled = True
            except ProviderError as exc:
                log.warning("eci status poll failed", error=exc.message, reason=exc.reason)
            except Exception as exc:
                # A malformed answer must not stop status updates for every pod: log and poll again.
                log.error("eci status poll crashed", error=repr(exc), exc_info=exc)
            if polled and not self._closed and self._sweep_credit >= slow:
                # The slow tick's one more call: a spot notice check when one is due, else a sweep page.
                self._sweep_credit = 0.0
                if self._notices.due():
                    await self._notices.check()
                else:
                    await self._sweep_step()
            interval = self._tick_interval()
            self._sweep_credit += interval
            await self._nap(interval)
