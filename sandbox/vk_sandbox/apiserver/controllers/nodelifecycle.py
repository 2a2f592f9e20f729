"""Node lifecycle: a node whose kubelet stopped heartbeating gets its conditions set to Unknown.

A heartbeat is a renewal of the node's Lease in kube-node-lease (``spec.renewTime``) or a status write (the
Ready condition's ``lastHeartbeatTime``). When the newest one is older than ``node_lease_grace_seconds``, every
condition becomes Unknown with reason NodeStatusUnknown, message "Kubelet stopped posting node status." (as the
real controller; a node that never posted status gets NodeStatusNeverUpdated). The node recovers when its kubelet
writes status again. Unlike the real controller, the sandbox adds no NoExecute taints and evicts nothing.
"""

from __future__ import annotations

import asyncio
import time

from ..errors import ApiError
from ._common import JSON, Context, guarded, log, meta, now_rfc3339, parse_time

LEASE_NAMESPACE = "kube-node-lease"
NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


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


async def node_lifecycle(ctx: Context) -> None:
    """Check every node a few times per grace period (at least once a second for short test graces)."""
    period = max(0.1, min(5.0, ctx.node_lease_grace_seconds / 4))
    while True:
        guarded("node-lifecycle", "nodes", lambda: check_nodes(ctx))
        await asyncio.sleep(period)
