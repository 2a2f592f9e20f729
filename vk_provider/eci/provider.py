"""ECIProvider: the ECI implementation of PodLifecycle and PodStreams, a front over the rooms that do
the work:

- index.py: this node's groups, by pod UID and by group id (the one place that changes them);
- poller.py: the task that keeps the index fresh (incremental poll, paced sweeps; its ECI call budget);
- notices.py: spot release notices (DescribeContainerGroupEvents), checked in the poller's spare calls;
- feed.py: index entries as BackendPods, and the ``status_changes()`` stream;
- placement.py: creating a group through its NoStock plan of sizes and vSwitches;
- streams.py: logs, exec, attach, port-forward and usage;
- listing.py: reading groups from ECI, by id and by tag (the one NextToken loop).

Lookups never scan: ``backend_pod`` answers from the index, and only asks ECI (by id, or by the UID tag
before the first resync) when the index cannot know. Identity comes only from tags (names.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from vk_provider.eci import names
from vk_provider.eci.client import ECIClient
from vk_provider.eci.dryrun import refusal
from vk_provider.eci.feed import Feed
from vk_provider.eci.index import Entry, Index
from vk_provider.eci.listing import describe_by_tags, describe_ids, tag_params
from vk_provider.eci.models import ListUsageResponse
from vk_provider.eci.notices import SpotNotices
from vk_provider.eci.placement import Placement
from vk_provider.eci.poller import Poller
from vk_provider.eci.ratelimit import per_minute_rate
from vk_provider.eci.status import TERMINAL_GROUP_STATUSES
from vk_provider.eci.streams import Streams
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import NotFound
from vk_provider.provider import (
    BackendEvent,
    BackendGroup,
    BackendPod,
    ExecSession,
    LogOptions,
    Pod,
    PodLookup,
    PodResources,
    PodUsage,
)
from vk_provider.settings import ECISettings


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
        self._client = client
        self._last_call_ok: float = 0.0
        sleep = sleep or asyncio.sleep
        self.index = Index(cluster=settings.cluster_name, node=node_name)
        self.feed = Feed(self.index, pods)
        self.placement = Placement(self.index, self._call)
        self.notices = SpotNotices(settings, node_name=node_name, index=self.index, feed=self.feed, call=self._call)
        self.poller = Poller(
            settings,
            node_name=node_name,
            index=self.index,
            feed=self.feed,
            placement=self.placement,
            notices=self.notices,
            call=self._call,
            sleep=sleep,
        )
        self.streams = Streams(
            self.index,
            lookup=self._lookup,
            call=self._call,
            log_poll_interval=log_poll_interval_seconds,
            log_calls_per_second=per_minute_rate(settings.rate_limits_per_minute, "DescribeContainerLog"),
            stats_cache_seconds=stats_cache_seconds,
            sleep=sleep,
        )

    # --- lifecycle of the provider itself ---------------------------------------------------------

    @property
    def client(self) -> ECIClient:
        if self._client is None:
            self._client = ECIClient(self.settings)
        return self._client

    async def start(self, pods: PodLookup | None = None) -> None:
        """Open the SDK client and start the poller. ``pods`` (the watch cache) lets status mapping see the
        current pod (container order, condition transition times); it may also be given at construction."""
        if pods is not None:
            self.feed.pods = pods
        _ = self.client
        self.poller.start()

    def stand_by(self, interval: float | None) -> None:
        """On an HA standby, poll every ``interval`` seconds at most (None: the leader's cadence)."""
        self.poller.standby_interval = interval

    async def catch_up(self) -> None:
        """One incremental poll now: a new leader's index then holds what the previous leader created
        since this replica's last (standby) poll, before adoption reads it."""
        await self.poller.poll_once()

    async def close(self) -> None:
        await self.poller.close()
        self.feed.close()
        if self._client is not None:
            await self._client.close()

    async def _call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        data = await self.client.call(action, params)
        self._last_call_ok = time.monotonic()
        return data

    async def _lookup(self, pod: Pod) -> Entry | None:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        entry = self.index.get(uid)
        if entry is not None or self.poller.synced or not uid:
            return entry
        params = tag_params(self.settings.cluster_name, self.node_name, {names.TAG_UID: uid})
        for g in await describe_by_tags(self._call, params):
            self.index.remember(g)
        return self.index.get(uid)

    def validate(self, pod: Pod) -> str | None:
        """Why create_pod would refuse the pod (translation as a dry run, no ECI call), or None."""
        return refusal(pod, self.settings, self.node_name)

    # --- PodLifecycle -------------------------------------------------------------------------------

    async def create_pod(self, pod: Pod, resources: PodResources) -> None:
        """Create the pod's group unless it has one. Translation warnings become Warning events."""
        if await self._lookup(pod) is not None:
            return
        result = translate_pod(pod, resources, self.settings, self.node_name)
        meta = pod.get("metadata") or {}
        events = [
            BackendEvent(
                type="Warning", reason="NotSupported", message=w, count=1, first_timestamp=None, last_timestamp=None
            )
            for w in result.warnings
        ]
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        await self.placement.create(str(meta["uid"]), namespace, name, result.request, events)
        self.poller.hurry()

    async def update_pod(self, pod: Pod, resources: PodResources) -> None:
        """An image changed on a running pod becomes UpdateContainerGroup (the only in-place change)."""
        entry = await self._lookup(pod)
        group = entry.group if entry is not None else None
        if entry is None or group is None or entry.deleting:
            return
        if group.Status in TERMINAL_GROUP_STATUSES:
            return
        spec = pod.get("spec") or {}
        want = {str(c.get("name")): str(c.get("image")) for c in spec.get("containers") or []}
        have = {c.Name: c.Image for c in group.Containers}
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
        self.poller.hurry()

    async def delete_group(self, group_id: str) -> None:
        try:
            await self._call(
                "DeleteContainerGroup",
                {"ContainerGroupId": group_id, "ClientToken": names.client_token(group_id, "delete")},
            )
        except NotFound:
            entry = self.index.by_group(group_id)
            if entry is not None:
                self.index.forget(entry.uid)

    async def backend_pod(self, pod: Pod) -> BackendPod | None:
        entry = await self._lookup(pod)
        if entry is None:
            return None
        if not entry.described or entry.deleting:
            found = [
                g for g in await describe_ids(self._call, [entry.group_id]) if g.ContainerGroupId == entry.group_id
            ]
            if not found:
                if entry.deleting or time.monotonic() - entry.created_at > 30:
                    self.index.forget(entry.uid)
                return None
            self.index.remember(found[0])
        return self.feed.backend_pod(entry, pod)

    async def backend_pods(self) -> list[BackendPod]:
        """Every group of this node: from the index when the poller keeps it current
        (``Poller.index_current``), otherwise after a resync at full speed."""
        if not self.poller.index_current():
            await self.poller.resync()
        return self.feed.backend_pods()

    async def backend_groups(self) -> list[BackendGroup]:
        """Every group of this node, identity and age only (the GC's sweep), from the index as ``backend_pods``."""
        if not self.poller.index_current():
            await self.poller.resync()
        return self.feed.backend_groups()

    def status_changes(self) -> AsyncIterator[BackendPod]:
        return self.feed.changes()

    async def ping(self) -> None:
        # Any successful call in the last few seconds proves the API is reachable: no extra call.
        if time.monotonic() - self._last_call_ok < 5:
            return
        tags = tag_params(self.settings.cluster_name, self.node_name)
        await self._call("DescribeContainerGroupStatus", {**tags, "SinceSecond": 1, "Limit": 1})

    async def quota(self) -> dict[str, str]:
        """Node capacity from the account's ECI quota (ListUsage ``Attributes.MaxCpu``). ECI documents no
        group-count or memory quota, so pods and memory are left to the settings."""
        data = await self._call("ListUsage", {})
        return ListUsageResponse.model_validate(data).capacity()

    # --- PodStreams ------------------------------------------------------------------------------------

    def container_logs(self, pod: Pod, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        return self.streams.container_logs(pod, container, opts)

    async def exec(self, pod: Pod, container: str, command: list[str], *, stdin: bool, tty: bool) -> ExecSession:
        return await self.streams.exec(pod, container, command, stdin=stdin, tty=tty)

    async def attach(self, pod: Pod, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        return await self.streams.attach(pod, container, stdin=stdin, tty=tty)

    async def port_forward(self, pod: Pod, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.streams.port_forward(pod, port)

    async def pod_usage(self) -> list[PodUsage]:
        return await self.streams.pod_usage()
