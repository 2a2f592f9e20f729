"""The Deployment controller: one ReplicaSet per pod template, scaled by a simple rolling update.

The pod-template-hash is an FNV-32a hash of the template, encoded with the real controller's safe alphabet; the
new ReplicaSet is ``<deployment>-<hash>`` with that hash in its labels, selector and template. RollingUpdate
honours maxSurge and maxUnavailable (numbers or percentages, as the real controller rounds them); Recreate scales
the old ReplicaSets to zero first. Status carries the fields ``kubectl rollout status`` reads.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from typing import Any

from ..errors import ApiError
from ._common import (
    JSON,
    Context,
    Informer,
    KeyQueue,
    guarded,
    key_of,
    log,
    meta,
    now_rfc3339,
    owner_reference,
    run_supervised,
    set_condition,
)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def comparable_template(template: JSON) -> JSON:
    """A pod template as the controller compares it: nulls dropped (kubectl sends creationTimestamp: null), and
    without the pod-template-hash label (the real EqualIgnoreHash)."""
    out: JSON = _without_nulls(template)
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict) and HASH_LABEL in labels:
        out["metadata"]["labels"] = {k: v for k, v in labels.items() if k != HASH_LABEL}
    return out


def template_hash(template: JSON, collision_count: int = 0) -> str:
    """A short, stable name-safe hash of a pod template (FNV-32a, the real controller's alphabet)."""
    text = json.dumps(comparable_template(template), sort_keys=True, separators=(",", ":"))
    if collision_count:
        text += str(collision_count)
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def resolve_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    """maxSurge / maxUnavailable: an int, or "N%" of ``total`` rounded up (surge) or down (unavailable)."""
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        try:
            fraction = float(value[:-1]) * total / 100
        except ValueError:
            return 0
        return math.ceil(fraction) if round_up else math.floor(fraction)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _replicas(obj: JSON) -> int:
    return int((obj.get("spec") or {}).get("replicas", 0) or 0)


def _status_int(obj: JSON, field: str) -> int:
    return int((obj.get("status") or {}).get(field, 0) or 0)


def _revision(rs: JSON) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def rolling_targets(deployment: JSON, new: JSON, olds: list[JSON]) -> dict[str, int]:
    """Target spec.replicas per ReplicaSet name for one step of the rollout."""
    spec = deployment.get("spec") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    targets = {str(meta(rs).get("name")): _replicas(rs) for rs in [new, *olds]}
    new_name = str(meta(new).get("name"))
    active_olds = [rs for rs in olds if _replicas(rs) > 0]
    strategy = spec.get("strategy") or {}
    if not active_olds:
        targets[new_name] = desired
        return targets
    if strategy.get("type") == "Recreate":
        for rs in active_olds:
            targets[str(meta(rs).get("name"))] = 0
        if all(_status_int(rs, "replicas") == 0 for rs in olds):
            targets[new_name] = desired
        return targets
    rolling = strategy.get("rollingUpdate") or {}
    surge = resolve_int_or_percent(rolling.get("maxSurge"), desired, round_up=True)
    unavailable = resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    # Scale up the new ReplicaSet within the surge.
    total = sum(targets.values())
    if total < desired + surge and targets[new_name] < desired:
        targets[new_name] = min(desired, targets[new_name] + desired + surge - total)
    elif targets[new_name] > desired:
        targets[new_name] = desired
    # Scale down old ReplicaSets, keeping at least desired - maxUnavailable available.
    min_available = desired - unavailable
    new_unavailable = max(0, _replicas(new) - _status_int(new, "availableReplicas"))
    cleanup = max(0, sum(_replicas(rs) for rs in [new, *olds]) - min_available - new_unavailable)
    oldest_first = sorted(active_olds, key=lambda rs: (_revision(rs), str(meta(rs).get("creationTimestamp"))))
    for rs in oldest_first:  # unhealthy old pods can go at once
        name = str(meta(rs).get("name"))
        unhealthy = max(0, targets[name] - _status_int(rs, "availableReplicas"))
        cut = min(unhealthy, cleanup)
        targets[name] -= cut
        cleanup -= cut
    available = sum(_status_int(rs, "availableReplicas") for rs in [new, *olds])
    budget = max(0, available - min_available)
    for rs in oldest_first:
        name = str(meta(rs).get("name"))
        cut = min(targets[name], budget)
        targets[name] -= cut
        budget -= cut
    return targets


def deployment_status(deployment: JSON, new: JSON | None, rss: list[JSON], *, created: bool) -> JSON:
    spec = deployment.get("spec") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    old_status = deployment.get("status") or {}
    available = sum(_status_int(rs, "availableReplicas") for rs in rss)
    status: JSON = {
        "observedGeneration": meta(deployment).get("generation", 1),
        "replicas": sum(_status_int(rs, "replicas") for rs in rss),
        "updatedReplicas": _status_int(new, "replicas") if new is not None else 0,
        "readyReplicas": sum(_status_int(rs, "readyReplicas") for rs in rss),
        "availableReplicas": available,
    }
    unavailable = sum(_replicas(rs) for rs in rss) - available
    if unavailable > 0:
        status["unavailableReplicas"] = unavailable
    for field in ("readyReplicas", "availableReplicas", "updatedReplicas"):
        if not status[field]:
            del status[field]
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    conditions: list[JSON] = [dict(c) for c in old_status.get("conditions") or []]
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    max_unavailable = resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        max_unavailable = desired
    now = now_rfc3339()
    if available >= desired - max_unavailable:
        set_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            lastUpdateTime=now,
        )
    else:
        set_condition(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            lastUpdateTime=now,
        )
    if new is not None:
        rs_name = meta(new).get("name")
        complete = (
            status.get("updatedReplicas", 0) == desired
            and status["replicas"] == desired
            and status.get("availableReplicas", 0) == desired
        )
        if complete:
            reason, message = "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.'
        elif created:
            reason, message = "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
        else:
            reason, message = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
        set_condition(conditions, "Progressing", "True", reason, message, lastUpdateTime=now)
    # Available first, then Progressing, as kubectl describe shows them.
    conditions.sort(key=lambda c: {"Available": 0, "Progressing": 1}.get(str(c.get("type")), 2))
    status["conditions"] = conditions
    return status


