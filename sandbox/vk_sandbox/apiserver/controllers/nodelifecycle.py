"""Node lifecycle: a node whose kubelet stopped heartbeating gets its conditions set to Unknown; every node carries
the NoSchedule taints its conditions call for.

A heartbeat is a renewal of the node's Lease in kube-node-lease (``spec.renewTime``) or a status write (the
Ready condition's ``lastHeartbeatTime``). When the newest one is older than ``node_lease_grace_seconds``, every
condition becomes Unknown with reason NodeStatusUnknown, message "Kubelet stopped posting node status." (as the
real controller; a node that never posted status gets NodeStatusNeverUpdated). The node recovers when its kubelet
writes status again.

The tainting pass runs on every node event, as the real controller's: Ready False is
``node.kubernetes.io/not-ready:NoSchedule``, Ready Unknown ``unreachable``, MemoryPressure, DiskPressure,
PIDPressure or NetworkUnavailable True ``memory-pressure`` ... ``network-unavailable``, ``spec.unschedulable``
``unschedulable``; each added with ``timeAdded``, and taken off when the condition goes. A node without a Ready
condition gets none (so the not-ready taint a new node is created with goes too). Unlike the real controller the
sandbox adds no NoExecute taints and evicts nothing (the real one does neither either while every node of a zone is
down, which is the case of a one-node cluster).
"""

from __future__ import annotations

import asyncio
import time

from ..errors import ApiError
from ._common import JSON, Context, guarded, log, meta, now_rfc3339, parse_time, run_supervised, watch_forever

LEASE_NAMESPACE = "kube-node-lease"
NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
# (condition, status) -> the NoSchedule taint it calls for.
CONDITION_TAINTS = {
    ("Ready", "False"): "node.kubernetes.io/not-ready",
    ("Ready", "Unknown"): "node.kubernetes.io/unreachable",
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
_MANAGED = {*CONDITION_TAINTS.values(), UNSCHEDULABLE_TAINT}


def wanted_taint_keys(node: JSON) -> set[str]:
    """The keys of the NoSchedule taints the node's conditions and ``spec.unschedulable`` call for."""
    pairs = [
        (str(c.get("type")), str(c.get("status")))
        for c in (node.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    ]
    keys = {CONDITION_TAINTS[p] for p in pairs if p in CONDITION_TAINTS}
    if (node.get("spec") or {}).get("unschedulable"):
        keys.add(UNSCHEDULABLE_TAINT)
    return keys


def _managed(taint: JSON) -> bool:
    return taint.get("effect") == "NoSchedule" and taint.get("key") in _MANAGED


def _taint_keys(node: JSON) -> set[str]:
    return {
        str(t.get("key")) for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict) and _managed(t)
    }


def retaint(node: JSON) -> JSON | None:
    """``node`` with its managed NoSchedule taints matching its conditions, or None when they already do."""
    have, wanted = _taint_keys(node), wanted_taint_keys(node)
    if have == wanted:
        return None
    spec = node.setdefault("spec", {})
    taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
    now = now_rfc3339()
    kept = [t for t in taints if not _managed(t) or t.get("key") in wanted]
    kept += [{"key": k, "effect": "NoSchedule", "timeAdded": now} for k in sorted(wanted - have)]
    if kept:
        spec["taints"] = kept
    else:
        spec.pop("taints", None)
    return node


def last_heartbeat(node: JSON, lease: JSON | None) -> float:
    """Seconds since the epoch of the newest sign of life: lease renewal, status heartbeat or creation."""
    stamps = [parse_time(meta(node).get("creationTimestamp"))]
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            stamps.append(parse_time(cond.get("lastHeartbeatTime")))
    if lease is not None:
        stamps.append(parse_time((lease.get("spec") or {}).get("renewTime")))
    return max((s for s in stamps if s is not None), default=0.0)


def mark_unknown(node: JSON) -> JSON | None:
    """Set every condition to Unknown (adding the standard ones a kubelet never posted); None if already so."""
    status = node.setdefault("status", {})
    conditions: list[JSON] = list(status.get("conditions") or [])
    never = not conditions
    reason = "NodeStatusNeverUpdated" if never else "NodeStatusUnknown"
    message = "Kubelet never posted node status." if never else "Kubelet stopped posting node status."
    now = now_rfc3339()
    changed = False
    seen = set()
    for i, cond in enumerate(conditions):
        seen.add(cond.get("type"))
        if cond.get("status") == "Unknown":
            continue
        conditions[i] = {**cond, "status": "Unknown", "reason": reason, "message": message, "lastTransitionTime": now}
        changed = True
    for ctype in NODE_CONDITIONS:
        if ctype not in seen:
            conditions.append(
                {
                    "type": ctype,
                    "status": "Unknown",
                    "reason": reason,
                    "message": message,
                    # As the real controller: a condition the kubelet never posted "heartbeat" at creation.
                    "lastHeartbeatTime": meta(node).get("creationTimestamp"),
                    "lastTransitionTime": now,
                }
            )
            changed = True
    if not changed:
        return None
    status["conditions"] = conditions
    return node


def _ready_is_unknown(node: JSON) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "Unknown")
    return False


def check_nodes(ctx: Context, now: float | None = None) -> list[str]:
    """One pass: mark overdue nodes Unknown; returns the names marked."""
    now = time.time() if now is None else now
    marked = []
    for node in ctx.store.all_objects("nodes"):
        name = str(meta(node).get("name"))
        if _ready_is_unknown(node) and (node.get("status") or {}).get("conditions"):
            continue
        lease = ctx.store.get("leases.coordination.k8s.io", LEASE_NAMESPACE, name)
        if now - last_heartbeat(node, lease) <= ctx.node_lease_grace_seconds:
            continue
        try:
            ctx.store.mutate_now("nodes", None, name, mark_unknown, subresource="status")
        except ApiError as exc:
            log.debug("node lifecycle write skipped", node=name, error=exc.message)
            continue
        log.info("node stopped heartbeating", node=name, grace_seconds=ctx.node_lease_grace_seconds)
        marked.append(name)
    return marked


def _taint(ctx: Context, etype: str, node: JSON) -> None:
    if etype == "DELETED" or _taint_keys(node) == wanted_taint_keys(node):
        return
    name = str(meta(node).get("name"))
    try:
        ctx.store.mutate_now("nodes", None, name, retaint)
    except ApiError as exc:
        log.debug("node taint write skipped", node=name, error=exc.message)


async def node_lifecycle(ctx: Context) -> None:
    """Taint nodes as their conditions change; check every node for heartbeats a few times per grace period (at
    least once a second for short test graces)."""
    period = max(0.1, min(5.0, ctx.node_lease_grace_seconds / 4))

    async def heartbeats() -> None:
        while True:
            guarded("node-lifecycle", "nodes", lambda: check_nodes(ctx))
            await asyncio.sleep(period)

    def on_node(etype: str, node: JSON) -> None:
        guarded("node-taints", meta(node).get("name"), lambda: _taint(ctx, etype, node))

    def taints() -> object:
        return watch_forever(ctx.store, "nodes", on_node)

    await run_supervised("node-lifecycle", heartbeats, taints)
