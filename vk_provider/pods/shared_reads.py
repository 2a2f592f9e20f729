"""GETs shared by the pods being created: in a burst every pod reads the same ``kube-root-ca.crt`` (and often
the same ConfigMaps, Secrets and services); one read serves every pod it is fresh enough for.

A read is fresh enough for a caller when it was *sent after* the caller's ``not_before`` (monotonic seconds):
for a pod's first create attempt, when the daemon's watch saw the pod (``PodState.seen``). The pod was
created before that, so a read sent later reflects every change made before the pod existed: a pod created
after a ConfigMap or Secret changed always gets the new value, as with the kubelet (whose ConfigMap/Secret
manager invalidates an object when a new pod references it, or reads it from a watch). A read still in
flight is shared the same way (single flight). A retry or an update passes the time it started, so it shares
only reads sent after that; the service list, which the kubelet takes from an informer, passes "now minus
``services_ttl``".

The kubelet's node TTL annotation (``node.alpha.kubernetes.io/ttl``, 0 to 300 s by cluster size) is not
used: it bounds how long the kubelet serves a cached object to pods already running, never to a new pod,
and a container group never re-reads its ConfigMaps or Secrets.

A read (a Secret's too) is kept ``retain`` seconds after it answered or until a newer read of the same path
replaces it. Nothing here logs what it read. A failed read is shared with those that joined it and kept by
nobody: the next caller reads again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from vk_provider.kube.client import JSON, KubeAPI
from vk_provider.metrics import REFERENCE_READS

RETAIN_SECONDS = 10.0


@dataclass(eq=False)
class _Read:
    sent: float  # monotonic time, taken before the request went out
    answer: asyncio.Future[JSON | None]


class SharedReads:
    """``get(path, not_before=...)``: the object at ``path`` (None when it does not exist) from a read sent after
    ``not_before``, sharing one with other callers when there is one."""

    def __init__(
        self, api: KubeAPI, *, retain: float = RETAIN_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.retain = retain
        self.clock = clock
        self._reads: dict[str, _Read] = {}

    def __len__(self) -> int:
        return len(self._reads)

    async def get(self, path: str, *, not_before: float) -> JSON | None:
        while True:
            read = self._reads.get(path)
            if read is None or read.sent <= not_before:
                return await self._read(path)
            REFERENCE_READS.labels(read="shared").inc()
            try:
                return await asyncio.shield(read.answer)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if read.answer.cancelled() and (task is None or not task.cancelling()):
                    continue  # the one that sent it was cancelled, not this caller: read again
                raise

    async def _read(self, path: str) -> JSON | None:
        loop = asyncio.get_running_loop()
        read = _Read(self.clock(), loop.create_future())
        self._reads[path] = read
        REFERENCE_READS.labels(read="sent").inc()
        try:
            obj = await self.api.get_or_none(path)
        except BaseException as exc:
            self._drop(path, read)
            if isinstance(exc, asyncio.CancelledError):
                read.answer.cancel()
            else:
                read.answer.set_exception(exc)
                read.answer.exception()  # marked retrieved: those who joined get it, nobody else needs to
            raise
        read.answer.set_result(obj)
        loop.call_later(self.retain, self._drop, path, read)
        return obj

    def _drop(self, path: str, read: _Read) -> None:
        if self._reads.get(path) is read:
            del self._reads[path]
