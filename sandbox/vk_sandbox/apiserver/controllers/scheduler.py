"""The sandbox scheduler: binds pending pods to fitting nodes, or explains why none fits.

It handles pods with ``schedulerName: default-scheduler``, no ``nodeName`` and no ``deletionTimestamp``; where a pod
fits and which node is best is ``placement.Cluster``'s call. A bind is the binding subresource's write
(``spec.nodeName``) followed by ``PodScheduled=True`` in status; a pod that fits nowhere gets ``PodScheduled=False``
reason ``Unschedulable`` with the real scheduler's message and a ``FailedScheduling`` event (again whenever the
message changes). It is tried again when something that can make it fit changes: a node appears or changes in a way
that matters for scheduling, a bound pod is deleted or finishes, or the pod's own scheduling constraints change.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..errors import ApiError, conflict
from ._common import (
    JSON,
    Context,
    KeyQueue,
    get_condition,
    guarded,
    key_of,
    log,
    meta,
    record_event,
    run_supervised,
    set_condition,
    watch_forever,
)
from .placement import Cluster

SCHEDULER_NAME = "default-scheduler"
# Pods bound per wake-up (about a millisecond each) before yielding, so HTTP clients stay responsive in a burst.
SCHEDULE_BATCH = 50


def needs_scheduling(pod: JSON) -> bool:
    """Pending, unbound, ours and not being deleted."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and not meta(pod).get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def _node_fingerprint(node: JSON) -> str:
    """Only what scheduling looks at, so heartbeats (lastHeartbeatTime) do not requeue every pending pod."""
    ready = next(
        (c.get("status") for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    spec = node.get("spec") or {}
    allocatable = (node.get("status") or {}).get("allocatable") or (node.get("status") or {}).get("capacity")
    return json.dumps(
        [meta(node).get("labels"), spec.get("taints"), spec.get("unschedulable"), ready, allocatable],
        sort_keys=True,
        default=str,
    )


def _pod_fingerprint(pod: JSON) -> str:
    """What decides where a pod may go (tolerations may be added to a pending pod, for instance)."""
    spec = pod.get("spec") or {}
    return json.dumps(
        [spec.get("nodeSelector"), spec.get("affinity"), spec.get("tolerations")], sort_keys=True, default=str
    )


def bind_pod(ctx: Context, namespace: str, name: str, node_name: str) -> JSON:
    """The binding subresource's effect: set spec.nodeName (409 if bound or deleting), then PodScheduled=True."""

    def set_node(pod: JSON) -> JSON:
        if (pod.get("spec") or {}).get("nodeName") or meta(pod).get("deletionTimestamp"):
            raise conflict("pods", "", name, "pod is already assigned to a node or is being deleted")
        pod.setdefault("spec", {})["nodeName"] = node_name
        return pod

    ctx.store.mutate_now("pods", namespace, name, set_node, subresource="binding")

    def scheduled(pod: JSON) -> JSON | None:
        status = pod.setdefault("status", {})
        conditions = status.setdefault("conditions", [])
        for cond in conditions:
            if cond.get("type") == "PodScheduled":
                cond.pop("observedGeneration", None)  # the binding's condition has none (an Unschedulable one has)
        if not set_condition(conditions, "PodScheduled", "True", "", "", lastProbeTime=None):
            return None
        return pod

    return ctx.store.mutate_now("pods", namespace, name, scheduled, subresource="status")


def mark_unschedulable(ctx: Context, pod: JSON, message: str) -> bool:
    """PodScheduled=False reason Unschedulable; True when the condition changed (then an event is due)."""
    namespace, name = key_of(pod)

    def unschedulable(p: JSON) -> JSON | None:
        if not needs_scheduling(p):
            return None
        conditions = p.setdefault("status", {}).setdefault("conditions", [])
        # As the v1.36 scheduler (PodObservedGenerationTracking): the generation of the spec it judged.
        generation = {"observedGeneration": meta(p)["generation"]} if meta(p).get("generation") else {}
        if not set_condition(
            conditions, "PodScheduled", "False", "Unschedulable", message, lastProbeTime=None, **generation
        ):
            return None
        return p

    before = get_condition(pod, "PodScheduled")
    after = get_condition(
        ctx.store.mutate_now("pods", namespace, name, unschedulable, subresource="status"), "PodScheduled"
    )
    return before != after


async def scheduler(ctx: Context) -> None:
    """Bind pending pods as they appear; retry unschedulable ones when something that can make them fit changes."""
    queue: KeyQueue[tuple[str, str]] = KeyQueue()
    cluster = Cluster()
    # Pods that fit nowhere, with the scheduling-relevant part of their spec when they were tried; in the order they
    # first failed, which is the order they are retried in (the longest waiting first, as the real queue's FIFO).
    unschedulable: dict[tuple[str, str], str] = {}
    fingerprints: dict[str, str] = {}

    def retry_unschedulable() -> None:
        queue.add_all(list(unschedulable))

    def on_pod(etype: str, pod: JSON) -> None:
        key = key_of(pod)
        freed = cluster.remove_pod(key) if etype == "DELETED" else cluster.set_pod(pod)
        if freed:
            retry_unschedulable()
        if etype == "DELETED" or not needs_scheduling(pod):
            unschedulable.pop(key, None)
            return
        if unschedulable.get(key) == _pod_fingerprint(pod):
            return  # e.g. our own status write: it waits for a change elsewhere or in its spec
        queue.add(key)

    def on_node(etype: str, node: JSON) -> None:
        name = str(meta(node).get("name"))
        if etype == "DELETED":
            fingerprints.pop(name, None)
            cluster.remove_node(name)
            return
        cluster.set_node(node)
        fp = _node_fingerprint(node)
        if fingerprints.get(name) == fp:
            return
        fingerprints[name] = fp
        retry_unschedulable()

    async def worker() -> None:
        while True:
            batch = await queue.take(SCHEDULE_BATCH)
            for namespace, name in batch:
                pod = ctx.store.get("pods", namespace, name)
                if pod is None or not needs_scheduling(pod):
                    unschedulable.pop((namespace, name), None)
                    continue
                guarded("scheduler", (namespace, name), lambda: schedule_one(pod))  # noqa: B023
            await asyncio.sleep(0)

    def schedule_one(pod: JSON) -> None:
        namespace, name = key_of(pod)
        node_name, message = cluster.place(pod)
        try:
            if node_name is None:
                unschedulable[(namespace, name)] = _pod_fingerprint(pod)
                if mark_unschedulable(ctx, pod, message):
                    record_event(
                        ctx.store,
                        pod,
                        reason="FailedScheduling",
                        message=message,
                        component=SCHEDULER_NAME,
                        type_="Warning",
                    )
                return
            bound = bind_pod(ctx, namespace, name, node_name)
            unschedulable.pop((namespace, name), None)
            cluster.set_pod(bound)  # assumed at once, as the real scheduler's cache does
            record_event(
                ctx.store,
                bound,
                reason="Scheduled",
                message=f"Successfully assigned {namespace}/{name} to {node_name}",
                component=SCHEDULER_NAME,
            )
        except ApiError as exc:
            log.debug("scheduling skipped", pod=f"{namespace}/{name}", error=exc.message)

    def pods() -> Any:
        return watch_forever(ctx.store, "pods", on_pod)

    def node_watch() -> Any:
        return watch_forever(ctx.store, "nodes", on_node)

    await run_supervised("scheduler", pods, node_watch, worker)
