"""container_group_to_pod_status: phases, conditions, container states, IPs and events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.status import (
    container_group_to_pod_status,
    group_events,
    is_no_stock,
    spot_notice,
    vanished_pod_status,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "d", "uid": "u"},
    "spec": {"containers": [{"name": "app", "image": "nginx"}], "initContainers": [{"name": "init", "image": "bb"}]},
    "status": {
        "qosClass": "Burstable",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    },
}


def group(
    status: str, app: dict[str, Any] | None = None, init: dict[str, Any] | None = None, **kw: Any
) -> ContainerGroup:
    data: dict[str, Any] = {
        "ContainerGroupId": "eci-1",
        "Status": status,
        "IntranetIp": "192.168.0.7",
        "CreationTime": "2026-01-02T03:00:00Z",
        "Containers": [{"Name": "app", "Image": "nginx", **(app or {})}],
        "InitContainers": [{"Name": "init", "Image": "bb", **(init or {})}],
        **kw,
    }
    return ContainerGroup.model_validate(data)


DONE_INIT = {"CurrentState": {"State": "Terminated", "ExitCode": 0, "Reason": "Completed"}}


@pytest.mark.parametrize(
    ("gstatus", "phase"),
    [
        ("Pending", "Pending"),
        ("Scheduling", "Pending"),
        ("Running", "Running"),
        ("Succeeded", "Succeeded"),
        ("Failed", "Failed"),
        ("ScheduleFailed", "Failed"),
        ("Expired", "Failed"),
        ("Restarting", "Running"),
    ],
)
def test_phase(gstatus: str, phase: str) -> None:
    """Every ECI group status maps to the right pod phase."""
    assert container_group_to_pod_status(group(gstatus), POD, now=NOW)["phase"] == phase


def test_running_ready_pod() -> None:
    """A running, ready container gives Ready/ContainersReady/Initialized True, podIP, hostIP and startTime."""
    g = group(
        "Running",
        {
            "Ready": True,
            "RestartCount": 2,
            "CurrentState": {"State": "Running", "StartTime": "2026-01-02T03:01:00Z"},
            "PreviousState": {"State": "Terminated", "ExitCode": 1, "Reason": "Error"},
        },
        DONE_INIT,
    )
    s = container_group_to_pod_status(g, POD, now=NOW)
    conds = {c["type"]: c for c in s["conditions"]}
    assert {t: c["status"] for t, c in conds.items()} == {
        "Ready": "True",
        "ContainersReady": "True",
        "Initialized": "True",
        "PodScheduled": "True",
    }
    assert conds["PodScheduled"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conds["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    cs = s["containerStatuses"][0]
    assert cs["state"] == {"running": {"startedAt": "2026-01-02T03:01:00Z"}}
    assert cs["lastState"]["terminated"]["exitCode"] == 1 and cs["restartCount"] == 2
    assert cs["ready"] and cs["started"] and cs["containerID"].startswith("eci://")
    assert s["podIP"] == s["hostIP"] == "192.168.0.7" and s["podIPs"] == [{"ip": "192.168.0.7"}]
    assert s["startTime"] == "2026-01-02T03:00:00Z" and s["qosClass"] == "Burstable"
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_terminated_container() -> None:
    """A Terminated ECI state becomes terminated with exitCode, reason, message and times (not waiting)."""
    g = group(
        "Failed",
        {
            "CurrentState": {
                "State": "Terminated",
                "ExitCode": 3,
                "Reason": "Error",
                "Message": "bad",
                "StartTime": "2026-01-02T03:01:00Z",
                "FinishTime": "2026-01-02T03:02:00Z",
            }
        },
        DONE_INIT,
    )
    s = container_group_to_pod_status(g, POD, now=NOW)
    term = s["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (3, "Error", "bad")
    assert term["finishedAt"] == "2026-01-02T03:02:00Z"
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"


def test_waiting_and_init_running() -> None:
    """While an init container runs, Initialized is False and app containers wait."""
    g = group(
        "Pending",
        {"CurrentState": {"State": "Waiting", "Reason": "PodInitializing"}},
        {"CurrentState": {"State": "Running"}},
    )
    s = container_group_to_pod_status(g, POD, now=NOW)
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    init = next(c for c in s["conditions"] if c["type"] == "Initialized")
    assert init["status"] == "False" and init["reason"] == "ContainersNotInitialized"


def test_schedule_failed_carries_reason() -> None:
    """ScheduleFailed is Failed with the last Warning event's reason and message, PodScheduled False."""
    g = group(
        "ScheduleFailed",
        Events=[
            {"Type": "Normal", "Reason": "Scheduling", "Message": "x", "LastTimestamp": "2026-01-02T03:00:00Z"},
            {
                "Type": "Warning",
                "Reason": "NoStock",
                "Message": "out of stock",
                "Count": 2,
                "LastTimestamp": "2026-01-02T03:00:01Z",
            },
        ],
    )
    s = container_group_to_pod_status(g, POD, now=NOW)
    assert (s["phase"], s["reason"], s["message"]) == ("Failed", "NoStock", "out of stock")
    assert next(c for c in s["conditions"] if c["type"] == "PodScheduled")["status"] == "False"
    assert is_no_stock(g)
    events = group_events(g)
    assert [(e.type, e.reason, e.count) for e in events] == [("Warning", "NoStock", 2)]


