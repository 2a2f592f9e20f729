"""The scheduler's view of the cluster (nodes and the pods bound to them) and where a pod fits best.

``Cluster`` is kept up to date by the scheduler's watches and by its own binds. ``place`` runs the filters of the
default kube-scheduler profile, in its order, on every node (NodeUnschedulable, TaintToleration, NodeAffinity,
NodeResourcesFit, InterPodAffinity's required anti-affinity), then scores the nodes that pass: LeastAllocated over
cpu and memory (weight 1), preferred node affinity (weight 2, normalised to 0-100), PreferNoSchedule taints (weight
3, normalised); ties go to the node with fewer pods, then by name (the real scheduler picks one of the best at
random). A pod that fits nowhere gets the real FitError message, including the preemption part: the sandbox has no
priorities, so preemption never finds victims.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .capacity import CPU, MEMORY, PODS, Amounts, allocatable, insufficient, nonzero_requests, pod_requests
from .matching import selector_matches, term_matches, toleration_tolerates, unfit_reason

JSON = dict[str, Any]
Key = tuple[str, str]

REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
# Filters whose failure preemption cannot fix (UnschedulableAndUnresolvable in the real plugins).
_UNRESOLVABLE_PREFIXES = ("node(s) were unschedulable", "node(s) had untolerated taint", "node(s) didn't match Pod's")
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def _meta(obj: Mapping[str, Any]) -> JSON:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def _key(obj: Mapping[str, Any]) -> Key:
    m = _meta(obj)
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def _anti_affinity_terms(pod: Mapping[str, Any]) -> list[JSON]:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    anti = affinity.get("podAntiAffinity") or {}
    return list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _term_selects(term: Mapping[str, Any], owner: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Does ``owner``'s affinity term select pod ``other``? Namespaces default to the owner's own; an empty
    ``namespaceSelector`` means every namespace (a non-empty one is not evaluated by the sandbox)."""
    namespaces = set(term.get("namespaces") or [])
    other_ns = _meta(other).get("namespace")
    if term.get("namespaceSelector") == {}:
        pass
    elif namespaces:
        if other_ns not in namespaces:
            return False
    elif other_ns != _meta(owner).get("namespace"):
        return False
    selector = term.get("labelSelector")  # in an affinity term a missing selector matches nothing
    return selector is not None and selector_matches(selector, _meta(other).get("labels") or {})


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(_meta(obj).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass
class NodeInfo:
    node: JSON
    allocatable: Amounts | None  # None: the node reports no resources; the sandbox treats it as unlimited
    requested: Amounts = field(default_factory=dict)
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    pods: set[Key] = field(default_factory=set)
    # Cached from the node: True when no filter but resources and anti-affinity can reject a pod here.
    plain: bool = False
    soft_taints: bool = False

    def __post_init__(self) -> None:
        self.refresh(self.node)

    def refresh(self, node: JSON) -> None:
        self.node = node
        self.allocatable = allocatable(node)
        spec = node.get("spec") or {}
        taints = spec.get("taints") or []
        self.plain = not spec.get("unschedulable") and not any(
            t.get("effect") in ("NoSchedule", "NoExecute") for t in taints
        )
        self.soft_taints = any(t.get("effect") == "PreferNoSchedule" for t in taints)

    @property
    def name(self) -> str:
        return str(_meta(self.node).get("name") or "")

    @property
    def labels(self) -> Mapping[str, str]:
        return _meta(self.node).get("labels") or {}


@dataclass
class _Bound:
    node: str
    pod: JSON
    requests: Amounts
    nonzero: tuple[int, int]


class Cluster:
    """Nodes and the non-terminal pods bound to them, with the requests each node has promised."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.bound: dict[Key, _Bound] = {}
        # Bound pods with required anti-affinity terms (most pods have none; then the check is skipped).
        self._anti: set[Key] = set()

    # ---- keeping it current

    def set_node(self, node: JSON) -> None:
        name = str(_meta(node).get("name"))
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(node, allocatable(node))
            for key, b in self.bound.items():
                if b.node == name:
                    self._account(info, key, b, +1)
        else:
            info.refresh(node)

    def remove_node(self, name: str) -> None:
        self.nodes.pop(name, None)

    def set_pod(self, pod: JSON) -> bool:
        """Track a pod; True when a bound pod stopped counting (deleted from a node or finished)."""
        key = _key(pod)
        old = self.bound.get(key)
        if old is not None and _rv(pod) < _rv(old.pod):
            return False  # an event older than our own bind
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or is_terminal(pod):
            return self.remove_pod(key)
        if old is not None and old.node == node:
            old.pod = pod
            return False
        self.remove_pod(key)
        b = _Bound(str(node), pod, pod_requests(pod), nonzero_requests(pod))
        self.bound[key] = b
        if _anti_affinity_terms(pod):
            self._anti.add(key)
        info = self.nodes.get(b.node)
        if info is not None:
            self._account(info, key, b, +1)
        return False

    def remove_pod(self, key: Key) -> bool:
        b = self.bound.pop(key, None)
        if b is None:
            return False
        self._anti.discard(key)
        info = self.nodes.get(b.node)
        if info is not None:
            self._account(info, key, b, -1)
        return True

    @staticmethod
    def _account(info: NodeInfo, key: Key, b: _Bound, sign: int) -> None:
        for name, n in b.requests.items():
            info.requested[name] = info.requested.get(name, 0) + sign * n
        info.nonzero_cpu += sign * b.nonzero[0]
        info.nonzero_memory += sign * b.nonzero[1]
        if sign > 0:
            info.pods.add(key)
        else:
            info.pods.discard(key)

    # ---- placing a pod

    def _free(self, info: NodeInfo) -> tuple[int, Amounts]:
        alloc = info.allocatable or {}
        free_pods = alloc.get(PODS, 0) - len(info.pods)
        return free_pods, {k: v - info.requested.get(k, 0) for k, v in alloc.items()}

    def _anti_affinity(self, pod: JSON) -> tuple[list[tuple[str, set[str]]], list[tuple[str, str]]]:
        """(the pod's own terms as (topologyKey, taken values), existing pods' terms as (topologyKey, value))."""
        own: list[tuple[str, set[str]]] = []
        for term in _anti_affinity_terms(pod):
            topology = str(term.get("topologyKey") or "")
            taken = set()
            for b in self.bound.values():
                info = self.nodes.get(b.node)
                if info is None or topology not in info.labels:
                    continue
                if _term_selects(term, pod, b.pod):
                    taken.add(info.labels[topology])
            own.append((topology, taken))
        existing: list[tuple[str, str]] = []
        for b in (self.bound[k] for k in self._anti):
            for term in _anti_affinity_terms(b.pod):
                info = self.nodes.get(b.node)
                topology = str(term.get("topologyKey") or "")
                if info is None or topology not in info.labels:
                    continue
                if _term_selects(term, b.pod, pod):
                    existing.append((topology, info.labels[topology]))
        return own, existing

    def _unfit(
        self,
        info: NodeInfo,
        pod: JSON,
        request: Amounts,
        own: list[tuple[str, set[str]]],
        existing: list[tuple[str, str]],
        selective: bool,
    ) -> list[str]:
        if selective or not info.plain:
            reason = unfit_reason(info.node, pod)
            if reason is not None:
                return [reason]
        alloc = info.allocatable
        if alloc is not None and (
            alloc.get(PODS, 0) <= len(info.pods)
            or any(n > alloc.get(r, 0) - info.requested.get(r, 0) for r, n in request.items())
        ):
            free_pods, available = self._free(info)
            return insufficient(free_pods, request, available)
        labels = info.labels
        if any(labels.get(topology) == value for topology, value in existing):
            return [REASON_EXISTING_ANTI_AFFINITY]
        if any(topology in labels and labels[topology] in taken for topology, taken in own):
            return [REASON_ANTI_AFFINITY]
        return []

    def place(self, pod: JSON) -> tuple[str | None, str]:
        """The best node's name and "", or None and the real FitError message."""
        if not self.nodes:
            return None, "no nodes available to schedule pods"
        request = pod_requests(pod)
        own, existing = self._anti_affinity(pod) if self._needs_anti_affinity(pod) else ([], [])
        spec = pod.get("spec") or {}
        selective = bool(spec.get("nodeSelector") or ((spec.get("affinity") or {}).get("nodeAffinity")))
        fitting: list[NodeInfo] = []
        failures: dict[str, list[str]] = {}
        for info in self.nodes.values():
            reasons = self._unfit(info, pod, request, own, existing, selective)
            if reasons:
                failures[info.name] = reasons
            else:
                fitting.append(info)
        if not fitting:
            return None, fit_error(len(self.nodes), failures.values())
        return self._best(pod, fitting).name, ""

    def _needs_anti_affinity(self, pod: JSON) -> bool:
        return bool(self._anti) or bool(_anti_affinity_terms(pod))

    def _best(self, pod: JSON, fitting: list[NodeInfo]) -> NodeInfo:
        if len(fitting) == 1:
            return fitting[0]
        cpu, memory = nonzero_requests(pod)
        preferred = _preferred_terms(pod)
        tolerations = list((pod.get("spec") or {}).get("tolerations") or [])
        affinity: dict[str, int] = {}
        if preferred:
            affinity = {i.name: sum(w for w, term in preferred if term_matches(i.node, term)) for i in fitting}
        intolerable: dict[str, int] = {}
        if any(i.soft_taints for i in fitting):
            intolerable = {i.name: _intolerable_soft_taints(i.node, tolerations) for i in fitting}
        max_affinity = max(affinity.values(), default=0)
        max_taints = max(intolerable.values(), default=0)

        def score(info: NodeInfo) -> tuple[int, int, str]:
            total = _least_allocated(info, cpu, memory)
            if max_affinity:
                total += 2 * (affinity[info.name] * 100 // max_affinity)
            if max_taints:
                total -= 3 * (intolerable[info.name] * 100 // max_taints)
            return -total, len(info.pods), info.name

        return min(fitting, key=score)


def _least_allocated(info: NodeInfo, cpu: int, memory: int) -> int:
    alloc = info.allocatable
    if alloc is None:
        return 0
    scores = []
    for capacity, used in (
        (alloc.get(CPU, 0), info.nonzero_cpu + cpu),
        (alloc.get(MEMORY, 0), info.nonzero_memory + memory),
    ):
        scores.append(0 if capacity <= 0 or used > capacity else (capacity - used) * 100 // capacity)
    return sum(scores) // len(scores)


def _preferred_terms(pod: JSON) -> list[tuple[int, JSON]]:
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    out = []
    for item in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        weight = item.get("weight")
        if isinstance(weight, int) and weight > 0 and isinstance(item.get("preference"), dict):
            out.append((weight, item["preference"]))
    return out


def _intolerable_soft_taints(node: JSON, tolerations: list[JSON]) -> int:
    soft = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "PreferNoSchedule"]
    usable = [t for t in tolerations if not t.get("effect") or t.get("effect") == "PreferNoSchedule"]
    return sum(1 for taint in soft if not any(toleration_tolerates(t, taint) for t in usable))


def fit_error(total_nodes: int, per_node: Iterable[list[str]]) -> str:
    """The real FitError text (v1.36): "0/N nodes are available: <counts>. no new claims to deallocate, preemption:
    0/N nodes are available: <counts>." (the second part is the PostFilter plugins': DynamicResources', then
    DefaultPreemption's).

    Each part counts nodes per reason, sorted as strings; a node that failed only filters preemption cannot fix
    counts as "Preemption is not helpful for scheduling", any other as "No preemption victims found".
    """
    reasons: Counter[str] = Counter()
    preemption: Counter[str] = Counter()
    for node_reasons in per_node:
        reasons.update(node_reasons)
        unresolvable = all(r.startswith(_UNRESOLVABLE_PREFIXES) for r in node_reasons)
        preemption[NOT_HELPFUL if unresolvable else NO_VICTIMS] += 1
    head = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
    tail = ", ".join(sorted(f"{n} {r}" for r, n in preemption.items()))
    return (
        f"0/{total_nodes} nodes are available: {head}. no new claims to deallocate, "
        f"preemption: 0/{total_nodes} nodes are available: {tail}."
    )
