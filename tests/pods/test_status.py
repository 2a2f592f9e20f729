"""Status merging: stable (so unchanged status writes nothing) and faithful to transition times."""

from __future__ import annotations

from tests.pods.fakes import make_pod
from vk_provider.pods.status import failed_status, merge_conditions, merge_status


def test_merge_is_stable() -> None:
    """Merging the same backend status into its own result changes nothing."""
    current = {"phase": "Pending", "qosClass": "Burstable", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    backend = {
        "phase": "Running",
        "podIP": "10.1.1.1",
        "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None}],
    }
    once = merge_status(current, backend)
    twice = merge_status(once, backend)
    assert once == twice
    assert once["qosClass"] == "Burstable"
    assert [c["type"] for c in once["conditions"]] == ["PodScheduled", "Ready"]


def test_transition_time_moves_only_on_status_change() -> None:
    """Same status keeps lastTransitionTime; a changed status takes the new one."""
    current = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    same = merge_conditions(
        current, [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-02-02T00:00:00Z"}]
    )
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    moved = merge_conditions(
        current, [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-02-02T00:00:00Z"}]
    )
    assert moved[0]["lastTransitionTime"] == "2026-02-02T00:00:00Z"


def test_failed_status_terminates_containers() -> None:
    """failed_status with an exit code gives Failed, terminated containers with that code, Ready False."""
    pod = make_pod("x", initContainers=[{"name": "init", "image": "a"}])
    st = failed_status(pod, "ContainerGroupVanished", "gone", exit_code=137)
    assert st["phase"] == "Failed"
    assert st["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    assert st["initContainerStatuses"][0]["name"] == "init"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
    waiting = failed_status(pod, "ProviderFailed", "bad")
    assert waiting["containerStatuses"][0]["state"] == {"waiting": {"reason": "ProviderFailed", "message": "bad"}}
