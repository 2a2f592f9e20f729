"""The index of this node's groups: one entry per pod, keyed by pod UID and by group id.

Held in memory for every pod (10,000 at a time), so an entry keeps a described group made lean
(``_held``) and fingerprints as 16-byte digests. ``Index`` is the one place that changes the two maps:
``put`` (a group we just created), ``remember`` (a group described by ECI) and ``forget``. Identity
comes only from the group's tags (names.py). The fields of an entry past ``created_at`` are the pod's
own state, carried from group to group: its NoStock plan (placement.py) and the events we report
with the group's (translation warnings, NoStock, ContainerGroupScheduled).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import ValuesView
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vk_provider.eci import names
from vk_provider.eci.models import ContainerGroup, ContainerState, share_field_sets
from vk_provider.eci.request import CreateRequest
from vk_provider.eci.specs import SizeChoice
from vk_provider.eci.status import TERMINAL_GROUP_STATUSES
from vk_provider.provider import BackendEvent

Plan = list[tuple[SizeChoice, list[str]]]
"""The attempts of a create, in order: (size, vSwitches)."""


@dataclass(slots=True)
class Entry:
    uid: str
    namespace: str
    name: str
    group_id: str
    group: ContainerGroup | None = None
    fingerprint: bytes = b""
    deleting: bool = False
    created_at: float = field(default_factory=time.monotonic)
    request: CreateRequest | None = None  # groups we created, until placed (only a NoStock retry needs it)
    plan: Plan = field(default_factory=list)
    attempt: int = 0
    tried: int = 0  # attempts of the plan made so far (the NoStock failure message lists them)
    events: list[BackendEvent] = field(default_factory=list)
    scheduled_announced: bool = False


def digest(data: bytes) -> bytes:
    """A 16-byte digest: fingerprints are held for every group, so bytes rather than a hex string."""
    return hashlib.blake2b(data, digest_size=16).digest()


def _fingerprint(group: ContainerGroup) -> bytes:
    return digest(group.model_dump_json().encode())


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
            entry = Entry(uid=uid, namespace=ns, name=name, group_id=group.ContainerGroupId)
            if prev is not None:
                entry.request, entry.plan, entry.attempt = prev.request, prev.plan, prev.attempt
                entry.tried, entry.events = prev.tried, prev.events
            self.put(entry)
        fp = _fingerprint(group)  # of the group as described, tags and events included
        changed = fp != entry.fingerprint
        entry.group = _held(group, events=changed)
        if not changed:
            return None
        entry.fingerprint = fp
        return entry

    def mark_published(self, entry: Entry) -> None:
        """The entry's group went out on status_changes(): its Normal events need not be held any more."""
        if entry.group is not None:
            entry.group = _published(entry.group)

    def forget(self, uid: str) -> None:
        entry = self._by_uid.pop(uid, None)
        if entry is not None:
            self._by_group.pop(entry.group_id, None)
            self._status_fp.pop(entry.group_id, None)

    def last_status(self, group_id: str) -> bytes | None:
        """The fingerprint of the status the incremental poll last acted on for a group."""
        return self._status_fp.get(group_id)

    def set_last_statuses(self, fingerprints: dict[str, bytes]) -> None:
        self._status_fp.update(fingerprints)
