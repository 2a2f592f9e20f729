"""PodDisruptionBudgets: the status the disruption controller keeps, and the check an eviction makes against it.

Status (``budget_status``) as the real disruption controller computes it: ``expectedPods`` is the pods' controllers'
scale when ``maxUnavailable`` or a percentage ``minAvailable`` is used (a Deployment's replicas for its ReplicaSets'
pods, a bare ReplicaSet's replicas; the sandbox counts a pod without such a controller as 1), else the number of
matching pods; ``desiredHealthy`` follows from the budget (percentages rounded up); ``currentHealthy`` counts the
matching pods that are Ready, not being deleted and not recently evicted (``disruptedPods``, forgotten after 2
minutes or when the pod goes); ``disruptionsAllowed`` is the difference, never below 0.

The eviction check (``check_eviction``) copies ``pkg/registry/core/pod/storage/eviction.go``: terminal, Pending and
deleting pods ignore budgets; more than one matching budget is a 500; an unready pod passes under
``unhealthyPodEvictionPolicy: AlwaysAllow``, or under the default IfHealthyBudget while the budget is met; otherwise
a budget not yet observed, or with no disruption left, refuses with 429 and the real message; else one disruption is
used up and the pod recorded in ``disruptedPods``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from vk_sandbox.apiserver.controllers.matching import selector_matches
from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.store import Store, now_rfc3339

JSON = dict[str, Any]
PDB = "poddisruptionbudgets.policy"
DISRUPTED_TIMEOUT = 120.0  # the real controller's DeletionTimeout
MAX_DISRUPTED_PODS = 2000
EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def _meta(obj: Mapping[str, Any]) -> JSON:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def selects(pdb: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """policy/v1: an empty selector selects every pod of the namespace, a missing one none."""
    if _meta(pdb).get("namespace") != _meta(pod).get("namespace"):
        return False
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None:
        return False
    return selector_matches(selector, _meta(pod).get("labels") or {})


def _is_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _scaled(value: Any, total: int) -> int | None:
    """An IntOrString against ``total``: an int as is, "N%" rounded up; None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(int(value[:-1]) * total / 100)
    return None


