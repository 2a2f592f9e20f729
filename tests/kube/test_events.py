"""Events: kubelet-style de-duplication with counts, the vk-eci source, and no secrets in messages."""

from __future__ import annotations

from tests.kube.fakes import FakeKube
from tests.pods.fakes import make_pod
from vk_provider.kube.events import EventRecorder


async def test_repeated_event_is_counted_not_duplicated() -> None:
    """The same event twice is one Event with count 2; a different message is a new Event."""
    kube = FakeKube()
    rec = EventRecorder(kube, host="vk")  # type: ignore[arg-type]
    pod = make_pod("web")
    await rec.record(pod, "Warning", "ProviderCreateFailed", "throttled")
    await rec.record(pod, "Warning", "ProviderCreateFailed", "throttled")
    await rec.record(pod, "Warning", "ProviderCreateFailed", "other")
    events = kube.events()
    assert len(events) == 2
    counted = next(e for e in events if e["message"] == "throttled")
    assert counted["count"] == 2
    assert counted["source"] == {"component": "vk-eci", "host": "vk"}
    assert counted["involvedObject"]["uid"] == "uid-web"
    assert counted["metadata"]["namespace"] == "default"


async def test_secrets_never_reach_event_messages() -> None:
    """Values that look like secrets are masked before the Event is written."""
    kube = FakeKube()
    rec = EventRecorder(kube, host="vk")  # type: ignore[arg-type]
    await rec.record(make_pod("web"), "Warning", "X", "call failed: AccessKeySecret=hunter2 Password: s3cr3t")
    msg = kube.events()[0]["message"]
    assert "hunter2" not in msg and "s3cr3t" not in msg


async def test_recording_never_raises() -> None:
    """A failing API server does not break the caller: events are best effort."""
    kube = FakeKube()
    rec = EventRecorder(kube, host="vk")  # type: ignore[arg-type]
    pod = make_pod("web", ns="gone")
    from vk_provider.kube.client import KubeError

    kube.fail_next[("POST", "/api/v1/namespaces/gone/events")] = KubeError(403, "Forbidden", "no")
    await rec.record(pod, "Normal", "X", "y")
    assert kube.events() == []
