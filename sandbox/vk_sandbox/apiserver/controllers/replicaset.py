"""The ReplicaSet controller: keep ``spec.replicas`` active pods, report them in status.

Pods are created from the template with ``generateName: <rs>-`` and a controller owner reference, and found
again by that reference. As the real controller, a ReplicaSet adopts active pods without a controller that match
its (non-empty) selector, and releases owned pods whose labels stopped matching. Extra pods are deleted in the
real controller's order (``deletion_less``, the ``ActivePodsWithRanks`` ranking with pod deletion cost and
logarithmic scale-down, the defaults since 1.22): unassigned before assigned; Pending before Unknown before
Running; not ready before ready; lower ``controller.kubernetes.io/pod-deletion-cost`` first; more pods of the same
owner on the pod's node ("doubled up") first; ready for less time first (compared as powers of two of the time
since, ties by UID); more container restarts first; newer first (also in powers of two, ties by UID).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import math
import time
from collections import Counter
from typing import Any

from ..errors import ApiError
from ._common import (
    JSON,
    Context,
    Informer,
    KeyQueue,
    controller_uid,
    create_pods,
    get_condition,
    guarded,
    key_of,
    log,
    meta,
    owner_reference,
    parse_time,
    pod_is_active,
    pod_is_ready,
    pod_phase,
    run_supervised,
)
from .matching import selector_matches

# Pods created or deleted per ReplicaSet per pass (the real controller's slow-start burst is similar).
BURST = 100
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def pod_from_template(owner: JSON, template: JSON, *, extra_labels: dict[str, str] | None = None) -> JSON:
    """A new pod for ``owner`` from its pod template (generateName, labels, annotations, owner reference)."""
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update(extra_labels or {})
    metadata: JSON = {
        "generateName": f"{meta(owner).get('name')}-",
        "namespace": meta(owner).get("namespace"),
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": copy.deepcopy(template.get("spec") or {})}


def _adopts(rs: JSON, labels: dict[str, str]) -> bool:
    """Would this ReplicaSet adopt a pod with these labels? Never with an empty selector, never while deleting."""
    selector = (rs.get("spec") or {}).get("selector") or {}
    if not (selector.get("matchLabels") or selector.get("matchExpressions")) or meta(rs).get("deletionTimestamp"):
        return False
    return selector_matches(selector, labels)


def deletion_cost(pod: JSON) -> int:
    """The pod-deletion-cost annotation as an int32; 0 when absent or not a valid int32."""
    text = (meta(pod).get("annotations") or {}).get(DELETION_COST)
    try:
        value = int(str(text).strip()) if text is not None else 0
    except ValueError:
        return 0
    return value if -(2**31) <= value < 2**31 else 0


def _ready_since(pod: JSON) -> float | None:
    cond = get_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def _log_rank(stamp: float, now: float) -> int:
    """floor(log2(nanoseconds since ``stamp``)), -1 for no time passed (the real logarithmicRankDiff)."""
    d = (now - stamp) * 1e9
    return int(math.log2(d)) if d > 0 else -1


def _max_restarts(pod: JSON) -> int:
    return max(
        (int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or []), default=0
    )


def deletion_less(a: JSON, b: JSON, rank: dict[str, int], now: float) -> bool:
    """True when ``a`` should be deleted before ``b``; ``rank`` counts the owner's active pods per node."""
    node_a, node_b = (a.get("spec") or {}).get("nodeName") or "", (b.get("spec") or {}).get("nodeName") or ""
    if node_a != node_b and (not node_a or not node_b):
        return not node_a
    phase_a, phase_b = _PHASE_RANK.get(pod_phase(a), 0), _PHASE_RANK.get(pod_phase(b), 0)
    if phase_a != phase_b:
        return phase_a < phase_b
    ready_a, ready_b = pod_is_ready(a), pod_is_ready(b)
    if ready_a != ready_b:
        return not ready_a
    cost_a, cost_b = deletion_cost(a), deletion_cost(b)
    if cost_a != cost_b:
        return cost_a < cost_b
    if rank.get(node_a, 0) != rank.get(node_b, 0):
        return rank.get(node_a, 0) > rank.get(node_b, 0)
    uid_a, uid_b = str(meta(a).get("uid") or ""), str(meta(b).get("uid") or "")
    if ready_a and ready_b:
        since_a, since_b = _ready_since(a), _ready_since(b)
        if since_a != since_b:
            if since_a is None or since_b is None:
                return since_a is None
            diff = _log_rank(since_a, now) - _log_rank(since_b, now)
            return uid_a < uid_b if diff == 0 else diff < 0
    restarts_a, restarts_b = _max_restarts(a), _max_restarts(b)
    if restarts_a != restarts_b:
        return restarts_a > restarts_b
    created_a, created_b = parse_time(meta(a).get("creationTimestamp")), parse_time(meta(b).get("creationTimestamp"))
    if created_a != created_b:
        if created_a is None or created_b is None:
            return created_a is None
        diff = _log_rank(created_a, now) - _log_rank(created_b, now)
        return uid_a < uid_b if diff == 0 else diff < 0
    return False


