"""Unit tests of the sandbox scheduler's pure predicates (controllers/matching.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vk_sandbox.apiserver.controllers import matching as m


def node(
    name: str,
    labels: dict[str, str] | None = None,
    *,
    ready: str = "True",
    taints: list[dict[str, Any]] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c"}], **spec}}


def affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs} for exprs in terms]
            }
        }
    }


def test_node_selector_needs_every_label_equal() -> None:
    """nodeSelector matches only when every key is present with the same value."""
    labels = {"type": "virtual-kubelet", "zone": "a"}
    assert m.labels_match_selector(labels, {"type": "virtual-kubelet"})
    assert m.labels_match_selector(labels, None)
    assert not m.labels_match_selector(labels, {"type": "virtual-kubelet", "zone": "b"})
    assert not m.labels_match_selector(labels, {"missing": ""})


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
        ({"key": "zone", "operator": "In", "values": ["c"]}, False),
        ({"key": "absent", "operator": "In", "values": ["a"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
        ({"key": "absent", "operator": "NotIn", "values": ["a"]}, True),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "absent", "operator": "Exists"}, False),
        ({"key": "absent", "operator": "DoesNotExist"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, False),
        ({"key": "cpus", "operator": "Gt", "values": ["3"]}, True),
        ({"key": "cpus", "operator": "Gt", "values": ["4"]}, False),
        ({"key": "cpus", "operator": "Lt", "values": ["5"]}, True),
        ({"key": "cpus", "operator": "Lt", "values": ["4"]}, False),
        ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),  # label not an integer
        ({"key": "cpus", "operator": "Gt", "values": ["1", "2"]}, False),  # exactly one value required
        ({"key": "absent", "operator": "Lt", "values": ["9"]}, False),
        ({"key": "zone", "operator": "Bogus", "values": ["a"]}, False),
    ],
)
def test_requirement_operators(requirement: dict[str, Any], expected: bool) -> None:
    """Each node selector operator follows the real semantics (NotIn and DoesNotExist match absent labels)."""
    assert m.requirement_matches({"zone": "a", "cpus": "4"}, requirement) is expected


def test_affinity_terms_are_ored_and_expressions_anded() -> None:
    """Required node affinity: any term may match; within a term every expression must."""
    n = node("n1", {"zone": "a", "disk": "ssd"})
    both = [{"key": "zone", "operator": "In", "values": ["a"]}, {"key": "disk", "operator": "In", "values": ["hdd"]}]
    assert not m.required_affinity_matches(n, pod(affinity=affinity(both)))
    other = [{"key": "disk", "operator": "Exists"}]
    assert m.required_affinity_matches(n, pod(affinity=affinity(both, other)))
    assert m.required_affinity_matches(n, pod())


def test_empty_term_and_match_fields() -> None:
    """An empty term matches nothing; matchFields supports metadata.name."""
    n = node("n1")
    empty = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}
    assert not m.required_affinity_matches(n, pod(affinity=empty))
    by_name = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
            }
        }
    }
    assert m.required_affinity_matches(n, pod(affinity=by_name))
    assert not m.required_affinity_matches(node("n2"), pod(affinity=by_name))


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, True),
        ({"key": "k", "value": "v"}, True),  # empty operator is Equal, empty effect matches any
        ({"key": "k", "operator": "Equal", "value": "other"}, False),
        ({"key": "k", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # empty key with Exists tolerates everything
        ({"operator": "Exists", "effect": "NoExecute"}, False),  # ... but not another effect
        ({"key": "other", "operator": "Exists"}, False),
        ({"value": "v"}, False),  # empty key with Equal does not match a keyed taint
    ],
)
def test_toleration_matching(toleration: dict[str, Any], expected: bool) -> None:
    """Tolerations follow the real ToleratesTaint rules for effect, key and operator."""
    assert m.toleration_tolerates(toleration, {"key": "k", "value": "v", "effect": "NoSchedule"}) is expected


def test_prefer_no_schedule_never_blocks() -> None:
    """Only NoSchedule and NoExecute taints block scheduling; the first untolerated one is reported."""
    taints = [
        {"key": "soft", "effect": "PreferNoSchedule"},
        {"key": "a", "value": "1", "effect": "NoSchedule"},
        {"key": "b", "effect": "NoExecute"},
    ]
    assert m.first_untolerated_taint(taints, []) == taints[1]
    assert m.first_untolerated_taint(taints, [{"key": "a", "operator": "Exists"}]) == taints[2]
    assert m.first_untolerated_taint(taints, [{"operator": "Exists"}]) is None


def test_unfit_reasons_follow_the_real_filter_order() -> None:
    """Cordoned, tainted and mismatched nodes each give the real scheduler's wording; a node that is not Ready is
    refused through its taint only (as the real scheduler: the node lifecycle controller puts it there)."""
    p = pod(nodeSelector={"type": "virtual-kubelet"})
    assert m.unfit_reason(node("n", unschedulable=True), p) == "node(s) were unschedulable"
    not_ready = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]
    assert m.unfit_reason(node("n", ready="False", taints=not_ready), p) == "node(s) had untolerated taint(s)"
    assert m.unfit_reason(node("n", {"type": "virtual-kubelet"}, ready="False"), p) is None
    tainted = node("n", {"type": "virtual-kubelet"}, taints=[{"key": "vk", "value": "eci", "effect": "NoSchedule"}])
    assert m.unfit_reason(tainted, p) == "node(s) had untolerated taint(s)"
    assert m.unfit_reason(node("n"), p) == "node(s) didn't match Pod's node affinity/selector"
    tolerating = pod(nodeSelector={"type": "virtual-kubelet"}, tolerations=[{"key": "vk", "operator": "Exists"}])
    assert m.unfit_reason(tainted, tolerating) is None


def test_cordon_can_be_tolerated() -> None:
    """A pod tolerating node.kubernetes.io/unschedulable may land on a cordoned node, as in a real cluster."""
    p = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}])
    assert m.unfit_reason(node("n", unschedulable=True), p) is None
