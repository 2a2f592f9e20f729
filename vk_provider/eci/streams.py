"""The kubelet API's side of the provider on ECI: container logs (DescribeContainerLog, polled for
``follow``), exec (ExecContainerCommand and its WebSocket), port-forward (a TCP connection to the pod
IP) and resource usage (DescribeMultiContainerGroupMetric, cached for a scrape interval). Attach has
no ECI counterpart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from vk_provider.eci.exec_bridge import WebSocketExecSession
from vk_provider.eci.index import Entry, Index
from vk_provider.eci.listing import Call
from vk_provider.eci.log_follow import LogFollows
from vk_provider.eci.logs import stream_logs
from vk_provider.eci.models import DescribeContainerLogResponse, ExecContainerCommandResponse
from vk_provider.eci.status import TERMINAL_GROUP_STATUSES
from vk_provider.eci.usage import UsageTarget, fetch_usage
from vk_provider.errors import InvalidInput, NotFound, NotSupported, TransientError
from vk_provider.provider import ExecSession, LogOptions, Pod, PodUsage

Lookup = Callable[[Pod], Awaitable[Entry | None]]
"""The index entry of a pod's group (the provider's lookup)."""


class Streams:
    """PodStreams on ECI, for the groups of the index."""

    def __init__(
        self,
        index: Index,
        *,
        lookup: Lookup,
        call: Call,
        log_poll_interval: float,
        log_calls_per_second: float,
        stats_cache_seconds: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._index = index
        self._lookup = lookup
        self._call = call
        self._log_poll_interval = log_poll_interval
        self._stats_cache_seconds = stats_cache_seconds
        self._sleep = sleep
        self._usage_cache: tuple[float, list[PodUsage]] | None = None
        self._follows = LogFollows(interval=log_poll_interval, sleep=sleep, calls_per_second=log_calls_per_second)
        self._usage_lock = asyncio.Lock()

    async def _running_entry(self, pod: Pod, container: str | None) -> Entry:
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

    def _container_finished(self, entry: Entry, container: str) -> bool:
        group = entry.group
        if entry.deleting or self._index.get(entry.uid) is not entry:
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

        def finished() -> bool:
            return self._container_finished(entry, container)

        if not opts.follow or opts.previous:
            async for chunk in stream_logs(fetch, opts, finished=finished, interval=0, sleep=self._sleep):
                yield chunk
            return
        async with self._follows.subscribe((entry.group_id, container), fetch, finished) as shared:
            async for chunk in stream_logs(
                fetch, opts, finished=finished, interval=self._log_poll_interval, sleep=self._sleep, shared=shared
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
        return await WebSocketExecSession.connect(uri, tty=tty)

    async def attach(self, pod: Pod, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        raise NotSupported(
            "attach is not supported on ECI: the service offers no way to join a running container's "
            "main process streams (use kubectl exec, or kubectl logs -f for output)"
        )

    async def port_forward(self, pod: Pod, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        entry = await self._running_entry(pod, None)
        group = entry.group
        ip = group.IntranetIp if group else ""
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
            if self._usage_cache is not None and now - self._usage_cache[0] < self._stats_cache_seconds:
                return self._usage_cache[1]
            targets = []
            for e in self._index.entries():
                if e.group_status != "Running" or (group := e.group) is None:
                    continue
                targets.append(
                    UsageTarget(
                        group_id=e.group_id,
                        namespace=e.namespace,
                        name=e.name,
                        uid=e.uid,
                        start_time=e.created,
                        containers=tuple(c.Name for c in group.Containers),
                    )
                )
            usage = await fetch_usage(self._call, targets) if targets else []
            self._usage_cache = (now, usage)
            return usage
