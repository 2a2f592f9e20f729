"""The Job controller: run pods until ``completions`` succeed or more than ``backoffLimit`` fail.

At most ``parallelism`` pods run at once (never more than the completions still needed). Pods get the real
Job labels (``batch.kubernetes.io/controller-uid``, ``batch.kubernetes.io/job-name`` and the legacy
``controller-uid``/``job-name``). When the Job finishes, its remaining active pods are deleted and the condition
Complete (reason CompletionsReached) or Failed (reason BackoffLimitExceeded) is set with completionTime, as
``kubectl wait --for=condition=complete`` expects. Indexed completion mode is not supported (treated as NonIndexed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..defaults import job_labels
from ..errors import ApiError
from ._common import (
    JSON,
    Context,
    Informer,
    KeyQueue,
    create_pods,
    get_condition,
    guarded,
    key_of,
    log,
    meta,
    now_rfc3339,
    pod_is_active,
    pod_is_ready,
    pod_phase,
    run_supervised,
    set_condition,
)
from .replicaset import BURST, pod_from_template


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def job_finished(job: JSON) -> bool:
    return any((get_condition(job, t) or {}).get("status") == "True" for t in ("Complete", "Failed"))


def plan_job(job: JSON, pods: list[JSON]) -> tuple[int, str | None]:
    """(pods to create, outcome) where outcome is None, "Complete" or "Failed"."""
    spec = job.get("spec") or {}
    parallelism = _int(spec.get("parallelism"), 1)
    completions = spec.get("completions")
    backoff_limit = _int(spec.get("backoffLimit"), 6)
    succeeded = sum(1 for p in pods if pod_phase(p) == "Succeeded")
    failed = sum(1 for p in pods if pod_phase(p) == "Failed")
    active = sum(1 for p in pods if pod_is_active(p))
    if failed > backoff_limit:
        return 0, "Failed"
    if completions is None:
        # Work-queue mode: done once one pod succeeded and none is left running.
        if succeeded > 0 and active == 0:
            return 0, "Complete"
        return (max(0, parallelism - active) if succeeded == 0 else 0), None
    remaining = _int(completions, 1) - succeeded
    if remaining <= 0:
        return 0, "Complete"
    return max(0, min(parallelism, remaining) - active), None


async def job_controller(ctx: Context) -> None:
    """Reconcile every Job when it or one of its pods changes."""
    queue: KeyQueue[tuple[str, str]] = KeyQueue()
    uid_to_key: dict[str, tuple[str, str]] = {}

    def on_job(etype: str, job: JSON) -> None:
        uid = str(meta(job).get("uid"))
        if etype == "DELETED":
            uid_to_key.pop(uid, None)
            return
        uid_to_key[uid] = key_of(job)
        queue.add(key_of(job))

    def on_pod(etype: str, pod: JSON) -> None:
        for ref in meta(pod).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Job":
                key = uid_to_key.get(str(ref.get("uid")))
                if key is not None:
                    queue.add(key)

    jobs = Informer(ctx.store, "jobs.batch", on_job)
    pods = Informer(ctx.store, "pods", on_pod)

    def delete_active(owned: list[JSON]) -> None:
        for pod in owned:
            if pod_is_active(pod):
                pns, pname = key_of(pod)
                try:
                    gone = ctx.store.delete_now("pods", pns, pname, uid_precondition=meta(pod).get("uid"))
                except ApiError:
                    continue
                if gone is not None:
                    pods.apply("DELETED" if ctx.store.get("pods", pns, pname) is None else "MODIFIED", gone)

    def reconcile(key: tuple[str, str]) -> tuple[bool, list[JSON]]:
        """One pass: (more work remains, the new pods to create through admission)."""
        job = jobs.objects.get(key)
        if job is None or meta(job).get("deletionTimestamp"):
            return False, []
        owned = pods.owned(str(meta(job).get("uid")))
        more = False
        new: list[JSON] = []
        outcome: str | None = None
        if job_finished(job) or (job.get("spec") or {}).get("suspend"):
            delete_active(owned)
        else:
            create, outcome = plan_job(job, owned)
            if outcome is not None:
                delete_active(owned)
            template = (job.get("spec") or {}).get("template") or {}
            new = [pod_from_template(job, template, extra_labels=job_labels(job)) for _ in range(min(create, BURST))]
            more = create > BURST
        owned = pods.owned(str(meta(job).get("uid")))
        write_status(job, owned, outcome)
        return more, new

    def write_status(job: JSON, owned: list[JSON], outcome: str | None) -> None:
        namespace, name = key_of(job)
        old = job.get("status") or {}
        status: JSON = {k: v for k, v in old.items() if k in ("startTime", "completionTime", "conditions")}
        status["startTime"] = old.get("startTime") or now_rfc3339()
        active = sum(1 for p in owned if pod_is_active(p))
        for field, value in (
            ("active", active),
            ("ready", sum(1 for p in owned if pod_is_active(p) and pod_is_ready(p))),
            ("succeeded", sum(1 for p in owned if pod_phase(p) == "Succeeded")),
            ("failed", sum(1 for p in owned if pod_phase(p) == "Failed")),
        ):
            if value or field == "ready":
                status[field] = value
        conditions: list[JSON] = [dict(c) for c in status.get("conditions") or []]
        now = now_rfc3339()
        if outcome == "Complete":
            set_condition(
                conditions,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                lastProbeTime=now,
            )
            status.setdefault("completionTime", now)
        elif outcome == "Failed":
            set_condition(
                conditions,
                "Failed",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                lastProbeTime=now,
            )
        if conditions:
            status["conditions"] = conditions
        if status == old:
            return
        try:
            jobs.apply(
                "MODIFIED",
                ctx.store.mutate_now(
                    "jobs.batch", namespace, name, lambda o: {**o, "status": status}, subresource="status"
                ),
            )
        except ApiError as exc:
            log.debug("job status not written", job=f"{namespace}/{name}", error=exc.message)

    async def worker() -> None:
        await jobs.synced.wait()
        await pods.synced.wait()
        while True:
            for key in await queue.take():
                more, new = guarded("job", key, lambda: reconcile(key)) or (False, [])  # noqa: B023 (called at once)
                if new:  # then a pass for the status that counts them
                    more = await create_pods(ctx, pods, new, "job", "/".join(key)) > 0 or more
                if more:
                    queue.add(key)
            await asyncio.sleep(0)

    await run_supervised("job-controller", jobs.run, pods.run, worker)
