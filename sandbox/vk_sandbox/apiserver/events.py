"""core/v1 and events.k8s.io/v1 Events share one store; these convert between the two shapes."""

from __future__ import annotations

from typing import Any

from vk_sandbox.apiserver.resources import ResourceType
from vk_sandbox.apiserver.store import deep_copy

# core/v1 field -> events.k8s.io/v1 field
_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "count": "deprecatedCount",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "reportingComponent": "reportingController",
}
_SAME = ("metadata", "reason", "type", "action", "related", "reportingInstance", "eventTime", "series")


def to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for k in _SAME:
        if k in core:
            out[k] = deep_copy(core[k])
    for old, new in _RENAMES.items():
        if old in core and core[old] not in (None, "", {}):
            out[new] = deep_copy(core[old])
    return out


def from_events_v1(ev: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "v1"}
    for k in _SAME:
        if k in ev:
            out[k] = deep_copy(ev[k])
    for old, new in _RENAMES.items():
        if new in ev:
            out[old] = deep_copy(ev[new])
    # core/v1 readers (kubectl describe) expect a source; fall back to the reporting controller.
    if not out.get("source") and ev.get("reportingController"):
        out["source"] = {"component": ev["reportingController"]}
    out.setdefault("involvedObject", {})
    return out


def external(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object as ``rt`` serves it: events.k8s.io converts, every other kind is served as stored."""
    return to_events_v1(obj) if rt.group == "events.k8s.io" else obj


def internal(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """An object sent to ``rt`` as the store keeps it (the inverse of ``external``)."""
    return from_events_v1(obj) if rt.group == "events.k8s.io" else obj