def pods_to_delete(active: list[JSON], related: list[JSON], count: int, now: float | None = None) -> list[JSON]:
    """The ``count`` pods of ``active`` to delete first; ``related`` (all active pods of the same owner, e.g. every
    ReplicaSet of a Deployment) decides which are doubled up on a node."""
    now = time.time() if now is None else now
    rank = Counter(str((p.get("spec") or {}).get("nodeName") or "") for p in related if pod_is_active(p))

    def compare(a: JSON, b: JSON) -> int:
        if deletion_less(a, b, rank, now):
            return -1
        return 1 if deletion_less(b, a, rank, now) else 0

    return sorted(active, key=functools.cmp_to_key(compare))[:count]


def replicaset_status(rs: JSON, pods: list[JSON]) -> JSON:
    active = [p for p in pods if pod_is_active(p)]
    selector = (rs.get("spec") or {}).get("selector")
    ready = sum(1 for p in active if pod_is_ready(p))
    status: JSON = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(1 for p in active if selector_matches(selector, meta(p).get("labels") or {})),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": meta(rs).get("generation", 1),
    }
    conditions = [c for c in ((rs.get("status") or {}).get("conditions") or []) if c.get("type") != "ReplicaFailure"]
    if conditions:
        status["conditions"] = conditions
    return status


