"""The resource table: keys, storage sharing and lookups by kind."""

from __future__ import annotations

from vk_sandbox.apiserver.resources import BY_PATH, RESOURCES, by_kind


def test_keys_storage_and_lookup() -> None:
    """Keys are plural[.group]; events.k8s.io events are stored with core events; kinds resolve per group."""
    assert RESOURCES["pods"].key == "pods" and RESOURCES["leases.coordination.k8s.io"].api_version == (
        "coordination.k8s.io/v1"
    )
    assert RESOURCES["events.events.k8s.io"].storage_key == "events"
    assert RESOURCES["deployments.apps"].has_status and not RESOURCES["configmaps"].has_status
    assert by_kind("apps/v1", "Deployment") is RESOURCES["deployments.apps"]
    assert by_kind("v1", "Event") is RESOURCES["events"]
    assert by_kind("v1", "Widget") is None
    assert BY_PATH[("", "v1", "nodes")].namespaced is False
    assert all(r.kind and r.version == "v1" for r in RESOURCES.values())
