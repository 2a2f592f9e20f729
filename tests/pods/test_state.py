"""What the pod controller holds per pod: a group as ``Held`` (compact status, no events)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from vk_provider.pods.state import Held, hold
from vk_provider.provider import BackendEvent, BackendPod, Interruption

RUNNING = {
    "phase": "Running",
    "podIP": "10.0.0.5",
    "podIPs": [{"ip": "10.0.0.5"}],
    "startTime": "2026-12-03T10:00:00Z",
    "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-03T10:00:03Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-03T10:00:00Z"},
    ],
    "containerStatuses": [
        {
            "name": "main",
            "image": "busybox",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": "2026-12-03T10:00:02Z"}},
            "lastState": {},
        }
    ],
}


def test_hold_keeps_every_field_but_the_events_and_the_status_as_it_was() -> None:
    released = Interruption("SpotToBeReleased", "released soon", datetime(2026, 12, 3, 11, tzinfo=UTC))
    created = datetime(2026, 12, 3, 10, tzinfo=UTC)
    bp = BackendPod(
        "default",
        "web",
        "uid-web",
        "eci-1",
        "Running",
        copy.deepcopy(RUNNING),
        created=created,
        events=[BackendEvent("Normal", "Started", "started", 1, None, None)],
        interruption=released,
        zone="cn-hangzhou-k",
        size="2-4Gi",
    )
    held = hold(bp)
    assert (held.namespace, held.name, held.uid, held.group_id, held.group_status) == (
        "default",
        "web",
        "uid-web",
        "eci-1",
        "Running",
    )
    assert (held.created, held.interruption, held.zone, held.size) == (created, released, "cn-hangzhou-k", "2-4Gi")
    assert held.status == RUNNING
    assert not hasattr(held, "events") and not hasattr(held, "__dict__")  # slots: nothing per instance but fields


def test_each_read_of_the_status_is_a_fresh_dict() -> None:
    held = hold(BackendPod("default", "web", "uid-web", "eci-1", "Running", copy.deepcopy(RUNNING)))
    first = held.status
    first["phase"] = "Failed"
    first["containerStatuses"][0]["ready"] = False
    assert held.status == RUNNING


def test_no_status_is_held_as_nothing() -> None:
    held = hold(BackendPod("default", "web", "uid-web", "", "Pending", {}))
    assert held.status_json == b"" and held.status == {}
    assert Held("default", "web", "uid-web", "", "Pending").status == {}