async def replicaset_controller(ctx: Context) -> None:
    """Reconcile every ReplicaSet when it or one of its pods changes."""
    queue: KeyQueue[tuple[str, str]] = KeyQueue()
    uid_to_key: dict[str, tuple[str, str]] = {}

    def on_rs(etype: str, rs: JSON) -> None:
        uid = str(meta(rs).get("uid"))
        if etype == "DELETED":
            uid_to_key.pop(uid, None)
            return
        uid_to_key[uid] = key_of(rs)
        queue.add(key_of(rs))

    orphans: set[tuple[str, str]] = set()

    def on_pod(etype: str, pod: JSON) -> None:
        pod_key = key_of(pod)
        if etype != "DELETED" and controller_uid(pod) is None and pod_is_active(pod):
            orphans.add(pod_key)
            # A ReplicaSet whose selector matches may adopt it.
            labels = meta(pod).get("labels") or {}
            for rs_key, rs in replicasets.objects.items():
                if rs_key[0] == pod_key[0] and _adopts(rs, labels):
                    queue.add(rs_key)
            return
        orphans.discard(pod_key)
        for ref in meta(pod).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "ReplicaSet":
                key = uid_to_key.get(str(ref.get("uid")))
                if key is not None:
                    queue.add(key)

    replicasets = Informer(ctx.store, "replicasets.apps", on_rs)
    pods = Informer(ctx.store, "pods", on_pod)

    def reconcile(key: tuple[str, str]) -> tuple[bool, list[JSON]]:
        """One pass: (more work remains (burst limit reached), the new pods to create through admission)."""
        rs = replicasets.objects.get(key)
        if rs is None or meta(rs).get("deletionTimestamp"):
            return False, []
        namespace, name = key
        uid = str(meta(rs).get("uid"))
        spec = rs.get("spec") or {}
        selector = spec.get("selector")
        # As the real controller: release owned pods whose labels no longer match, adopt matching orphans.
        for pod in pods.owned(uid):
            if not selector_matches(selector, meta(pod).get("labels") or {}):
                set_controller(pod, rs, adopt=False)
        for pod_key in sorted(k for k in orphans if k[0] == namespace):
            orphan = pods.objects.get(pod_key)
            if orphan is not None and controller_uid(orphan) is None and _adopts(rs, meta(orphan).get("labels") or {}):
                set_controller(orphan, rs, adopt=True)
        owned = pods.owned(uid)
        active = [p for p in owned if pod_is_active(p)]
        want = int(spec.get("replicas", 1) or 0)
        more = False
        new: list[JSON] = []
        diff = want - len(active)
        if diff > 0:
            template = spec.get("template") or {}
            new = [pod_from_template(rs, template) for _ in range(min(diff, BURST))]
            more = diff > BURST
        elif diff < 0:
            victims = pods_to_delete(active, related_pods(rs), min(-diff, BURST))
            for pod in victims:
                pns, pname = key_of(pod)
                try:
                    gone = ctx.store.delete_now("pods", pns, pname, uid_precondition=meta(pod).get("uid"))
                except ApiError as exc:
                    log.debug("replicaset could not delete a pod", pod=f"{pns}/{pname}", error=exc.message)
                    continue
                if gone is not None:
                    removed = ctx.store.get("pods", pns, pname) is None
                    pods.apply("DELETED" if removed else "MODIFIED", gone)
            more = -diff > BURST
        status = replicaset_status(rs, pods.owned(uid))
        if status != (rs.get("status") or {}):
            try:
                replicasets.apply(
                    "MODIFIED",
                    ctx.store.mutate_now(
                        "replicasets.apps", namespace, name, lambda o: {**o, "status": status}, subresource="status"
                    ),
                )
            except ApiError as exc:
                log.debug("replicaset status not written", replicaset=f"{namespace}/{name}", error=exc.message)
        return more, new

    def related_pods(rs: JSON) -> list[JSON]:
        """The pods of every ReplicaSet with the same controlling owner (a Deployment's), or of this one."""
        owner = controller_uid(rs)
        if owner is None:
            return pods.owned(str(meta(rs).get("uid")))
        namespace = meta(rs).get("namespace")
        return [
            p
            for other in replicasets.objects.values()
            if meta(other).get("namespace") == namespace and controller_uid(other) == owner
            for p in pods.owned(str(meta(other).get("uid")))
        ]

    def set_controller(pod: JSON, rs: JSON, *, adopt: bool) -> None:
        pns, pname = key_of(pod)
        rs_uid = meta(rs).get("uid")

        def fn(p: JSON) -> JSON | None:
            refs = [r for r in p["metadata"].get("ownerReferences") or [] if r.get("uid") != rs_uid]
            if adopt:
                if any(r.get("controller") for r in refs):
                    return None  # somebody else adopted it meanwhile
                refs.append(owner_reference(rs))
            if refs:
                p["metadata"]["ownerReferences"] = refs
            else:
                p["metadata"].pop("ownerReferences", None)
            return p

        try:
            pods.apply("MODIFIED", ctx.store.mutate_now("pods", pns, pname, fn))
        except ApiError as exc:
            log.debug("pod not adopted/released", pod=f"{pns}/{pname}", error=exc.message)
            return
        if adopt:
            orphans.discard((pns, pname))

    async def worker() -> None:
        await replicasets.synced.wait()
        await pods.synced.wait()
        while True:
            for key in await queue.take():
                more, new = guarded("replicaset", key, lambda: reconcile(key)) or (False, [])  # noqa: B023
                if new:  # then a pass for the status that counts them
                    more = await create_pods(ctx, pods, new, "replicaset", "/".join(key)) > 0 or more
                if more:
                    queue.add(key)
            await asyncio.sleep(0)

    def informers() -> list[Any]:
        return [replicasets.run, pods.run]

    await run_supervised("replicaset-controller", *informers(), worker)
