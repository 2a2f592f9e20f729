"""ECIProvider: the ECI implementation of PodLifecycle and PodStreams.

State lives in one in-memory index of this node's groups, keyed by pod UID and by group id, kept
fresh by a poller task. Every ``eci.status_poll_interval_seconds`` (a tick) it makes one incremental
poll — DescribeContainerGroupStatus with SinceSecond (and our cluster/node tags) names the groups whose
status changed; their details come from DescribeContainerGroups by id, 20 per call — and advances the
periodic listings by tag ("sweeps") by at most one page:

- the presence check, ``eci.presence_check_interval_seconds`` after the last one completed:
  DescribeContainerGroupStatus by tag without SinceSecond, 200 ids per page, tells which groups still
  exist (groups deleted behind our back leave the index, so list_pods and the GC see them gone; ids
  the index does not know are described);
- the full resync, ``eci.full_resync_interval_seconds`` after the last one completed:
  DescribeContainerGroups by tag, 20 per page, each page applied to the index as it arrives.

When both are under way they take pages in turn. At the end of a sweep, groups it did not see that
were in the index 30 s before it started are described by id and forgotten if gone. A page that fails
abandons its sweep (it starts again later) and never holds up the polls. Only the first resync (the
index, and adoption, wait for it), list_pods with a stale index and the resync after the poller was
down for an hour run at full speed.

Budget at 10,000 steady pods with the defaults: at most one poll and one sweep page per 3 s tick,
i.e. at most 40 calls/min whatever the pod count, plus describes of groups that really changed. On
average: 20 polls/min, a 50-page presence check every 7.5 to 10 min (300 s plus its own 150 to 300 s) and a
500-page resync about every 95 min (3600 s plus the ~33 min it takes, sharing ticks with presence
checks), about 31 calls/min; the node's ping is free while the poller's calls succeed.

Lookups never scan: ``get_pod`` answers from the index, and only asks ECI (by id, or by the UID tag
before the first resync) when the index cannot know. Identity comes only from tags (names.py).

NoStock: a create is planned as a list of (size, vSwitches) attempts — every spec of eci-use-specs,
first with all vSwitches, then each vSwitch alone. A group that fails to schedule for lack of
stock (synchronously, or as ScheduleFailed with a NoStock event) is deleted and the next attempt is
created; when none is left the pod fails with reason NoStock, its message listing every attempt.

Events of our own travel with the group's (``_Entry.events``): translation warnings, NoStock warnings,
and one Normal ``ContainerGroupScheduled`` event naming the size (spec or instance type, vCPU, GiB) and
zone ECI placed a group we created in, so ``kubectl describe pod`` shows what is billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from vk_provider.aio import create_guarded_task
from vk_provider.eci import names
from vk_provider.eci.client import ECIClient, error_code
from vk_provider.eci.exec_bridge import WebSocketExecSession
from vk_provider.eci.logs import stream_logs
from vk_provider.eci.models import (
    ContainerGroup,
    ContainerState,
    CreateContainerGroupResponse,
    DescribeContainerGroupsResponse,
    DescribeContainerGroupStatusResponse,
    DescribeContainerLogResponse,
    ExecContainerCommandResponse,
    share_field_sets,
)
from vk_provider.eci.specs import SizeChoice
from vk_provider.eci.status import (
    TERMINAL_GROUP_STATUSES,
    container_group_to_pod_status,
    failure_reason,
    group_events,
    is_no_stock,
)
from vk_provider.eci.translate import CreateRequest, translate_pod
from vk_provider.eci.usage import UsageTarget, fetch_usage
from vk_provider.errors import InvalidInput, NotFound, NotSupported, PermanentError, ProviderError, TransientError
from vk_provider.provider import (
    BackendEvent,
    BackendPod,
    ExecSession,
    LogOptions,
    Pod,
    PodLookup,
    PodResources,
    PodUsage,
)
from vk_provider.settings import ECISettings

log = structlog.get_logger("vk_provider.eci.provider")

PAGE = 20  # DescribeContainerGroups' maximum page
STATUS_PAGE = 200  # DescribeContainerGroupStatus' maximum page
RESYNC, PRESENCE = "resync", "presence"
MAX_ATTEMPTS = 10
# Statuses a group reaches only once scheduled (ScheduleFailed, the NoStock case, comes from Scheduling).
_PLACED = frozenset({"Running", "Restarting", "Updating", "Succeeded", "Failed", "Terminating"})
NO_STOCK_CODES = ("NoStock", "StockExhaust", "StockClose", "RecommendEmpty", "OutOfStock")


@dataclass(slots=True)
class _Entry:
    uid: str
    namespace: str
    name: str
    group_id: str
    group: ContainerGroup | None = None
    fingerprint: bytes = b""
    deleting: bool = False
    created_at: float = field(default_factory=time.monotonic)
    request: CreateRequest | None = None  # groups we created, until placed (only a NoStock retry needs it)
    plan: list[tuple[SizeChoice, list[str]]] = field(default_factory=list)
    attempt: int = 0
    tried: int = 0  # attempts of the plan made so far (the NoStock failure message lists them)
    events: list[BackendEvent] = field(default_factory=list)
    scheduled_announced: bool = False


@dataclass
class _Sweep:
    """One listing by tag of this node's groups — a full resync (DescribeContainerGroups) or a presence
    check (DescribeContainerGroupStatus) — walked page by page: all at once (a burst), or by the poller,
    one page per tick (paced)."""

    kind: str  # RESYNC or PRESENCE
    started: float = field(default_factory=time.monotonic)
    token: str = ""
    seen: set[str] = field(default_factory=set)
    pages: int = 0


def _digest(data: bytes) -> bytes:
    """A 16-byte digest: fingerprints are held for every group, so bytes rather than a hex string."""
    return hashlib.blake2b(data, digest_size=16).digest()


def _fingerprint(group: ContainerGroup) -> bytes:
    return _digest(group.model_dump_json().encode())


_NO_STATE = ContainerState()  # shared by the containers of held groups whose state is empty
share_field_sets(_NO_STATE)


def _held(group: ContainerGroup, *, events: bool) -> ContainerGroup:
    """A freshly described group made fit to be held in the index for every pod, once its fingerprint and
    identity were taken: no tags (the entry has the identity and nothing reads them again), one shared
    instance for empty container states, shared field-name sets, and, unless ``events`` (its events are
    still to be published), only its Warning events (``failure_reason`` reads them; the others were
    published with an earlier state of the group). Held groups are never changed afterwards."""
    group.Tags = []
    if not events:
        group.Events = [e for e in group.Events if e.Type == "Warning"]
    for c in group.Containers + group.InitContainers:
        if c.PreviousState.__dict__ == _NO_STATE.__dict__:
            c.PreviousState = _NO_STATE
        if c.CurrentState.__dict__ == _NO_STATE.__dict__:
            c.CurrentState = _NO_STATE
    share_field_sets(group)
    return group


def _published(group: ContainerGroup) -> ContainerGroup:
    """The held group once its events went out on status_changes(): only the Warning events are kept."""
    if all(e.Type == "Warning" for e in group.Events):
        return group
    values = {**group.__dict__, "Events": [e for e in group.Events if e.Type == "Warning"]}
    return ContainerGroup.model_construct(group.model_fields_set, **values)


def _plan(req: CreateRequest) -> list[tuple[SizeChoice, list[str]]]:
    out: list[tuple[SizeChoice, list[str]]] = []
    for size in req.sizes:
        out.append((size, list(req.vswitch_ids)))
        if len(req.vswitch_ids) > 1:
            out.extend((size, [v]) for v in req.vswitch_ids)
    return out[:MAX_ATTEMPTS]


def _is_no_stock_code(code: str) -> bool:
    return any(code.startswith(c) or c in code for c in NO_STOCK_CODES)


def _where(vswitches: list[str]) -> str:
    return ",".join(vswitches) or "the default vSwitches"


def _tried(plan: list[tuple[SizeChoice, list[str]]], count: int) -> str:
    """'1-2Gi in vsw-a,vsw-b; 1-2Gi in vsw-a; ...' for the first ``count`` attempts of a plan."""
    return "; ".join(f"{size.describe()} in {_where(vsw)}" for size, vsw in plan[:count])


def _gib(v: float | None) -> str:
    return "?" if v is None else (str(int(v)) if float(v).is_integer() else f"{v:g}")


def _now_event(type_: str, reason: str, message: str) -> BackendEvent:
    now = datetime.now(UTC)
    return BackendEvent(type=type_, reason=reason, message=message, count=1, first_timestamp=now, last_timestamp=now)


class ECIProvider:
    """PodLifecycle + PodStreams on ECI. ``start()`` opens the client and the poller; ``close()`` stops both."""

    def __init__(
        self,
        settings: ECISettings,
        *,
        node_name: str,
        log_poll_interval_seconds: float = 1.0,
        stats_cache_seconds: float = 15.0,
        pods: PodLookup | None = None,
        client: ECIClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.node_name = node_name
        self.log_poll_interval = log_poll_interval_seconds
        self.stats_cache_seconds = stats_cache_seconds
        self._pods = pods
        self._client = client
        self._sleep = sleep or asyncio.sleep
        self._by_uid: dict[str, _Entry] = {}
        self._by_group: dict[str, str] = {}
        self._synced = False
        self._last_poll_ok: float | None = None
        self._last_resync: float | None = None
        self._last_presence: float | None = None
        self._last_burst = -math.inf  # when the last full-speed resync completed
        self._sweeps: dict[str, _Sweep] = {}  # the poller's paced sweeps under way, by kind
        self._sweep_retry_at: dict[str, float] = {}  # a sweep that failed starts again from then
        self._sweep_turn = ""  # the kind that had the last page
        self._last_call_ok: float = 0.0
        self._status_fp: dict[str, bytes] = {}
        self._pending: dict[str, BackendPod] = {}
        self._wakeup = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._usage_cache: tuple[float, list[PodUsage]] | None = None
        self._usage_lock = asyncio.Lock()
        self._resync_lock = asyncio.Lock()
        self._closed = False

    # --- lifecycle of the provider itself ---------------------------------------------------------

    @property
    def client(self) -> ECIClient:
        if self._client is None:
            self._client = ECIClient(self.settings)
        return self._client

    def set_pod_lookup(self, pods: PodLookup) -> None:
        """Let status mapping see the current pod (container order, condition transition times)."""
        self._pods = pods

    async def start(self) -> None:
        _ = self.client
        if self._poller is None:
            self._poller = create_guarded_task(self._poll_loop(), name="eci-status-poller")

    async def close(self) -> None:
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        self._wakeup.set()
        if self._client is not None:
            await self._client.close()

    async def _call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        data = await self.client.call(action, params)
        self._last_call_ok = time.monotonic()
        return data

    def _tag_params(self, extra: dict[str, str] | None = None) -> dict[str, Any]:
        tags = {names.TAG_CLUSTER: self.settings.cluster_name, names.TAG_NODE: self.node_name, **(extra or {})}
        params: dict[str, Any] = {}
        for i, (k, v) in enumerate(tags.items(), 1):
            params[f"Tag.{i}.Key"] = k
            params[f"Tag.{i}.Value"] = v
        return params

    # --- index ---------------------------------------------------------------------------------------

    def _identity(self, group: ContainerGroup) -> tuple[str, str, str] | None:
        tags = {t.Key: t.Value for t in group.Tags}
        return names.identity_from_tags(tags, cluster=self.settings.cluster_name, node=self.node_name)

    def _current_pod(self, entry: _Entry) -> Pod | None:
        if self._pods is None:
            return None
        pod = self._pods.get_pod(entry.namespace, entry.name)
        if pod is not None and (pod.get("metadata") or {}).get("uid") == entry.uid:
            return pod
        return None

    def _backend_pod(self, entry: _Entry, pod: Pod | None = None) -> BackendPod:
        # A group created moments ago and not described yet is reported as Pending.
        group = entry.group or ContainerGroup(ContainerGroupId=entry.group_id, Status="Pending")
        status = container_group_to_pod_status(group, pod or self._current_pod(entry))
        if entry.plan and entry.tried >= len(entry.plan) and is_no_stock(group):
            status["message"] = (
                f"{status.get('message') or 'no stock'}; tried {_tried(entry.plan, entry.tried)}, no attempt left"
            )
        self._announce_scheduled(entry)
        if entry.request is not None and entry.scheduled_announced and group.Status in _PLACED:
            # Placed: it can no longer fail to schedule, so no NoStock retry will need the request.
            entry.request = None
        return BackendPod(
            namespace=entry.namespace,
            name=entry.name,
            uid=entry.uid,
            group_id=entry.group_id,
            group_status=group.Status,
            status=status,
            created=group.CreationTime,
            events=entry.events + group_events(group),
        )

    def _announce_scheduled(self, entry: _Entry) -> None:
        """Once per group we created: a Normal event with the size and zone ECI placed it in (what is billed).
        Groups adopted after a restart were announced by the daemon that created them."""
        group = entry.group
        if entry.scheduled_announced or group is None or entry.request is None:
            return
        if group.Status in ("", "Scheduling", "ScheduleFailed") or (group.Status == "Pending" and not group.ZoneId):
            return  # not placed yet (the zone is known once ECI has picked a vSwitch)
        entry.scheduled_announced = True
        planned = entry.plan[entry.attempt][0] if entry.attempt < len(entry.plan) else None
        cpu = group.Cpu if group.Cpu is not None else (planned.cpu if planned else None)
        memory = group.Memory if group.Memory is not None else (planned.memory if planned else None)
        size = f"{_gib(cpu)} vCPU, {_gib(memory)} GiB"
        instance_type = group.InstanceType or (planned.instance_type if planned else None)
        if instance_type:
            size = f"instance type {instance_type} ({size})"
        where = f"zone {group.ZoneId}" if group.ZoneId else "a zone ECI did not report"
        if group.VSwitchId:
            where += f", vSwitch {group.VSwitchId}"
        spot = f", spot ({group.SpotStrategy})" if group.SpotStrategy and group.SpotStrategy != "NoSpot" else ""
        entry.events.append(
            _now_event(
                "Normal",
                "ContainerGroupScheduled",
                f"container group {group.ContainerGroupId} runs as {size}{spot} in {where}",
            )
        )

    def _remember(self, group: ContainerGroup) -> _Entry | None:
        """Put a described group in the index; return its entry when something changed."""
        ident = self._identity(group)
        if ident is None:
            return None
        ns, name, uid = ident
        entry = self._by_uid.get(uid)
        if entry is not None and entry.group_id != group.ContainerGroupId:
            # Two groups for one pod (a NoStock attempt being replaced): keep the live, newest one.
            cur = entry.group
            if cur is None:
                return None
            cur_done, new_done = cur.Status in TERMINAL_GROUP_STATUSES, group.Status in TERMINAL_GROUP_STATUSES
            epoch = datetime.min.replace(tzinfo=UTC)
            newer = (group.CreationTime or epoch) > (cur.CreationTime or epoch)
            if (new_done and not cur_done) or (new_done == cur_done and not newer):
                return None
        if entry is None or entry.group_id != group.ContainerGroupId:
            prev = entry
            entry = _Entry(uid=uid, namespace=ns, name=name, group_id=group.ContainerGroupId)
            if prev is not None:
                entry.request, entry.plan, entry.attempt = prev.request, prev.plan, prev.attempt
                entry.tried, entry.events = prev.tried, prev.events
                self._by_group.pop(prev.group_id, None)
            self._by_uid[uid] = entry
            self._by_group[group.ContainerGroupId] = uid
        fp = _fingerprint(group)  # of the group as described, tags and events included
        changed = fp != entry.fingerprint
        entry.group = _held(group, events=changed)
        if not changed:
            return None
        entry.fingerprint = fp
        return entry

    def _forget(self, uid: str) -> None:
        entry = self._by_uid.pop(uid, None)
        if entry is not None:
            self._by_group.pop(entry.group_id, None)
            self._status_fp.pop(entry.group_id, None)

    def _publish(self, entry: _Entry) -> None:
        if entry.group is None:
            return
        self._pending[entry.uid] = self._backend_pod(entry)
        entry.group = _published(entry.group)
        self._wakeup.set()

    async def _describe_ids(self, ids: list[str]) -> list[ContainerGroup]:
        out: list[ContainerGroup] = []
        for i in range(0, len(ids), PAGE):
            batch = ids[i : i + PAGE]
            data = await self._call("DescribeContainerGroups", {"ContainerGroupIds": batch, "Limit": PAGE})
            out.extend(DescribeContainerGroupsResponse.model_validate(data).ContainerGroups)
        return out

    async def _describe_by_tags(self, extra: dict[str, str] | None = None) -> list[ContainerGroup]:
        out: list[ContainerGroup] = []
        token = ""
        for _ in range(100000):  # bounded: 2M groups
            params = {**self._tag_params(extra), "Limit": PAGE}
            if token:
                params["NextToken"] = token
            resp = DescribeContainerGroupsResponse.model_validate(await self._call("DescribeContainerGroups", params))
            out.extend(resp.ContainerGroups)
            token = resp.NextToken
            if not token or not resp.ContainerGroups:
                break
        return out

    # --- sweeps: the listings by tag (full resync, presence check) -----------------------------------

    async def _sweep_page(self, sweep: _Sweep) -> bool:
        """Fetch and apply the next page of a sweep; True when it was the last one.

        A resync page's groups go into the index at once (``_remember`` + ``_after_change``), so what
        a sweep learns is never older than its last call; a presence page only records the ids."""
        params: dict[str, Any] = {**self._tag_params(), "Limit": PAGE if sweep.kind == RESYNC else STATUS_PAGE}
        if sweep.token:
            params["NextToken"] = sweep.token
        if sweep.kind == RESYNC:
            resp = DescribeContainerGroupsResponse.model_validate(await self._call("DescribeContainerGroups", params))
            count, token = len(resp.ContainerGroups), resp.NextToken
            for g in resp.ContainerGroups:
                sweep.seen.add(g.ContainerGroupId)
                changed = self._remember(g)
                if changed is not None:
                    await self._after_change(changed)
        else:
            status = DescribeContainerGroupStatusResponse.model_validate(
                await self._call("DescribeContainerGroupStatus", params)
            )
            count, token = len(status.Data), status.NextToken
            sweep.seen.update(item.ContainerGroupId for item in status.Data)
        sweep.pages += 1
        sweep.token = token
        return not token or not count

    async def _finish_sweep(self, sweep: _Sweep, *, verify: bool) -> None:
        """What a listing does once complete: forget the groups it did not see (unless created less than
        30 s before it started: they may be missing from it), and, for a presence check, describe the
        ids it saw but the index does not know. A paced sweep (``verify``) spans minutes, long enough
        for groups to be created and deleted under its cursor, so it forgets a group only after a
        describe by id has confirmed it is gone."""
        missing = [
            e for e in self._by_uid.values() if e.group_id not in sweep.seen and e.created_at < sweep.started - 30
        ]
        unknown = [gid for gid in sweep.seen if gid not in self._by_group] if sweep.kind == PRESENCE else []
        to_describe = unknown + ([e.group_id for e in missing] if verify else [])
        found = await self._describe_ids(to_describe) if to_describe else []
        found_ids = {g.ContainerGroupId for g in found}
        for entry in missing:
            if entry.group_id not in found_ids and self._by_uid.get(entry.uid) is entry:
                self._forget(entry.uid)
        for g in found:
            changed = self._remember(g)
            if changed is not None:
                await self._after_change(changed)
        now = time.monotonic()
        if sweep.kind == RESYNC:
            self._synced = True
            self._last_resync = now
        else:
            self._last_presence = now
        # A listing completed, paced or not: the poller's sweep of that kind has nothing left to do.
        if self._sweeps.get(sweep.kind) is sweep or not verify:
            self._sweeps.pop(sweep.kind, None)
            self._sweep_retry_at.pop(sweep.kind, None)

    async def _burst(self, kind: str) -> _Sweep:
        """A listing at full speed, every page at once."""
        sweep = _Sweep(kind)
        for _ in range(100000):  # bounded: 2M groups
            if await self._sweep_page(sweep):
                break
        await self._finish_sweep(sweep, verify=False)
        return sweep

    async def resync(self) -> list[BackendPod]:
        """Full resync by tag at full speed: refresh the index, publish what changed, forget vanished
        groups. Used at start (adoption waits for it), by list_pods when the index is stale, and after
        the poller was down for an hour; the periodic resync is a paced sweep instead (``_sweep_step``).
        A caller that waited for a burst already under way takes its result."""
        asked = time.monotonic()
        async with self._resync_lock:
            if self._synced and self._last_burst >= asked:
                return [self._backend_pod(e) for e in self._by_uid.values()]
            await self._burst(RESYNC)
            self._last_burst = time.monotonic()
            return [self._backend_pod(e) for e in self._by_uid.values()]

    async def presence_check(self) -> None:
        """Which groups still exist, at full speed: DescribeContainerGroupStatus by tag without SinceSecond,
        200 per page (50 calls at 10k pods, against 500 for a full resync). Groups gone from it leave the
        index, so list_pods — and the GC's vanished-group check — see them gone; unknown ones are described.
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
            self._sweeps[kind] = _Sweep(kind)
            log.info("eci sweep started", sweep=kind, groups=len(self._by_uid))
        if not self._sweeps:
            return
        kind = next((k for k in self._sweeps if k != self._sweep_turn), self._sweep_turn)
        self._sweep_turn = kind
        sweep = self._sweeps[kind]
        try:
            last_page = await self._sweep_page(sweep)
            if self._sweeps.get(kind) is not sweep:
                return  # a burst listing of the same kind completed meanwhile
            if last_page:
                await self._finish_sweep(sweep, verify=True)
                took = round(time.monotonic() - sweep.started, 1)
                log.info("eci sweep done", sweep=kind, pages=sweep.pages, seconds=took)
        except Exception as exc:
            if self._sweeps.get(kind) is not sweep:
                return
            del self._sweeps[kind]
            retry_in = min(self._sweep_interval(kind), 20 * self.settings.status_poll_interval_seconds)
            self._sweep_retry_at[kind] = time.monotonic() + retry_in
            error = exc.message if isinstance(exc, ProviderError) else repr(exc)
            log.warning(
                "eci sweep failed, starting it again later",
                sweep=kind,
                page=sweep.pages + 1,
                error=error,
                retry_in=retry_in,
            )

    async def poll_once(self) -> None:
        """One incremental poll: statuses changed since the last successful poll, then their details."""
        now = time.monotonic()
        since = now - (self._last_poll_ok or now) + 2 * self.settings.status_poll_interval_seconds + 5
        since = max(10, math.ceil(since))
        if since > 3600:
            await self.resync()
            self._last_poll_ok = now
            return
        ids: list[str] = []
        new_fps: dict[str, bytes] = {}
        token = ""
        for _ in range(1000):
            params: dict[str, Any] = {**self._tag_params(), "SinceSecond": since, "Limit": STATUS_PAGE}
            if token:
                params["NextToken"] = token
            data = await self._call("DescribeContainerGroupStatus", params)
            resp = DescribeContainerGroupStatusResponse.model_validate(data)
            raw_items = data.get("Data") or []
            for item, raw in zip(resp.Data, raw_items, strict=False):
                gid = item.ContainerGroupId
                # The window overlaps earlier polls: describe a group only when its reported status
                # (phase, conditions, container states) differs from the last one we acted on.
                fp = _digest(json.dumps(raw, sort_keys=True, default=str).encode())
                known = self._by_uid.get(self._by_group.get(gid, ""))
                if known is not None and known.group is not None and self._status_fp.get(gid) == fp:
                    continue
                new_fps[gid] = fp
                if gid not in ids:
                    ids.append(gid)
            token = resp.NextToken
            if not token or not resp.Data:
                break
        # Groups we just created or are deleting are described too: their first status may predate
        # the window, and a deleted group simply stops being returned.
        # A group someone else is deleting (Terminating without our asking) is followed the same way,
        # so that it leaves the index — and list_pods, which the GC reads — as soon as it is gone.
        for entry in self._by_uid.values():
            following = entry.group is None or entry.deleting or entry.group.Status == "Terminating"
            if following and entry.group_id not in ids:
                ids.append(entry.group_id)
        if ids:
            found = await self._describe_ids(ids)
            found_ids = {g.ContainerGroupId for g in found}
            for g in found:
                changed = self._remember(g)
                if changed is not None:
                    await self._after_change(changed)
            for gid in ids:
                gone = self._by_uid.get(self._by_group.get(gid) or "")
                if gid not in found_ids and gone is not None and (gone.deleting or gone.group is not None):
                    self._forget(gone.uid)
        # Only now, with the details in the index, may an unchanged status be skipped next time.
        self._status_fp.update(new_fps)
        self._last_poll_ok = now

    async def _after_change(self, entry: _Entry) -> None:
        group = entry.group
        assert group is not None
        if is_no_stock(group) and await self._next_attempt(entry, failure_reason(group)[1]):
            return
        self._publish(entry)

    async def _poll_loop(self) -> None:
        """Each tick: the first full resync (at full speed) until one succeeded; then one incremental
        poll and, when the poll succeeded, at most one page of the periodic sweeps."""
        interval = self.settings.status_poll_interval_seconds
        while not self._closed:
            polled = False
            try:
                if self._last_resync is None:
                    await self.resync()
                    self._last_poll_ok = self._last_poll_ok or time.monotonic()
                    self._last_presence = time.monotonic()
                else:
                    await self.poll_once()
                    polled = True
            except ProviderError as exc:
                log.warning("eci status poll failed", error=exc.message, reason=exc.reason)
            except Exception as exc:
                # A malformed answer must not stop status updates for every pod: log and poll again.
                log.error("eci status poll crashed", error=repr(exc), exc_info=exc)
            if polled and not self._closed:
                await self._sweep_step()
            await self._sleep(interval)

    # --- PodLifecycle -------------------------------------------------------------------------------

    async def _lookup(self, pod: Pod) -> _Entry | None:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        entry = self._by_uid.get(uid)
        if entry is not None or self._synced or not uid:
            return entry
        for g in await self._describe_by_tags({names.TAG_UID: uid}):
            self._remember(g)
        return self._by_uid.get(uid)

    async def create_pod(self, pod: Pod, resources: PodResources) -> None:
        """Create the pod's group unless it has one. Translation warnings become Warning events."""
        entry = await self._lookup(pod)
        if entry is not None:
            return
        result = translate_pod(pod, resources, self.settings, self.node_name)
        meta = pod.get("metadata") or {}
        uid = str(meta["uid"])
        events = [
            BackendEvent(
                type="Warning", reason="NotSupported", message=w, count=1, first_timestamp=None, last_timestamp=None
            )
            for w in result.warnings
        ]
        plan = _plan(result.request)
        await self._create_attempt(
            uid, str(meta.get("namespace") or "default"), str(meta.get("name")), result.request, plan, 0, events
        )

    async def _create_attempt(
        self,
        uid: str,
        namespace: str,
        name: str,
        req: CreateRequest,
        plan: list[tuple[SizeChoice, list[str]]],
        attempt: int,
        events: list[BackendEvent],
    ) -> _Entry:
        while attempt < len(plan):
            size, vswitches = plan[attempt]
            params = req.to_params(size=size, vswitch_ids=vswitches)
            if attempt:
                params["ClientToken"] = names.client_token(uid, f"create-{attempt}")
            try:
                data = await self._call("CreateContainerGroup", params)
            except ProviderError as exc:
                if not _is_no_stock_code(error_code(exc)):
                    raise
                if attempt + 1 >= len(plan):
                    # The last attempt refused for lack of stock: the pod fails with reason NoStock, like a
                    # group that failed to schedule, and the message says what was tried.
                    raise PermanentError(
                        f"{exc.message}; tried {_tried(plan, attempt + 1)}, no attempt left", reason="NoStock"
                    ) from None
                log.info("eci no stock, trying the next spec", pod=f"{namespace}/{name}", attempt=attempt)
                events.append(self._no_stock_event(exc.message, plan, attempt))
                attempt += 1
                continue
            group_id = CreateContainerGroupResponse.model_validate(data).ContainerGroupId
            entry = _Entry(
                uid=uid,
                namespace=namespace,
                name=name,
                group_id=group_id,
                request=req,
                plan=plan,
                attempt=attempt,
                tried=attempt + 1,
                events=events,
            )
            old = self._by_uid.get(uid)
            if old is not None:
                self._by_group.pop(old.group_id, None)
            self._by_uid[uid] = entry
            self._by_group[group_id] = uid
            log.info("eci group created", pod=f"{namespace}/{name}", group=group_id, size=size.describe())
            return entry
        raise TransientError("no create attempt left")

    def _no_stock_event(self, message: str, plan: list[tuple[SizeChoice, list[str]]], attempt: int) -> BackendEvent:
        nxt = plan[attempt + 1] if attempt + 1 < len(plan) else None
        then = f"; trying {nxt[0].describe()} in {_where(nxt[1])}" if nxt else "; no alternative left"
        return _now_event("Warning", "NoStock", message + then)

    async def _next_attempt(self, entry: _Entry, message: str) -> bool:
        """Replace a NoStock group with the next planned attempt; False when none is left."""
        if entry.request is None or entry.attempt + 1 >= len(entry.plan):
            return False
        entry.events.append(self._no_stock_event(message, entry.plan, entry.attempt))
        with contextlib.suppress(NotFound):
            await self._call("DeleteContainerGroup", {"ContainerGroupId": entry.group_id})
        try:
            await self._create_attempt(
                entry.uid, entry.namespace, entry.name, entry.request, entry.plan, entry.attempt + 1, entry.events
            )
        except ProviderError as exc:
            log.warning("eci NoStock retry failed", pod=f"{entry.namespace}/{entry.name}", error=exc.message)
            if exc.reason == "NoStock":
                entry.tried = len(entry.plan)  # the remaining attempts were refused at once
            return False
        return True

    async def update_pod(self, pod: Pod, resources: PodResources) -> None:
        """An image changed on a running pod becomes UpdateContainerGroup (the only in-place change)."""
        entry = await self._lookup(pod)
        if entry is None or entry.group is None or entry.deleting:
            return
        if entry.group.Status in TERMINAL_GROUP_STATUSES:
            return
        spec = pod.get("spec") or {}
        want = {str(c.get("name")): str(c.get("image")) for c in spec.get("containers") or []}
        have = {c.Name: c.Image for c in entry.group.Containers}
        if all(have.get(n) == img for n, img in want.items()):
            return
        req = translate_pod(pod, resources, self.settings, self.node_name).request
        digest = hashlib.sha256(json.dumps(sorted(want.items())).encode()).hexdigest()[:16]
        params = {
            "ContainerGroupId": entry.group_id,
            "UpdateType": "RenewUpdate",
            "ClientToken": names.client_token(entry.uid, f"update-{digest}"),
            **req.container_params(),
        }
        await self._call("UpdateContainerGroup", params)

    async def delete_pod(self, pod: Pod) -> None:
        entry = await self._lookup(pod)
        if entry is None:
            return
        await self.delete_group(entry.group_id)
        entry.deleting = True

    async def delete_group(self, group_id: str) -> None:
        try:
            await self._call(
                "DeleteContainerGroup",
                {"ContainerGroupId": group_id, "ClientToken": names.client_token(group_id, "delete")},
            )
        except NotFound:
            uid = self._by_group.get(group_id)
            if uid is not None:
                self._forget(uid)

    async def get_pod(self, pod: Pod) -> BackendPod | None:
        entry = await self._lookup(pod)
        if entry is None:
            return None
        if entry.group is None or entry.deleting:
            found = [g for g in await self._describe_ids([entry.group_id]) if g.ContainerGroupId == entry.group_id]
            if not found:
                if entry.deleting or time.monotonic() - entry.created_at > 30:
                    self._forget(entry.uid)
                    return None
                return None
            self._remember(found[0])
        return self._backend_pod(entry, pod)

    async def list_pods(self) -> list[BackendPod]:
        """Every group of this node. From the index when a full resync completed within its interval, or
        while the poller's paced resync is under way (the GC asks every few minutes, and a listing is
        500 calls at 10k pods); otherwise a resync at full speed."""
        fresh = self._last_resync is not None and (
            time.monotonic() - self._last_resync < self.settings.full_resync_interval_seconds
        )
        pacing = (RESYNC in self._sweeps or RESYNC in self._sweep_retry_at) and self._poller_running()
        if not (self._synced and (fresh or pacing)):
            return await self.resync()
        return [self._backend_pod(e) for e in self._by_uid.values()]

    def _poller_running(self) -> bool:
        return self._poller is not None and not self._poller.done() and not self._closed

    async def status_changes(self) -> AsyncIterator[BackendPod]:
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, {}
            for bp in batch.values():
                yield bp

    async def ping(self) -> None:
        # Any successful call in the last few seconds proves the API is reachable: no extra call.
        if time.monotonic() - self._last_call_ok < 5:
            return
        await self._call("DescribeContainerGroupStatus", {**self._tag_params(), "SinceSecond": 1, "Limit": 1})

    async def quota(self) -> dict[str, str]:
        """Node capacity from the account's ECI quota (ListUsage): cpu from the vCPU limit, pods from the
        group count limit. Memory has no quota of its own, so it is left to the settings."""
        data = await self._call("ListUsage", {})
        items = data.get("Data") or data.get("Usages") or []
        limits = {str(i.get("Name")): i.get("Limit") for i in items if isinstance(i, dict)}
        out: dict[str, str] = {}
        for key, name in (("cpu", "vCPU"), ("pods", "ContainerGroupCount")):
            value = limits.get(name)
            if isinstance(value, int | float):
                out[key] = str(int(value))
        return out

    # --- PodStreams ------------------------------------------------------------------------------------

    async def _running_entry(self, pod: Pod, container: str | None) -> _Entry:
        meta = pod.get("metadata") or {}
        entry = await self._lookup(pod)
        if entry is None:
            raise NotFound(f"pod {meta.get('namespace')}/{meta.get('name')} has no ECI container group")
        if container is not None:
            spec = pod.get("spec") or {}
            known = {str(c.get("name")) for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])}
            if container not in known:
                raise NotFound(f"container {container} is not valid for pod {meta.get('name')}")
        return entry

    def _container_finished(self, entry: _Entry, container: str) -> bool:
        group = entry.group
        if entry.deleting or self._by_uid.get(entry.uid) is not entry:
            return True
        if group is None:
            return False
        if group.Status in TERMINAL_GROUP_STATUSES:
            return True
        # Like the kubelet, a follow ends when this instance of the container has exited.
        for c in group.Containers + group.InitContainers:
            if c.Name == container:
                return c.CurrentState.State == "Terminated"
        return False

    async def container_logs(self, pod: Pod, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        entry = await self._running_entry(pod, container)

        async def fetch(params: dict[str, Any]) -> str:
            data = await self._call(
                "DescribeContainerLog", {"ContainerGroupId": entry.group_id, "ContainerName": container, **params}
            )
            return DescribeContainerLogResponse.model_validate(data).Content

        async for chunk in stream_logs(
            fetch,
            opts,
            finished=lambda: self._container_finished(entry, container),
            interval=self.log_poll_interval,
            sleep=self._sleep,
        ):
            yield chunk

    async def exec(self, pod: Pod, container: str, command: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        entry = await self._running_entry(pod, container)
        if not command:
            raise InvalidInput("exec needs a command")
        if len(command) > 20 or any(len(a) > 256 for a in command):
            raise InvalidInput("ECI exec takes at most 20 arguments of at most 256 characters each")
        data = await self._call(
            "ExecContainerCommand",
            {
                "ContainerGroupId": entry.group_id,
                "ContainerName": container,
                "Command": command,
                "TTY": tty,
                "Stdin": stdin,
            },
        )
        uri = ExecContainerCommandResponse.model_validate(data).WebSocketUri
        if not uri:
            raise NotSupported("ECI returned no WebSocketUri for this exec")
        return await WebSocketExecSession.connect(uri)

    async def attach(self, pod: Pod, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        raise NotSupported(
            "attach is not supported on ECI: the service offers no way to join a running container's "
            "main process streams (use kubectl exec, or kubectl logs -f for output)"
        )

    async def port_forward(self, pod: Pod, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        entry = await self._running_entry(pod, None)
        ip = entry.group.IntranetIp if entry.group else ""
        ip = ip or str((pod.get("status") or {}).get("podIP") or "")
        if not ip:
            raise NotFound("the pod has no IP yet")
        if not 0 < port < 65536:
            raise InvalidInput(f"port {port} is out of range")
        try:
            return await asyncio.wait_for(asyncio.open_connection(ip, port), timeout=10)
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"cannot connect to {ip}:{port}: {type(exc).__name__}") from None

    async def pod_usage(self) -> list[PodUsage]:
        async with self._usage_lock:
            now = time.monotonic()
            if self._usage_cache is not None and now - self._usage_cache[0] < self.stats_cache_seconds:
                return self._usage_cache[1]
            targets = []
            for e in self._by_uid.values():
                if e.group is None or e.group.Status != "Running":
                    continue
                targets.append(
                    UsageTarget(
                        group_id=e.group_id,
                        namespace=e.namespace,
                        name=e.name,
                        uid=e.uid,
                        start_time=e.group.CreationTime,
                        containers=tuple(c.Name for c in e.group.Containers),
                    )
                )
            usage = await fetch_usage(self._call, targets) if targets else []
            self._usage_cache = (now, usage)
            return usage
