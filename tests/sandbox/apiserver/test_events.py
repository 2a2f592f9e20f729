"""core/v1 ⇄ events.k8s.io/v1 Event conversion."""

from __future__ import annotations

from vk_sandbox.apiserver.events import from_events_v1, to_events_v1

CORE = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "p.1", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u"},
    "reason": "Started",
    "message": "started container c",
    "type": "Normal",
    "source": {"component": "vk-eci", "host": "vk"},
    "count": 3,
    "firstTimestamp": "2026-01-01T00:00:00Z",
    "lastTimestamp": "2026-01-01T00:01:00Z",
    "reportingComponent": "vk-eci",
    "reportingInstance": "vk",
}


def test_core_to_events_v1_renames_fields() -> None:
    """involvedObject→regarding, message→note, source/count/timestamps→deprecated*, as the real conversion."""
    ev = to_events_v1(CORE)
    assert ev["apiVersion"] == "events.k8s.io/v1"
    assert ev["regarding"] == CORE["involvedObject"] and ev["note"] == "started container c"
    assert ev["deprecatedSource"] == CORE["source"] and ev["deprecatedCount"] == 3
    assert ev["deprecatedLastTimestamp"] == "2026-01-01T00:01:00Z" and ev["reportingController"] == "vk-eci"
    assert "involvedObject" not in ev and "message" not in ev


def test_round_trip_keeps_the_core_shape() -> None:
    """Converting to events.k8s.io/v1 and back gives the original core/v1 Event."""
    assert from_events_v1(to_events_v1(CORE)) == CORE