def find_new(owned: list[JSON], template: JSON) -> JSON | None:
    """The ReplicaSet whose template equals the Deployment's, ignoring the hash label (oldest if several)."""
    wanted = comparable_template(template)
    same = [rs for rs in owned if comparable_template((rs.get("spec") or {}).get("template") or {}) == wanted]
    same.sort(key=lambda rs: str(meta(rs).get("creationTimestamp")))
    return same[0] if same else None


def new_replicaset(deployment: JSON, pod_hash: str, revision: int, replicas: int) -> JSON:
    spec = deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash}
    selector = copy.deepcopy(spec.get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: pod_hash}
    name = meta(deployment).get("name")
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": meta(deployment).get("namespace"),
            "labels": dict(tmeta["labels"]),
            "annotations": {
                REVISION: str(revision),
                "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1)),
            },
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": spec.get("minReadySeconds", 0),
            "selector": selector,
            "template": template,
        },
    }


async def deployment_controller(ctx: Context) -> None:
    """Reconcile every Deployment when it or one of its ReplicaSets changes."""
    queue: KeyQueue[tuple[str, str]] = KeyQueue()
    uid_to_key: dict[str, tuple[str, str]] = {}

    def on_deployment(etype: str, d: JSON) -> None:
        uid = str(meta(d).get("uid"))
        if etype == "DELETED":
            uid_to_key.pop(uid, None)
            return
        uid_to_key[uid] = key_of(d)
        queue.add(key_of(d))

    def on_replicaset(etype: str, rs: JSON) -> None:
        for ref in meta(rs).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Deployment":
                key = uid_to_key.get(str(ref.get("uid")))
                if key is not None:
                    queue.add(key)

    deployments = Informer(ctx.store, "deployments.apps", on_deployment)
    replicasets = Informer(ctx.store, "replicasets.apps", on_replicaset)

    def scale(rs: JSON, replicas: int, desired: int) -> JSON:
        def fn(o: JSON) -> JSON:
            o.setdefault("spec", {})["replicas"] = replicas
            o["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(desired)
            return o

        namespace, name = key_of(rs)
        return ctx.store.mutate_now("replicasets.apps", namespace, name, fn)

    def reconcile(key: tuple[str, str]) -> None:
        d = deployments.objects.get(key)
        if d is None or meta(d).get("deletionTimestamp"):
            return
        namespace, name = key
        spec = d.get("spec") or {}
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        owned = replicasets.owned(str(meta(d).get("uid")))
        pod_hash = template_hash(spec.get("template") or {}, int((d.get("status") or {}).get("collisionCount") or 0))
        new = find_new(owned, spec.get("template") or {})
        olds = [rs for rs in owned if rs is not new]
        created = False
        if spec.get("paused"):
            pass
        elif new is None:
            revision = max((_revision(rs) for rs in owned), default=0) + 1
            initial = desired if not any(_replicas(rs) > 0 for rs in olds) else 0
            try:
                new = ctx.store.create_now("replicasets.apps", new_replicaset(d, pod_hash, revision, initial))
                replicasets.apply("ADDED", new)
                created = True
            except ApiError as exc:
                log.info(
                    "deployment could not create its replicaset", deployment=f"{namespace}/{name}", error=exc.message
                )
                return
        if new is not None and not spec.get("paused"):
            newest = max((_revision(rs) for rs in olds), default=0)
            if _revision(new) <= newest:
                # An old template came back (rollout undo): its ReplicaSet becomes the newest revision again.
                new = bump_revision(new, newest + 1)
            annotate_revision(d, _revision(new))
            targets = rolling_targets(d, new, olds)
            for rs in [new, *olds]:
                target = targets[str(meta(rs).get("name"))]
                if target != _replicas(rs):
                    try:
                        replicasets.apply("MODIFIED", scale(rs, target, desired))
                    except ApiError as exc:
                        log.debug("replicaset not scaled", replicaset=meta(rs).get("name"), error=exc.message)
            clean_history(d, [rs for rs in olds if rs is not new])
        owned = replicasets.owned(str(meta(d).get("uid")))
        new = find_new(owned, spec.get("template") or {})
        status = deployment_status(d, new, owned, created=created)
        if _comparable(status) != _comparable(d.get("status") or {}):
            try:
                deployments.apply(
                    "MODIFIED",
                    ctx.store.mutate_now(
                        "deployments.apps", namespace, name, lambda o: {**o, "status": status}, subresource="status"
                    ),
                )
            except ApiError as exc:
                log.debug("deployment status not written", deployment=f"{namespace}/{name}", error=exc.message)

    def annotate_revision(d: JSON, revision: int) -> None:
        """The Deployment carries its current revision too (kubectl rollout history/undo rely on it)."""
        if (meta(d).get("annotations") or {}).get(REVISION) == str(revision):
            return

        def fn(o: JSON) -> JSON:
            o["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            return o

        namespace, name = key_of(d)
        try:
            deployments.apply("MODIFIED", ctx.store.mutate_now("deployments.apps", namespace, name, fn))
        except ApiError as exc:
            log.debug("deployment revision not annotated", deployment=name, error=exc.message)

    def bump_revision(rs: JSON, revision: int) -> JSON:
        def fn(o: JSON) -> JSON:
            o["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            return o

        namespace, name = key_of(rs)
        try:
            updated = ctx.store.mutate_now("replicasets.apps", namespace, name, fn)
        except ApiError as exc:
            log.debug("replicaset revision not bumped", replicaset=name, error=exc.message)
            return rs
        replicasets.apply("MODIFIED", updated)
        return updated

    def clean_history(d: JSON, olds: list[JSON]) -> None:
        limit = int((d.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
        idle = [rs for rs in olds if _replicas(rs) == 0 and _status_int(rs, "replicas") == 0]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            namespace, name = key_of(rs)
            try:
                ctx.store.delete_now("replicasets.apps", namespace, name, propagation_policy="Background")
            except ApiError:
                continue

    async def worker() -> None:
        await deployments.synced.wait()
        await replicasets.synced.wait()
        while True:
            for key in await queue.take():
                guarded("deployment", key, lambda: reconcile(key))  # noqa: B023 (called at once)
            await asyncio.sleep(0)

    await run_supervised("deployment-controller", deployments.run, replicasets.run, worker)


def _comparable(status: JSON) -> JSON:
    """Status without timestamps, so a pass that changes nothing writes nothing."""
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")}
        for c in status.get("conditions") or []
    ]
    return out
