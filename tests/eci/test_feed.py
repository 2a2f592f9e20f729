"""The feed (feed.py): index entries as BackendPods, and as the GC's lean BackendGroups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vk_provider.eci import feed as feed_module
from vk_provider.eci import names
from vk_provider.eci.feed import Feed
from vk_provider.eci.index import Entry, Index
from vk_provider.eci.models import ContainerGroup
from vk_provider.provider import BackendEvent, BackendGroup


def described(name: str, uid: str, group_id: str) -> ContainerGroup:
    pod = {"metadata": {"namespace": "default", "name": name, "uid": uid}}
    tags = names.identity_tags(pod, cluster="c1", node="vk")
    return ContainerGroup.model_validate(
        {
            "ContainerGroupId": group_id,
            "Status": "Running",
            "CreationTime": "2026-01-01T00:00:00Z",
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            "Containers": [{"Name": "app", "CurrentState": {"State": "Running"}}],
        }
    )


def test_backend_groups_are_identities_without_status_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the GC reads of every group: identity and creation time, with no status mapped (a sweep over
    10,000 groups must not build 10,000 pod statuses); a group not described yet has no creation time."""
    index = Index(cluster="c1", node="vk")
    index.remember(described("web", "uid-web", "eci-web"))
    index.put(Entry(uid="uid-new", namespace="default", name="new", group_id="eci-new"))
    feed = Feed(index)

    def no_mapping(*_: Any) -> Any:
        raise AssertionError("backend_groups mapped a status")

    monkeypatch.setattr(feed_module, "container_group_to_pod_status", no_mapping)
    assert sorted(feed.backend_groups(), key=lambda g: g.uid) == [
        BackendGroup("default", "new", "uid-new", "eci-new", None),
        BackendGroup("default", "web", "uid-web", "eci-web", datetime(2026, 1, 1, tzinfo=UTC)),
    ]


async def test_our_events_go_out_once_even_when_a_publish_replaces_a_pending_one() -> None:
    """The events we report with a group (here a translation warning) stay on the entry until the status
    stream hands a BackendPod to its consumer: a second publish before then still carries them, and once
    handed over the entry holds them no more (the controller mirrors each once)."""
    index = Index(cluster="c1", node="vk")
    warning = BackendEvent("Warning", "NotSupported", "dnsPolicy ...", 1, None, None)
    index.put(Entry(uid="uid-web", namespace="default", name="web", group_id="eci-web", events=[warning]))
    feed = Feed(index)
    for status in ("Pending", "Running"):
        group = described("web", "uid-web", "eci-web").model_copy(update={"Status": status})
        entry = index.remember(group)
        assert entry is not None
        feed.publish(entry, group)
    changes = feed.changes()
    bp = await anext(changes)
    assert bp.group_status == "Running" and warning in bp.events
    entry = index.get("uid-web")
    assert entry is not None and entry.events == []
    assert warning not in feed.backend_pod(entry).events
    feed.close()
    await changes.aclose()
