"""JSON Patch operations on a pod, shared by the webhook and the burst controller: annotations added (or
replaced), and a toleration appended unless the pod already has one that covers it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vk_provider.elastic.target import tolerated
from vk_provider.provider import Pod

Ops = list[dict[str, Any]]


def pointer(segment: str) -> str:
    """One JSON Pointer segment (RFC 6901): ``~`` and ``/`` escaped."""
    return segment.replace("~", "~0").replace("/", "~1")


def annotation_ops(pod: Pod, notes: Mapping[str, str]) -> Ops:
    if (pod.get("metadata") or {}).get("annotations"):
        return [{"op": "add", "path": f"/metadata/annotations/{pointer(k)}", "value": v} for k, v in notes.items()]
    return [{"op": "add", "path": "/metadata/annotations", "value": dict(notes)}]


def toleration_ops(pod: Pod, toleration: Mapping[str, str] | None) -> Ops:
    if toleration is None or tolerated(pod, toleration):
        return []
    if (pod.get("spec") or {}).get("tolerations"):
        return [{"op": "add", "path": "/spec/tolerations/-", "value": dict(toleration)}]
    return [{"op": "add", "path": "/spec/tolerations", "value": [dict(toleration)]}]
