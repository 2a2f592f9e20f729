"""The index (index.py): what it holds for a placed group, and the lean form of a held group."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.eci.conftest import make_pod, until
from vk_provider.eci.index import Entry, Index
from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.provider import ECIProvider
from vk_provider.eci.status import container_group_to_pod_status, group_events, is_no_stock
from vk_provider.packing import inflate
from vk_provider.provider import BackendPod, PodResources
from vk_sandbox.eci.server import ECISimulator


async def test_index_keeps_a_placed_group_lean(provider: ECIProvider, sim: ECISimulator) -> None:
    """Held for every pod, an index entry drops what nothing reads again: the create request once the group
    is placed (only a NoStock retry needs it), the group's tags (the identity is in the entry), and keeps
    fingerprints as short digests. Lookups, status and update still work from it."""
    pod = make_pod("lean", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    entry = provider.index.get("uid-lean")
    assert entry.request is not None  # not placed yet: a NoStock retry may still need it
    published: list[BackendPod] = []

    def running(bp: BackendPod) -> bool:
        published.append(bp)
        return bool(bp.status["phase"] == "Running")

    await until(provider, "uid-lean", running)
    # The status stream carried the Normal events; the index keeps only Warning ones.
    reasons = {e.reason for bp in published for e in bp.events}
    assert "ContainerGroupScheduled" in reasons
    assert not reasons & {"Scheduling", "Scheduled"}  # ECI's, saying what ours say
    entry = provider.index.get("uid-lean")
    assert entry.request is None and entry.scheduled_announced
    group = entry.group
    assert group is not None and group.Tags == [] and group.Status == entry.group_status == "Running"
    assert all(e.Type == "Warning" for e in group.Events)
    # Held as compact JSON, without the tags, deflated.
    held = inflate(entry.held)
    assert held.startswith(b'{"') and b"Tags" not in held and b"vk-eci" not in held and len(entry.held) < len(held)
    assert entry.created is not None and entry.created == group.CreationTime and not entry.spot
    group.Status = "Failed"
    assert entry.group is not None and entry.group.Status == "Running"  # each read decodes a fresh model
    assert isinstance(entry.fingerprint, bytes) and len(entry.fingerprint) == 16
    assert all(isinstance(fp, bytes) and len(fp) == 16 for fp in provider.index._status_fp.values())
    again = await provider.backend_pod(pod)
    assert again is not None and again.uid == "uid-lean" and again.status["phase"] == "Running"
    assert [(p.namespace, p.name, p.uid) for p in await provider.backend_pods()] == [("default", "lean", "uid-lean")]
    # A resync re-reads the group with its tags: identical, so nothing is published again.
    await provider.poller.resync()
    assert provider.index.get("uid-lean").fingerprint == entry.fingerprint
    pod["spec"]["containers"][0]["image"] = "busybox:1.36"
    await provider.update_pod(pod, PodResources())
    assert sim.stats()["calls"]["UpdateContainerGroup"] == 1


def test_a_held_group_maps_like_the_described_one() -> None:
    """A held group (Entry.hold, then mark_published) keeps every field the provider reads: the pod status
    maps the same, a NoStock failure is still recognised from the Warning events, and only Normal events
    (once published) and tags are dropped. The fields read on every tick sit beside it."""
    wire = {
        "ContainerGroupId": "eci-1",
        "Status": "ScheduleFailed",
        "IntranetIp": "10.0.0.9",
        "CreationTime": "2026-01-01T00:00:00Z",
        "Tags": [{"Key": "vk-eci/uid", "Value": "u-1"}],
        "Events": [
            {"Type": "Normal", "Reason": "Scheduling", "Message": "scheduling", "Count": 1},
            {"Type": "Warning", "Reason": "NoStock", "Message": "no stock", "Count": 2},
        ],
        "Containers": [
            {
                "Name": "app",
                "Image": "busybox",
                "CurrentState": {"State": "Waiting", "Reason": "Pending"},
                "PreviousState": {},
            }
        ],
    }
    now = datetime(2026, 1, 1, tzinfo=UTC)
    described = ContainerGroup.model_validate(wire)
    entry = Entry(uid="u-1", namespace="default", name="p", group_id="eci-1")
    entry.hold(ContainerGroup.model_validate(wire))
    unpublished = entry.group
    assert unpublished is not None and [e.Reason for e in unpublished.Events] == ["Scheduling", "NoStock"]
    Index(cluster="c1", node="vk").mark_published(entry, unpublished)
    held = entry.group
    assert held is not None
    assert container_group_to_pod_status(held, None, now=now) == container_group_to_pod_status(described, None, now=now)
    assert is_no_stock(held)
    assert [e.reason for e in group_events(held)] == ["NoStock"]
    assert held.Tags == [] and held.Containers == described.Containers
    assert held.model_dump(exclude={"Tags", "Events"}) == described.model_dump(exclude={"Tags", "Events"})
    assert (entry.group_status, entry.created, entry.spot) == ("ScheduleFailed", now, False)
    entry.hold(ContainerGroup.model_validate(wire), events=False)
    assert entry.group is not None and entry.group.Events == held.Events
    entry.hold(ContainerGroup.model_validate({**wire, "SpotStrategy": "SpotAsPriceGo"}))
    assert entry.spot


def test_entries_share_their_namespace_and_group_id_strings() -> None:
    """Held for every pod: the entries of one namespace share its name, and the last status of a group is
    keyed by the entry's own group id rather than by a copy from the status listing."""
    index = Index(cluster="c1", node="vk")
    for i in range(2):
        index.put(Entry(uid=f"u-{i}", namespace="".join(["def", "ault"]), name=f"p-{i}", group_id=f"eci-{i}"))
    first, second = index.get("u-0"), index.get("u-1")
    assert first is not None and second is not None and first.namespace is second.namespace
    listed = "".join(["eci-", "0"])
    assert listed is not first.group_id
    index.set_last_statuses({listed: b"fp", "eci-unknown": b"fp2"})
    assert index.last_status("eci-0") == b"fp" and index.last_status("eci-unknown") == b"fp2"
    assert next(k for k in index._status_fp if k == "eci-0") is first.group_id
