"""The virtual node as elastic scheduling targets it: its name, labels and the toleration of its taint; and
whether a pod's required nodeSelector and node affinity let it run there.

The binding subresource does not check placement (the scheduler does), so the burst controller checks here
what the scheduler's NodeAffinity filter would: every ``nodeSelector`` pair, and one of the
``requiredDuringSchedulingIgnoredDuringExecution`` terms (``matchExpressions`` with In, NotIn, Exists,
DoesNotExist, Gt, Lt; ``matchFields`` on ``metadata.name``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vk_provider.provider import Pod


def toleration_for(taint: str | None) -> dict[str, str] | None:
    """The toleration of a ``key=value:Effect`` (or ``key:Effect``) taint; None for no taint."""
    if not taint:
        return None
    key_value, _, effect = taint.rpartition(":")
    key, eq, value = key_value.partition("=")
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def tolerated(pod: Pod, toleration: Mapping[str, str]) -> bool:
    """Whether one of the pod's tolerations already covers the taint ``toleration`` was made for."""
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("effect") and t.get("effect") != toleration["effect"]:
            continue
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") != toleration["key"]:
            continue
        if t.get("operator") == "Exists" or t.get("value", "") == toleration.get("value", ""):
            return True
    return False


@dataclass(frozen=True)
class VirtualNode:
    name: str
    labels: Callable[[], Mapping[str, str]]
    """The node's labels as registered (read when needed: they come from the settings)."""
    toleration: dict[str, str] | None

    @property
    def node_selector(self) -> dict[str, str]:
        """What the webhook adds to a serverless pod: this node, by its hostname label."""
        return {"kubernetes.io/hostname": self.name}

    def placement_refusal(self, pod: Pod) -> tuple[str, str] | None:
        """(reason, message) when the pod's required placement excludes this node; None when it may run here."""
        spec = pod.get("spec") or {}
        labels = self.labels()
        for key, value in (spec.get("nodeSelector") or {}).items():
            if labels.get(key) != value:
                return "node-selector", (
                    f"nodeSelector {key}={value} does not match the virtual node {self.name} "
                    f"({key}={labels.get(key, '<unset>')})"
                )
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        terms = required.get("nodeSelectorTerms") or []
        if terms and not any(self._term_matches(t, labels) for t in terms):
            return "node-affinity", f"the required node affinity excludes the virtual node {self.name}"
        return None

    def _term_matches(self, term: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            return False  # an empty term matches no node (the scheduler's rule)
        return all(_requirement(e, labels) for e in exprs) and all(
            _requirement(f, {"metadata.name": self.name}) for f in fields
        )


def _requirement(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = str(req.get("key")), req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False
