"""The index of this node's groups: one entry per pod, keyed by pod UID and by group id.

Held in memory for every pod (10,000 at a time), so an entry keeps a described group as compact JSON
(``Entry.hold``), with the few fields read for every entry on every poller tick beside it (the status
word, the creation time, whether it is spot), and fingerprints as 16-byte digests. ``Entry.group``
decodes a fresh model on each read. ``Index`` is the one place that changes the two maps: ``put`` (a
group we just created), ``remember`` (a group described by ECI) and ``forget``. Identity comes only
from the group's tags (names.py). The fields of an entry past ``created_at`` are the pod's own state,
carried from group to group: its NoStock plan (placement.py; dropped once placed, with the request) and
the events we report with the group's (translation warnings, NoStock, ContainerGroupScheduled) until the
status stream hands them over (feed.py).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence, ValuesView
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vk_provider.eci import names
from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.request import CreateRequest
from vk_provider.eci.specs import SizeChoice
from vk_provider.eci.status import TERMINAL_GROUP_STATUSES
from vk_provider.packing import deflate, inflate
from vk_provider.provider import BackendEvent

Plan = Sequence[tuple[SizeChoice, list[str]]]
"""The attempts of a create, in order: (size, vSwitches)."""


@dataclass(slots=True)
class Entry:
    uid: str
    namespace: str
    name: str
    group_id: str
    # The described group (``hold``): compact JSON, deflated (packing.py); and what every tick reads of an entry.
    held: bytes = b""  # b"" until the group is described
    group_status: str = ""  # its Status word
    created: datetime | None = None  # its CreationTime
    spot: bool = False  # a spot group (SpotStrategy other than NoSpot)
    fingerprint: bytes = b""
    deleting: bool = False
    created_at: float = field(default_factory=time.monotonic)
    request: CreateRequest | None = None  # groups we created, until placed (only a NoStock retry needs it)
    plan: Plan = ()  # until placed, as the request
    attempt: int = 0
    tried: int = 0  # attempts of the plan made so far (the NoStock failure message lists them)
    events: list[BackendEvent] = field(default_factory=list)
    scheduled_announced: bool = False

    @property
    def described(self) -> bool:
        """Whether ECI has described the group yet (a group created moments ago has not)."""
        return bool(self.held)

    @property
    def group(self) -> ContainerGroup | None:
        """The group as last described and held (see ``hold``), decoded: a fresh model on each read, so
        changing it changes nothing held. None until described."""
        return ContainerGroup.model_validate_json(inflate(self.held)) if self.held else None

    def hold(self, group: ContainerGroup, *, events: bool = True, held: bytes | None = None) -> None:
        """Hold a described group as ``held_json`` makes it (``held``, when the caller has already made it)."""
        self.held = deflate(held_json(group, events=events) if held is None else held)
        self.group_status = sys.intern(group.Status)
        self.created = group.CreationTime
        self.spot = group.SpotStrategy not in ("", "NoSpot")


def held_json(group: ContainerGroup, *, events: bool) -> bytes:
    """A described group as an entry holds it, compact JSON: without its tags (the entry has the identity and
    nothing reads them again) or the fields ECI did not send, and, unless ``events`` (its events are still to
    be published), with only its Warning events (``failure_reason`` reads them; the others were published
    with an earlier state of the group). About a fifth of the group as a pydantic model."""
    normal = set() if events else {i for i, e in enumerate(group.Events) if e.Type != "Warning"}
    if normal:
        return group.model_dump_json(exclude={"Tags": True, "Events": normal}, exclude_unset=True).encode()
    return group.model_dump_json(exclude={"Tags"}, exclude_unset=True).encode()


def _has_normal_events(group: ContainerGroup) -> bool:
    return any(e.Type != "Warning" for e in group.Events)


def digest(data: bytes) -> bytes:
    """A 16-byte digest: fingerprints are held for every group, so bytes rather than a hex string."""
    return hashlib.blake2b(data, digest_size=16).digest()


class Index:
    """This node's groups, by pod UID and by group id, and the last status the poll acted on per group."""

    def __init__(self, *, cluster: str, node: str) -> None:
        self._cluster = cluster
        self._node = node
        self._by_uid: dict[str, Entry] = {}
        self._by_group: dict[str, str] = {}
        self._status_fp: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    def __contains__(self, uid: str) -> bool:
        return uid in self._by_uid

    def get(self, uid: str) -> Entry | None:
        return self._by_uid.get(uid)

    def by_group(self, group_id: str) -> Entry | None:
        return self._by_uid.get(self._by_group.get(group_id) or "")

    def entries(self) -> ValuesView[Entry]:
        return self._by_uid.values()

    def put(self, entry: Entry) -> None:
        """Make ``entry`` its pod's entry, replacing the pod's previous group."""
        entry.namespace = sys.intern(entry.namespace)  # one string for the many pods of a namespace
        old = self._by_uid.get(entry.uid)
        if old is not None:
            self._by_group.pop(old.group_id, None)
        self._by_uid[entry.uid] = entry
        self._by_group[entry.group_id] = entry.uid

    def remember(self, group: ContainerGroup) -> Entry | None:
        """Put a described group in the index; return its entry when something changed."""
        tags = {t.Key: t.Value for t in group.Tags}
        ident = names.identity_from_tags(tags, cluster=self._cluster, node=self._node)
        if ident is None:
            return None
        ns, name, uid = ident
        entry = self._by_uid.get(uid)
        if entry is not None and entry.group_id != group.ContainerGroupId:
            # Two groups for one pod (a NoStock attempt being replaced): keep the live, newest one.
            if not entry.described:
                return None
            cur_done = entry.group_status in TERMINAL_GROUP_STATUSES
            new_done = group.Status in TERMINAL_GROUP_STATUSES
            epoch = datetime.min.replace(tzinfo=UTC)
            newer = (group.CreationTime or epoch) > (entry.created or epoch)
            if (new_done and not cur_done) or (new_done == cur_done and not newer):
                return None
        if entry is None or entry.group_id != group.ContainerGroupId:
            prev = entry
            entry = Entry(uid=uid, namespace=ns, name=name, group_id=group.ContainerGroupId)
            if prev is not None:
                entry.request, entry.plan, entry.attempt = prev.request, prev.plan, prev.attempt
                entry.tried, entry.events = prev.tried, prev.events
            self.put(entry)
        held = held_json(group, events=True)
        fp = digest(held)  # of the group as held with its events (the tags are the entry's identity)
        if fp == entry.fingerprint:
            if _has_normal_events(group):  # published with an earlier state of the group
                entry.hold(group, events=False)
            return None
        entry.hold(group, held=held)
        entry.fingerprint = fp
        return entry

    def mark_published(self, entry: Entry, group: ContainerGroup) -> None:
        """The entry's group (``group``: read from it, or as just described) went out on status_changes(): its
        Normal events need not be held any more."""
        if _has_normal_events(group):
            entry.hold(group, events=False)

    def forget(self, uid: str) -> None:
        entry = self._by_uid.pop(uid, None)
        if entry is not None:
            self._by_group.pop(entry.group_id, None)
            self._status_fp.pop(entry.group_id, None)

    def last_status(self, group_id: str) -> bytes | None:
        """The fingerprint of the status the incremental poll last acted on for a group."""
        return self._status_fp.get(group_id)

    def set_last_statuses(self, fingerprints: dict[str, bytes]) -> None:
        for group_id, fp in fingerprints.items():
            entry = self.by_group(group_id)  # keyed by the entry's own id string, not a second copy of it
            self._status_fp[entry.group_id if entry is not None else group_id] = fp
