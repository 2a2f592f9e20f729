"""What the parts of the pod controller share: one ``PodState`` and the small readers of a pod dict.

The watch (``controller.py``), reconcile (``reconcile.py``), status sync (``sync.py``), adoption
(``adoption.py``) and GC (``gc.py``) each keep their own bookkeeping private; what more than one of
them reads or writes is here, named. Everything runs on one event loop, so no locks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vk_provider import jsoncodec
from vk_provider.errors import ProviderError
from vk_provider.kube.watch import Informer, object_key
from vk_provider.packing import deflate, inflate
from vk_provider.pods.queue import KeyedQueue
from vk_provider.provider import BackendPod, Interruption, Pod


@dataclass(slots=True)
class Held:
    """A group as the controller holds it for every pod: a ``BackendPod`` without its events (the status
    sync mirrors them from its pending events) and with its status as compact JSON, deflated (packing.py).
    ``status`` decodes a fresh dict on each read; only ``sync_status`` reads it."""

    namespace: str
    name: str
    uid: str
    group_id: str
    group_status: str
    status_json: bytes = b""
    created: datetime | None = None
    interruption: Interruption | None = None
    zone: str = ""
    size: str = ""

    @property
    def status(self) -> dict[str, Any]:
        return jsoncodec.loads(inflate(self.status_json)) if self.status_json else {}


@dataclass(slots=True)
class Known:
    """What the controller knows of one pod UID's group."""

    group: Held
    first_seen: float = field(default_factory=time.monotonic)


@dataclass
class PodState:
    """The state shared by the watch, the workers, the status sync, adoption and GC.

    ``informer.cache`` is the pod watch's cache (read it through the informer: a re-list replaces
    the dict). ``groups`` maps a pod UID to its group as last seen; ``deleted`` keeps the last state
    of each pod the watch reported deleted until a worker reconciles it (adoption requeues them).
    """

    informer: Informer
    queue: KeyedQueue
    adopted: asyncio.Event = field(default_factory=asyncio.Event)  # set once, by adoption.py
    groups: dict[str, Known] = field(default_factory=dict)  # pod uid -> group
    deleted: dict[str, Pod] = field(default_factory=dict)  # key -> last state of a pod the watch deleted
    delete_requested: set[str] = field(default_factory=set)  # uids whose group we asked the backend to delete
    spec_images: dict[str, dict[str, str]] = field(default_factory=dict)  # uid -> images the group runs
    vanished: dict[str, str] = field(default_factory=dict)  # uid -> id of a group that vanished (GC found it)
    # key -> monotonic time the watch brought a new Pending pod, until its first reconcile, or until it is gone or no
    # longer Pending: reads sent later may serve its create (pods/shared_reads.py)
    seen: dict[str, float] = field(default_factory=dict)
    # key -> resourceVersion of the pod as our last write of it left it, until the watch brings that version
    own_writes: dict[str, str] = field(default_factory=dict)

    def remember(self, bp: BackendPod) -> None:
        """Hold ``bp`` as the group of its pod UID, keeping ``first_seen`` and the group id if known."""
        held = hold(bp)
        known = self.groups.get(bp.uid)
        if known is None:
            self.groups[bp.uid] = Known(held)
            return
        held.group_id = held.group_id or known.group.group_id
        known.group = held

    def cache_written(self, based_on: Pod, written: Pod) -> None:
        """We wrote ``written`` over ``based_on``: let the next reconcile compare against it, not the stale
        copy, unless the watch already brought a newer one."""
        if not written.get("metadata"):
            return
        cache = self.informer.cache
        key = object_key(written)
        cached = cache.get(key)
        same_rv = cached is not None and meta(cached).get("resourceVersion") == meta(based_on).get("resourceVersion")
        if cached is not None and same_rv and uid(cached) == uid(written):
            cache[key] = written
        rv = meta(written).get("resourceVersion")
        if rv:
            self.own_writes[key] = str(rv)

    def own_echo(self, key: str, obj: Pod) -> bool:
        """Whether the watch brings ``obj`` exactly as our own last write of it left it (its resourceVersion),
        which the write's reconcile has dealt with already. Forgets the write either way."""
        rv = self.own_writes.pop(key, None)
        return rv is not None and rv == meta(obj).get("resourceVersion")


def hold(bp: BackendPod) -> Held:
    """A group's view fit to be held for every pod (``Held``)."""
    return Held(
        namespace=bp.namespace,
        name=bp.name,
        uid=bp.uid,
        group_id=bp.group_id,
        group_status=bp.group_status,
        status_json=deflate(jsoncodec.dumps(bp.status)) if bp.status else b"",
        created=bp.created,
        interruption=bp.interruption,
        zone=bp.zone,
        size=bp.size,
    )


def meta(pod: Pod) -> dict[str, Any]:
    return pod.get("metadata") or {}


def uid(pod: Pod) -> str:
    return str(meta(pod).get("uid") or "")


def images(pod: Pod) -> dict[str, str]:
    return {str(c.get("name")): str(c.get("image")) for c in (pod.get("spec") or {}).get("containers") or []}


def phase(pod: Pod) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def describe(exc: BaseException) -> str:
    """An error in one line for logs and events: a provider error's reason and message, else its type."""
    if isinstance(exc, ProviderError):
        return f"{exc.reason}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
