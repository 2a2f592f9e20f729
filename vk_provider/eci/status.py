"""ECI container group -> Kubernetes PodStatus (JSON form), and the group's events.

Rules worth knowing:
- ECI reports container states as Waiting / Running / Terminated (not "Succeeded"); each maps to the
  matching Kubernetes state with reason, message, exit code and times.
- ScheduleFailed and Expired become phase Failed, carrying the service's reason (the last Warning
  event's reason when it has one, e.g. NoStock).
- Condition transition times are carried over from the pod's current status whenever a condition's
  status did not change, so a status write happens only when something really changed.
- Every group is its own host, so hostIP is the group's IP.
- A spot group's ``SpotToBeReleased`` event ("Spot ECI will be released in N minutes") is an
  ``Interruption`` (``spot_notice``); a group that ends (Expired, Failed, or gone) after one fails its
  pod with reason ``BidFailed``, the name ECI's own virtual node gives it, never an opaque reason.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from vk_provider.eci.models import Container, ContainerGroup, ContainerState, GroupEvent
from vk_provider.provider import BackendEvent, Interruption, Pod

TERMINAL_GROUP_STATUSES = frozenset({"Succeeded", "Failed", "ScheduleFailed", "Expired"})
_PHASE = {
    "Pending": "Pending",
    "Scheduling": "Pending",
    "ScheduleFailed": "Failed",
    "Running": "Running",
    "Succeeded": "Succeeded",
    "Failed": "Failed",
    "Restarting": "Running",
    "Updating": "Running",
    "Terminating": "Running",
    "Expired": "Failed",
}
NO_STOCK_REASONS = frozenset({"NoStock", "StockExhaust", "StockClose", "RecommendEmpty"})
SPOT_NOTICE_REASON = "SpotToBeReleased"
BID_FAILED_REASON = "BidFailed"
# ECI documents "about 3 minutes" (one page says 5): when the message names no delay, assume the shorter.
DEFAULT_SPOT_NOTICE = timedelta(minutes=3)
_RELEASED_IN = re.compile(r"released\s+in\s+([0-9]+(?:\.[0-9]+)?)\s*(second|sec|s|minute|min|m)", re.IGNORECASE)


def rfc3339(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(state: ContainerState, *, container_id: str) -> dict[str, Any]:
    kind = state.State
    if kind == "Running":
        return {"running": {"startedAt": rfc3339(state.StartTime)}}
    if kind == "Terminated":
        term: dict[str, Any] = {
            "exitCode": state.ExitCode if state.ExitCode is not None else 0,
            "reason": state.Reason or ("Completed" if not state.ExitCode else "Error"),
            "startedAt": rfc3339(state.StartTime),
            "finishedAt": rfc3339(state.FinishTime),
            "containerID": container_id,
        }
        if state.Message:
            term["message"] = state.Message
        if state.Signal:
            term["signal"] = state.Signal
        return {"terminated": term}
    if kind == "Waiting":
        waiting: dict[str, Any] = {"reason": state.Reason or "ContainerCreating"}
        if state.Message:
            waiting["message"] = state.Message
        return {"waiting": waiting}
    return {}


def _container_status(spec: dict[str, Any], c: Container | None, group_id: str) -> dict[str, Any]:
    name = str(spec.get("name"))
    image = str(spec.get("image") or (c.Image if c else ""))
    if c is None:
        return {
            "name": name,
            "image": image,
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {},
        }
    cid = c.ContainerId or f"eci://{group_id}/{name}"
    if cid and "://" not in cid:
        cid = f"containerd://{cid}"
    state = _state(c.CurrentState, container_id=cid) or {"waiting": {"reason": "ContainerCreating"}}
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imageID": c.ImageId or "",
        "ready": bool(c.Ready and "running" in state),
        "started": "running" in state,
        "restartCount": c.RestartCount,
        "state": state,
        "lastState": _state(c.PreviousState, container_id=cid),
    }
    if "waiting" not in state:
        out["containerID"] = cid
    return out


def _condition(
    ctype: str, ok: bool, now: str, previous: dict[str, dict[str, Any]], reason: str | None = None
) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = previous.get(ctype)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    cond: dict[str, Any] = {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or now,
    }
    if reason and not ok:
        cond["reason"] = reason
    return cond


def failure_reason(group: ContainerGroup) -> tuple[str, str]:
    """(reason, message) for a group that failed to schedule or expired, from its Warning events."""
    warnings = [e for e in group.Events if e.Type == "Warning"]
    if warnings:
        last = max(warnings, key=lambda e: e.LastTimestamp or e.FirstTimestamp or datetime.min.replace(tzinfo=UTC))
        return last.Reason or group.Status, last.Message or f"ECI group {group.Status}"
    return group.Status, f"the ECI container group is {group.Status}"


def spot_notice(group: ContainerGroup) -> Interruption | None:
    """The group's ``SpotToBeReleased`` event as an Interruption: released at the event's first time plus
    the delay its message names ("will be released in 3 minutes"), else plus ``DEFAULT_SPOT_NOTICE``."""
    for e in group.Events:
        if e.Reason != SPOT_NOTICE_REASON:
            continue
        at = e.FirstTimestamp or e.LastTimestamp or group.CreationTime or datetime.now(UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        delay = DEFAULT_SPOT_NOTICE
        m = _RELEASED_IN.search(e.Message)
        if m:
            n = float(m.group(1))
            delay = timedelta(minutes=n) if m.group(2).lower().startswith("m") else timedelta(seconds=n)
        return Interruption(reason=SPOT_NOTICE_REASON, message=e.Message, release_at=at + delay)
    return None


def is_no_stock(group: ContainerGroup) -> bool:
    return group.Status == "ScheduleFailed" and failure_reason(group)[0] in NO_STOCK_REASONS


def container_group_to_pod_status(
    group: ContainerGroup, pod: Pod | None, *, now: datetime | None = None
) -> dict[str, Any]:
    """Map a group to the pod's status. ``pod`` (when known) gives container order and old conditions."""
    now_s = rfc3339(now or datetime.now(UTC)) or ""
    spec = (pod or {}).get("spec") or {}
    old = (pod or {}).get("status") or {}
    previous = {str(c.get("type")): c for c in old.get("conditions") or [] if isinstance(c, dict)}
    phase = _PHASE.get(group.Status, "Pending")

    by_name = {c.Name: c for c in group.Containers}
    init_by_name = {c.Name: c for c in group.InitContainers}
    spec_containers = spec.get("containers") or [{"name": c.Name, "image": c.Image} for c in group.Containers]
    spec_inits = spec.get("initContainers") or [{"name": c.Name, "image": c.Image} for c in group.InitContainers]
    statuses = [_container_status(c, by_name.get(str(c.get("name"))), group.ContainerGroupId) for c in spec_containers]
    init_statuses = [
        _container_status(c, init_by_name.get(str(c.get("name"))), group.ContainerGroupId) for c in spec_inits
    ]
    # Initialized once every init container exited 0 (a finished init container is never "ready").
    initialized = all(s["state"].get("terminated", {}).get("exitCode") == 0 for s in init_statuses)
    all_ready = bool(statuses) and all(s["ready"] for s in statuses)
    terminal = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"

    scheduled = group.Status != "ScheduleFailed"
    conditions = [
        _condition("Initialized", initialized, now_s, previous, "ContainersNotInitialized"),
        _condition("Ready", all_ready and not terminal, now_s, previous, ready_reason),
        _condition("ContainersReady", all_ready and not terminal, now_s, previous, ready_reason),
        _condition("PodScheduled", scheduled, now_s, previous, "Unschedulable"),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": statuses,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    notice = spot_notice(group) if group.Status in ("Expired", "Failed") else None
    if notice is not None:
        status["reason"] = BID_FAILED_REASON
        status["message"] = notice.released_message(group.ContainerGroupId, group.ExpiredTime or group.FailedTime)
    elif group.Status in ("ScheduleFailed", "Expired"):
        reason, message = failure_reason(group)
        status["reason"] = reason
        status["message"] = message
    elif group.Status == "Failed" and old.get("reason"):
        status["reason"] = old["reason"]
    if group.IntranetIp:
        status["podIP"] = group.IntranetIp
        ips = [{"ip": group.IntranetIp}]
        if group.Ipv6Address:
            ips.append({"ip": group.Ipv6Address})
        status["podIPs"] = ips
        status["hostIP"] = group.IntranetIp
        status["hostIPs"] = [{"ip": group.IntranetIp}]
    start = old.get("startTime") or rfc3339(group.CreationTime)
    if start:
        status["startTime"] = start
    if old.get("qosClass"):
        status["qosClass"] = old["qosClass"]
    return status


def vanished_pod_status(pod: Pod, *, now: datetime | None = None) -> dict[str, Any]:
    """The status of a pod whose group disappeared without our asking: Failed, containers killed (137)."""
    now_s = rfc3339(now or datetime.now(UTC))
    old = pod.get("status") or {}
    previous = {str(c.get("type")): c for c in old.get("conditions") or [] if isinstance(c, dict)}
    spec = pod.get("spec") or {}
    statuses = []
    old_by_name = {s.get("name"): s for s in old.get("containerStatuses") or []}
    for c in spec.get("containers") or []:
        prev = old_by_name.get(c.get("name")) or {}
        started = (prev.get("state") or {}).get("running", {}).get("startedAt")
        statuses.append(
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": prev.get("imageID", ""),
                "ready": False,
                "started": False,
                "restartCount": prev.get("restartCount", 0),
                "state": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerGroupVanished",
                        "message": "the ECI container group disappeared",
                        "startedAt": started,
                        "finishedAt": now_s,
                    }
                },
                "lastState": prev.get("lastState") or {},
            }
        )
    status = dict(old)
    status.update(
        {
            "phase": "Failed",
            "reason": "ContainerGroupVanished",
            "message": "the ECI container group of this pod was deleted outside of Kubernetes",
            "containerStatuses": statuses,
            "conditions": [
                _condition("Ready", False, now_s or "", previous, "PodFailed"),
                _condition("ContainersReady", False, now_s or "", previous, "PodFailed"),
                _condition("Initialized", True, now_s or "", previous),
                _condition("PodScheduled", True, now_s or "", previous),
            ],
        }
    )
    return status


# ECI's Normal events that repeat what the pod already shows: "Scheduling" says what our
# ProviderCreateSuccess says (and no kubelet emits it); "Scheduled" names the zone, which our
# ContainerGroupScheduled event (size, zone, vSwitch, spot) and the eci-instance-zone annotation carry,
# and would read as a second kube-scheduler "Scheduled". Each mirrored event is an API write per pod.
REDUNDANT_NORMAL_EVENTS = frozenset({"Scheduling", "Scheduled"})


def group_events(group: ContainerGroup) -> list[BackendEvent]:
    """The group's events as BackendEvents (the controller de-duplicates them by reason+message), but for
    the Normal ones in ``REDUNDANT_NORMAL_EVENTS``; Warning events are always kept."""
    return [
        _event(e) for e in group.Events if e.Type == "Warning" or (e.Reason or e.Name) not in REDUNDANT_NORMAL_EVENTS
    ]


def _event(e: GroupEvent) -> BackendEvent:
    return BackendEvent(
        type="Warning" if e.Type == "Warning" else "Normal",
        reason=e.Reason or e.Name or "ECIEvent",
        message=e.Message,
        count=max(1, e.Count),
        first_timestamp=e.FirstTimestamp,
        last_timestamp=e.LastTimestamp,
    )