def _stamp(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def budget_status(store: Store, pdb: JSON, now: float | None = None) -> JSON:
    """The status the disruption controller writes for ``pdb`` now."""
    now = time.time() if now is None else now
    namespace = _meta(pdb).get("namespace")
    spec = pdb.get("spec") or {}
    pods = [p for p in store.all_objects("pods") if _meta(p).get("namespace") == namespace and selects(pdb, p)]
    old = pdb.get("status") or {}
    by_name = {_meta(p).get("name"): p for p in pods}
    disrupted = {}
    for name, at in (old.get("disruptedPods") or {}).items():
        pod = by_name.get(name)
        stamp = _stamp(at)
        if pod is not None and not _meta(pod).get("deletionTimestamp") and stamp and now - stamp < DISRUPTED_TIMEOUT:
            disrupted[name] = at
    healthy = sum(
        1
        for p in pods
        if _is_ready(p) and not _meta(p).get("deletionTimestamp") and _meta(p).get("name") not in disrupted
    )
    max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_unavailable is not None or isinstance(min_available, str):
        expected = _controller_scale(store, pods)
        if max_unavailable is not None:
            desired = max(0, expected - (_scaled(max_unavailable, expected) or 0))
        else:
            desired = _scaled(min_available, expected) or 0
    elif isinstance(min_available, int):
        expected, desired = len(pods), min_available
    else:
        expected, desired = len(pods), 0
    allowed = healthy - desired if expected > 0 and healthy > desired else 0
    status: JSON = {
        "observedGeneration": _meta(pdb).get("generation", 1),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [_allowed_condition(old, allowed, _meta(pdb).get("generation", 1))],
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    return status


def _allowed_condition(old: Mapping[str, Any], allowed: int, generation: Any) -> JSON:
    status, reason = ("True", "SufficientPods") if allowed > 0 else ("False", "InsufficientPods")
    before = next((c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else now_rfc3339()
    return {
        "type": "DisruptionAllowed",
        "status": status,
        "reason": reason,
        "message": "",
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def _controller_scale(store: Store, pods: list[JSON]) -> int:
    """The sum of the scale of the pods' controllers, each counted once (Deployment over its ReplicaSets)."""
    seen: dict[str, int] = {}
    loose = 0
    for pod in pods:
        ref = next((r for r in _meta(pod).get("ownerReferences") or [] if r.get("controller")), None)
        rs = store.get("replicasets.apps", _meta(pod).get("namespace"), str(ref.get("name"))) if ref else None
        if ref is None or ref.get("kind") != "ReplicaSet" or rs is None or _meta(rs).get("uid") != ref.get("uid"):
            loose += 1
            continue
        owner = next((r for r in _meta(rs).get("ownerReferences") or [] if r.get("controller")), None)
        if owner is not None and owner.get("kind") == "Deployment":
            deploy = store.get("deployments.apps", _meta(rs).get("namespace"), str(owner.get("name")))
            if deploy is not None:
                seen[str(_meta(deploy).get("uid"))] = int((deploy.get("spec") or {}).get("replicas", 1) or 0)
                continue
        seen[str(_meta(rs).get("uid"))] = int((rs.get("spec") or {}).get("replicas", 1) or 0)
    return sum(seen.values()) + loose


def _too_many_requests(cause: str, retry_after: int = 0) -> ApiError:
    details: JSON = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return ApiError(429, "TooManyRequests", EVICTION_REFUSED, details=details)


def _refusal(pdb: JSON) -> str:
    name = _meta(pdb).get("name")
    status = pdb.get("status") or {}
    condition = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    current, desired = int(status.get("currentHealthy", 0)), int(status.get("desiredHealthy", 0))
    if current <= desired:
        return f"The disruption budget {name} needs {desired} healthy pods and has {current} currently"
    if condition and condition.get("status") == "False" and condition.get("message"):
        return (
            f"The disruption budget {name} does not allow evicting pods currently "
            f"({condition.get('reason')}): {condition['message']}"
        )
    return f"The disruption budget {name} does not allow evicting pods currently"


def check_eviction(store: Store, pod: JSON, *, dry_run: bool = False) -> None:
    """Raise the real refusal when a budget forbids evicting ``pod``; otherwise use one disruption up."""
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed", "Pending") or _meta(pod).get("deletionTimestamp"):
        return
    if not _meta(pod).get("labels"):
        return
    budgets = [b for b in store.all_objects(PDB) if selects(b, pod)]
    if not budgets:
        return
    if len(budgets) > 1:
        raise ApiError(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        )
    pdb = budgets[0]
    status = pdb.get("status") or {}
    if not _is_ready(pod):
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if policy == "AlwaysAllow":
            return
        if int(status.get("currentHealthy", 0)) >= int(status.get("desiredHealthy", 0)) > 0:
            return
    if int(status.get("observedGeneration", 0)) < int(_meta(pdb).get("generation", 1)):
        raise _too_many_requests(
            f"The disruption budget {_meta(pdb).get('name')} is still being processed by the server.", 10
        )
    allowed = int(status.get("disruptionsAllowed", 0))
    if allowed < 0:
        raise ApiError(
            403,
            "Forbidden",
            f'poddisruptionbudgets.policy "{_meta(pdb).get("name")}" is forbidden: pdb disruptions allowed is negative',
        )
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise ApiError(
            403,
            "Forbidden",
            f'poddisruptionbudgets.policy "{_meta(pdb).get("name")}" is forbidden: DisruptedPods map too big - too '
            "many evictions not confirmed by PDB controller",
        )
    if allowed == 0:
        raise _too_many_requests(_refusal(pdb))
    if dry_run:
        return
    pod_name = str(_meta(pod).get("name"))

    def use_one(b: JSON) -> JSON:
        st = b.setdefault("status", {})
        st["disruptionsAllowed"] = int(st.get("disruptionsAllowed", 0)) - 1
        if st["disruptionsAllowed"] == 0:
            st["conditions"] = [
                _allowed_condition(st, 0, _meta(b).get("generation", 1)) if c.get("type") == "DisruptionAllowed" else c
                for c in st.get("conditions") or []
            ]
        st.setdefault("disruptedPods", {})[pod_name] = now_rfc3339()
        return b

    store.mutate_now(PDB, _meta(pdb).get("namespace"), str(_meta(pdb).get("name")), use_one, subresource="status")
