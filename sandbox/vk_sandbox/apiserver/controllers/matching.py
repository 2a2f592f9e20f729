"""Pure predicates of the sandbox scheduler: does this node fit this pod, and if not, why.

The reasons and the final message copy the wording of the real kube-scheduler, because users (and tests
written against real clusters) grep for it: "0/3 nodes are available: 1 node(s) had untolerated taint(s),
2 node(s) didn't match Pod's node affinity/selector." A node that is not Ready is refused only through the taint the
node lifecycle controller gives it (``node.kubernetes.io/not-ready`` or ``unreachable``), as the real scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

JSON = dict[str, Any]

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
# The real node lifecycle controller taints nodes that are not Ready; the scheduler then reports those
# taints. The sandbox does not write the taints, but reports a not-Ready node the same way.
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
_SCHEDULING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def labels_match_selector(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    """A pod's ``nodeSelector``: every key present with an equal value."""
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions). An empty selector matches everything."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(requirement_matches(labels, r) for r in selector.get("matchExpressions") or [])


def requirement_matches(labels: Mapping[str, str], requirement: Mapping[str, Any]) -> bool:
    """One ``NodeSelectorRequirement`` against a label set (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""
    key = str(requirement.get("key", ""))
    operator = requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    present = key in labels
    value = labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        # Both sides must be integers and there must be exactly one value, as the real selector parses it.
        have = _int_or_none(value)
        want = _int_or_none(values[0]) if len(values) == 1 else None
        if have is None or want is None:
            return False
        return have > want if operator == "Gt" else have < want
    return False  # an unknown operator never matches


def _field_requirement_matches(node: JSON, requirement: Mapping[str, Any]) -> bool:
    # matchFields supports only metadata.name, with In/NotIn.
    if requirement.get("key") != "metadata.name":
        return False
    return requirement_matches({"metadata.name": node.get("metadata", {}).get("name", "")}, requirement)


def term_matches(node: JSON, term: Mapping[str, Any]) -> bool:
    """A ``NodeSelectorTerm``: its expressions and fields are ANDed; an empty term matches nothing."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node.get("metadata", {}).get("labels") or {}
    return all(requirement_matches(labels, r) for r in expressions) and all(
        _field_requirement_matches(node, r) for r in fields
    )


def required_affinity_matches(node: JSON, pod: JSON) -> bool:
    """``requiredDuringSchedulingIgnoredDuringExecution``: terms are ORed. No affinity matches every node."""
    required = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    return any(term_matches(node, t) for t in required.get("nodeSelectorTerms") or [])


def node_selector_and_affinity_match(node: JSON, pod: JSON) -> bool:
    """The NodeAffinity filter: ``nodeSelector`` and the required node affinity must both hold."""
    labels = node.get("metadata", {}).get("labels") or {}
    return labels_match_selector(labels, (pod.get("spec") or {}).get("nodeSelector")) and required_affinity_matches(
        node, pod
    )


def toleration_tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """The real ``ToleratesTaint``: effect (empty = any), key (empty with Exists = any), then operator."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key != (taint.get("key") or "") and (key or toleration.get("operator") != "Exists"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def first_untolerated_taint(taints: Iterable[Mapping[str, Any]], tolerations: list[JSON]) -> Mapping[str, Any] | None:
    """The first NoSchedule/NoExecute taint that no toleration covers (PreferNoSchedule never blocks)."""
    for taint in taints:
        if taint.get("effect") not in _SCHEDULING_EFFECTS:
            continue
        if not any(toleration_tolerates(t, taint) for t in tolerations):
            return taint
    return None


REASON_TAINT = "node(s) had untolerated taint(s)"


def unfit_reason(node: JSON, pod: JSON) -> str | None:
    """Why ``pod`` cannot go to ``node`` (the real filter order), or None when it fits.

    Order as the default scheduler profile: NodeUnschedulable, then TaintToleration, then NodeAffinity
    (nodeSelector and required affinity).
    """
    spec = pod.get("spec") or {}
    tolerations: list[JSON] = list(spec.get("tolerations") or [])
    if (node.get("spec") or {}).get("unschedulable"):
        cordon = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
        if not any(toleration_tolerates(t, cordon) for t in tolerations):
            return REASON_UNSCHEDULABLE
    if first_untolerated_taint((node.get("spec") or {}).get("taints") or [], tolerations) is not None:
        return REASON_TAINT
    if not node_selector_and_affinity_match(node, pod):
        return REASON_AFFINITY
    return None
