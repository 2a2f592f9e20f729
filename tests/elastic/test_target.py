"""The virtual node's toleration, and whether a pod's required placement allows the virtual node."""

from __future__ import annotations

from vk_provider.elastic.target import VirtualNode, tolerated, toleration_for

LABELS = {"type": "virtual-kubelet", "kubernetes.io/hostname": "vk", "size": "10"}
NODE = VirtualNode("vk", lambda: LABELS, toleration_for("virtual-kubelet.io/provider=alibabacloud:NoSchedule"))


def _pod(**spec: object) -> dict[str, object]:
    return {"metadata": {"name": "p"}, "spec": spec}


def test_toleration_of_the_taint_and_whether_a_pod_has_it() -> None:
    tol = toleration_for("virtual-kubelet.io/provider=alibabacloud:NoSchedule")
    assert tol == {
        "key": "virtual-kubelet.io/provider",
        "operator": "Equal",
        "value": "alibabacloud",
        "effect": "NoSchedule",
    }
    assert toleration_for("k:NoExecute") == {"key": "k", "operator": "Exists", "effect": "NoExecute"}
    assert toleration_for(None) is None
    assert tolerated(_pod(tolerations=[{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]), tol)
    assert tolerated(_pod(tolerations=[{"operator": "Exists"}]), tol)
    assert not tolerated(_pod(tolerations=[{"key": "virtual-kubelet.io/provider", "value": "x"}]), tol)


def test_node_selector_and_required_affinity() -> None:
    """nodeSelector pairs must match; one required term must match (Gt/Lt numeric, matchFields on the name)."""
    assert NODE.placement_refusal(_pod()) is None
    assert NODE.placement_refusal(_pod(nodeSelector={"type": "virtual-kubelet"})) is None
    assert NODE.placement_refusal(_pod(nodeSelector={"disk": "ssd"}))[0] == "node-selector"  # type: ignore[index]

    def affinity(*terms: dict[str, object]) -> dict[str, object]:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}

    excluded = affinity({"matchExpressions": [{"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]}]})
    assert NODE.placement_refusal(_pod(affinity=excluded))[0] == "node-affinity"  # type: ignore[index]
    either = affinity(
        {"matchExpressions": [{"key": "disk", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "size", "operator": "Gt", "values": ["5"]}]},
    )
    assert NODE.placement_refusal(_pod(affinity=either)) is None
    by_name = affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["other"]}]})
    assert NODE.placement_refusal(_pod(affinity=by_name)) is not None