def test_group_events_leave_out_what_our_events_say() -> None:
    """ECI's Normal Scheduling and Scheduled are not mirrored (ProviderCreateSuccess and
    ContainerGroupScheduled say it, and each is an API write per pod); the rest, and any Warning, are."""
    g = group(
        "Running",
        Events=[
            {"Type": "Normal", "Reason": "Scheduling", "Message": "being scheduled"},
            {"Type": "Normal", "Reason": "Scheduled", "Message": "assigned to zone cn-hangzhou-k"},
            {"Type": "Warning", "Reason": "Scheduled", "Message": "odd, but a warning"},
            {"Type": "Normal", "Reason": "Pulled", "Message": "image present"},
            {"Type": "Normal", "Reason": "Started", "Message": "started app"},
        ],
    )
    assert [(e.type, e.reason) for e in group_events(g)] == [
        ("Warning", "Scheduled"),
        ("Normal", "Pulled"),
        ("Normal", "Started"),
    ]


def test_without_pod_uses_group_containers() -> None:
    """With no pod at hand, container statuses follow the group's containers."""
    s = container_group_to_pod_status(group("Running"), None, now=NOW)
    assert [c["name"] for c in s["containerStatuses"]] == ["app"]


def test_vanished_group() -> None:
    """A pod whose group vanished is Failed with containers terminated by exit code 137."""
    s = vanished_pod_status(POD, now=NOW)
    assert s["phase"] == "Failed" and s["reason"] == "ContainerGroupVanished"
    assert s["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137


def _spot_event(message: str) -> dict[str, Any]:
    return {
        "Type": "Warning",
        "Reason": "SpotToBeReleased",
        "Message": message,
        "FirstTimestamp": "2026-01-02T03:04:05Z",
    }


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Spot ECI will be released in 3 minutes.", 180),
        ("Spot ECI will be released in 5 minutes", 300),
        ("Spot ECI will be released in 20 seconds.", 20),
        ("the instance is going away", 180),  # no delay named: ECI's documented 3 minutes
    ],
)
def test_spot_notice_release_time(message: str, seconds: int) -> None:
    """The release time is the notice's first timestamp plus the delay its message names (3 minutes if none)."""
    notice = spot_notice(group("Running", Events=[_spot_event(message)]))
    assert notice is not None and (notice.release_at - NOW).total_seconds() == seconds
    assert spot_notice(group("Running")) is None


def test_released_spot_group_fails_the_pod_bid_failed() -> None:
    """An Expired group that had a release notice: Failed, reason BidFailed, naming the group and the time."""
    g = group(
        "Expired",
        Events=[_spot_event("Spot ECI will be released in 3 minutes.")],
        ExpiredTime="2026-01-02T03:07:06Z",
    )
    status = container_group_to_pod_status(g, POD, now=NOW)
    assert status["phase"] == "Failed" and status["reason"] == "BidFailed"
    assert "eci-1" in status["message"] and "2026-01-02T03:07:06Z" in status["message"]
    assert container_group_to_pod_status(group("Expired"), POD, now=NOW)["reason"] != "BidFailed"
