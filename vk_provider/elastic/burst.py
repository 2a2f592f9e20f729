"""The burst controller: pods the scheduler could place nowhere move to the virtual node within seconds.

One control loop over a watch of unbound pods (``spec.nodeName=``). A pod is taken when the scheduler has
marked it ``PodScheduled=False`` reason ``Unschedulable``, the profile puts it in burst mode (a serverless
pod that the webhook missed is taken too), and it has been seen Unschedulable for its rule's
``burstAfterSeconds``. Then, in this order:

1. eligibility (``evaluate``): the default scheduler's pod; its required nodeSelector and node affinity
   allow the virtual node (``target.py``); the backend would run it (``Backend.validate``: the ECI
   translator's own checks as a dry run, so a hostPath, a PVC or a DaemonSet pod are refused by the same
   code that would refuse them at create); the rule's ``max`` is not reached (pods and vCPU of the rule's
   pods on the virtual node, counted from the pod controller's watch cache plus the bindings in flight).
   Not eligible: one Warning ``BurstSkipped`` saying why, and the pod stays Pending (a limit is checked
   again every ``LIMIT_RECHECK_SECONDS``; anything else when the pod changes);
2. ``pods/binding`` to the virtual node, the one write on the way to the pod's start. The Binding carries
   ``controller.kubernetes.io/pod-deletion-cost`` (``elastic.deletion_cost``, low, so a ReplicaSet scaling
   down removes these pods first) and the rule annotation: the API server merges a Binding's annotations
   into the pod with its ``nodeName``. A 409 means someone bound it meanwhile: fine;
3. after the binding, beside the next bindings (``FOLLOW_UP_WRITERS``): a JSON Patch adds the virtual node's
   toleration (additions to tolerations are allowed on a live pod; a binding ignores taints, but a
   descheduler does not), then a Normal ``BurstToServerless`` event quoting the scheduler's reason. Only
   with a ``NoExecute`` taint does the toleration go first, as the taint manager would evict a bound pod
   that lacks it.

The pod controller then creates its group like any pod on the node. Every decision is counted:
``vk_elastic_bursts_total``, ``vk_elastic_burst_skips_total{reason}``, ``vk_elastic_burst_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from vk_provider.aio import Backoff
from vk_provider.elastic.patches import Ops, annotation_ops, toleration_ops
from vk_provider.elastic.profiles import ANNOTATION_RULE, Decision
from vk_provider.elastic.target import VirtualNode
from vk_provider.kube.client import JSON, KubeAPI, KubeError
from vk_provider.kube.events import EventRecorder
from vk_provider.kube.watch import Informer, object_key
from vk_provider.metrics import BURST_SECONDS, BURST_SKIPS, BURSTS
from vk_provider.provider import Pod, PodLookup

log = structlog.get_logger("vk_provider.elastic.burst")

DEFAULT_SCHEDULER = "default-scheduler"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
JSON_PATCH = "application/json-patch+json"
LIMIT_RECHECK_SECONDS = 5.0
CONCURRENCY = 16
FOLLOW_UP_WRITERS = 4
TOLERATION_ATTEMPTS = 4

Decide = Callable[[Mapping[str, str], Mapping[str, str]], Decision | None]


def unschedulable(pod: Pod) -> dict[str, Any] | None:
    """The pod's PodScheduled=False/Unschedulable condition when it is pending, unbound and not deleting."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("nodeName") or meta.get("deletionTimestamp") or status.get("phase", "Pending") != "Pending":
        return None
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return dict(c)
    return None


def cpu_of(pod: Pod) -> float:
    """The pod's vCPU request as the scheduler counts it: the containers' sum, or the largest init container."""
    spec = pod.get("spec") or {}

    def one(c: Mapping[str, Any]) -> float:
        res = c.get("resources") or {}
        raw = (res.get("requests") or {}).get("cpu") or (res.get("limits") or {}).get("cpu")
        return _cpu(raw) if raw is not None else 0.0

    main = sum(one(c) for c in spec.get("containers") or [])
    return max([main, *(one(c) for c in spec.get("initContainers") or [])])


def _cpu(raw: Any) -> float:
    text = str(raw).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 0.0


@dataclass
class Usage:
    """Pods and vCPU on the virtual node by rule source (the annotation)."""

    pods: dict[str, int]
    cpu: dict[str, float]

    def add(self, source: str, cpu: float) -> None:
        self.pods[source] = self.pods.get(source, 0) + 1
        self.cpu[source] = self.cpu.get(source, 0.0) + cpu


@dataclass(frozen=True)
class Skip:
    reason: str  # the metric label
    message: str
    recheck: bool = False


@dataclass(frozen=True)
class FollowUp:
    """The writes that wait until after a pod's binding (or skip): its toleration patch, then its Event."""

    pod: Pod
    toleration: Ops
    event: tuple[str, str, str]  # type, reason, message


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class Burst:
    decision: Decision
    cpu: float
    scheduler_message: str
    since: float


Outcome = Skip | Wait | Burst | None


class BurstController:
    """Watches unbound pods and binds the eligible Unschedulable burst pods to the virtual node."""

    def __init__(
        self,
        api: KubeAPI,
        recorder: EventRecorder,
        *,
        decide: Decide,
        namespace_labels: Callable[[str], Mapping[str, str]],
        node: VirtualNode,
        on_node: PodLookup,
        validate: Callable[[Pod], str | None],
        deletion_cost: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.decide = decide
        self.namespace_labels = namespace_labels
        self.node = node
        self.on_node = on_node
        self.validate = validate
        self.deletion_cost = deletion_cost
        self.clock = clock
        self.informer = Informer(api, "/api/v1/pods", field_selector="spec.nodeName=", handler=self._on_pod)
        self.backoff = Backoff(base=0.5, cap=10.0)
        self._seen_unschedulable: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()
        self._bound: set[str] = set()  # bound to the virtual node, until the watch sees the pod leave the unbound ones
        self._failures: dict[str, int] = {}
        self._reported: dict[str, str] = {}
        self._inflight: dict[str, tuple[str, float]] = {}
        self._wake = asyncio.Event()
        self._jobs: asyncio.Queue[tuple[Pod, Burst]] = asyncio.Queue()
        self._after: asyncio.Queue[FollowUp] = asyncio.Queue()

    # ---- the watch ------------------------------------------------------------------------------------
    def _on_pod(self, kind: str, pod: JSON) -> None:
        key = object_key(pod)
        if kind == "DELETED" or unschedulable(pod) is None:
            self._forget(key)
            return
        if key in self._bound:  # an event from before the binding (our own patch, say): the pod is placed already
            return
        self._seen_unschedulable.setdefault(key, self.clock())
        self._due[key] = min(self._due.get(key, float("inf")), self.clock())
        self._wake.set()

    def _forget(self, key: str) -> None:
        self._seen_unschedulable.pop(key, None)
        self._due.pop(key, None)
        self._reported.pop(key, None)
        self._failures.pop(key, None)
        self._bound.discard(key)

    # ---- deciding -------------------------------------------------------------------------------------
    def usage(self) -> Usage:
        """The rules' pods on the virtual node (watch cache) plus the bindings not yet seen there."""
        usage = Usage({}, {})
        for pod in self.on_node.cached_pods():
            meta = pod.get("metadata") or {}
            source = (meta.get("annotations") or {}).get(ANNOTATION_RULE)
            if source and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                usage.add(source, cpu_of(pod))
        for key, (source, cpu) in list(self._inflight.items()):
            ns, _, name = key.partition("/")
            if self.on_node.cached_pod(ns, name) is not None:
                del self._inflight[key]  # counted above now
            else:
                usage.add(source, cpu)
        return usage

    def evaluate(self, pod: Pod, usage: Callable[[], Usage], now: float) -> Outcome:
        """What to do with one pod now (pure but for the clock passed in and the validate call). ``usage`` is
        asked only when the pod's rule has a limit: counting reads every pod on the virtual node."""
        cond = unschedulable(pod)
        if cond is None:
            return None
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        namespace = str(meta.get("namespace") or "default")
        decision = self.decide(meta.get("labels") or {}, self.namespace_labels(namespace))
        if decision is None:
            return None
        key = object_key(pod)
        since = self._seen_unschedulable.get(key, now)
        if now < since + decision.burst_after_seconds:
            return Wait(since + decision.burst_after_seconds)
        scheduler = spec.get("schedulerName") or DEFAULT_SCHEDULER
        if scheduler != DEFAULT_SCHEDULER:
            return Skip("scheduler-name", f"the pod is scheduled by {scheduler!r}, not {DEFAULT_SCHEDULER!r}")
        refused = self.node.placement_refusal(pod)
        if refused is not None:
            return Skip(*refused)
        why = self.validate(pod)
        if why is not None:
            return Skip("unsupported", f"the virtual node cannot run it: {why}")
        cpu = cpu_of(pod)
        limits = decision.rule.max if decision.rule is not None else None
        if limits is not None:
            counted = usage()
            have_pods = counted.pods.get(decision.source, 0)
            have_cpu = counted.cpu.get(decision.source, 0.0)
            if limits.pods is not None and have_pods + 1 > limits.pods:
                return Skip(
                    "limit-pods",
                    f"rule {decision.source}: max pods {limits.pods} reached ({have_pods} on the virtual node)",
                    recheck=True,
                )
            if limits.cpu is not None and have_cpu + cpu > limits.cpu + 1e-9:
                return Skip(
                    "limit-cpu",
                    f"rule {decision.source}: max cpu {limits.cpu:g} reached "
                    f"({have_cpu:g} on the virtual node, the pod asks {cpu:g})",
                    recheck=True,
                )
        return Burst(decision, cpu, str(cond.get("message") or ""), since)

    # ---- the loop -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """The decision loop, CONCURRENCY workers that bind, FOLLOW_UP_WRITERS that add the tolerations and record
        the Events: a slow write never holds up a decision, and neither a toleration nor an Event holds up a
        binding."""
        await self.informer.synced.wait()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._decide_loop())
            for _ in range(CONCURRENCY):
                group.create_task(self._worker())
            for _ in range(FOLLOW_UP_WRITERS):
                group.create_task(self._follow_up_writer())

    async def _decide_loop(self) -> None:
        """Take the due pods, count the usage once (if a limit asks for it), decide for each, and queue the
        writes."""
        while True:
            now = self.clock()
            due = [k for k, t in self._due.items() if t <= now and k not in self._busy]
            if not due:
                await self._sleep_until_due(now)
                continue
            for key in due:
                del self._due[key]
            counted: Usage | None = None

            def usage() -> Usage:
                nonlocal counted
                if counted is None:
                    counted = self.usage()  # the bindings queued so far are in it (in flight)
                return counted

            for key in due:
                pod = self.informer.cache.get(key)
                if pod is None:
                    continue
                outcome = self.evaluate(pod, usage, now)
                if isinstance(outcome, Wait):
                    self._due[key] = outcome.until
                elif isinstance(outcome, Skip):
                    if outcome.recheck:
                        self._due[key] = now + LIMIT_RECHECK_SECONDS
                    if self._reported.get(key) != outcome.message:
                        self._reported[key] = outcome.message
                        self._skip(pod, outcome)
                elif isinstance(outcome, Burst):
                    if counted is not None:
                        counted.add(outcome.decision.source, outcome.cpu)
                    self._inflight[key] = (outcome.decision.source, outcome.cpu)
                    self._busy.add(key)
                    self._jobs.put_nowait((pod, outcome))
            await asyncio.sleep(0)  # let the workers start on this batch before the next one is decided

    async def _worker(self) -> None:
        while True:
            pod, outcome = await self._jobs.get()
            key = object_key(pod)
            try:
                await self._burst(pod, outcome)
            except Exception as exc:  # one pod's failure must not stop the worker
                log.error("burst worker failed", pod=key, error=repr(exc), exc_info=exc)
                self._inflight.pop(key, None)
            finally:
                self._busy.discard(key)

    async def _follow_up_writer(self) -> None:
        """Tolerations and Events go out beside the bindings, not in their way (the recorder never raises)."""
        while True:
            job = await self._after.get()
            try:
                await self._follow_up(job)
            except Exception as exc:  # one pod's follow-up (e.g. a write fenced off) must not stop the writer
                log.error("burst follow-up failed", pod=object_key(job.pod), error=repr(exc), exc_info=exc)

    async def _follow_up(self, job: FollowUp) -> None:
        if job.toleration:
            await self._tolerate(job.pod, job.toleration)
        await self.recorder.record(job.pod, *job.event)

    async def _tolerate(self, pod: Pod, ops: Ops) -> None:
        """Add the toleration to a bound pod, retrying a transient failure a few times; what still fails is
        logged (the pod runs without it: a binding does not need it)."""
        key = object_key(pod)
        meta = pod.get("metadata") or {}
        path = f"/api/v1/namespaces/{meta.get('namespace') or 'default'}/pods/{meta.get('name')}"
        for attempt in range(TOLERATION_ATTEMPTS):
            try:
                await self.api.request("PATCH", path, body=ops, content_type=JSON_PATCH)
                return
            except KubeError as exc:
                if exc.not_found:
                    return
                if exc.status < 500 and exc.status != 429:
                    log.warning("burst pod's toleration refused", pod=key, error=str(exc))
                    return
                error: BaseException = exc
            except (OSError, TimeoutError) as exc:
                error = exc
            if attempt + 1 < TOLERATION_ATTEMPTS:
                await asyncio.sleep(self.backoff.delay(attempt))
        log.warning("burst pod's toleration not added", pod=key, error=str(error), attempts=TOLERATION_ATTEMPTS)

    async def _sleep_until_due(self, now: float) -> None:
        self._wake.clear()
        pending = [t for k, t in self._due.items() if k not in self._busy]
        timeout = max(0.0, min(pending) - now) if pending else None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _skip(self, pod: Pod, skip: Skip) -> None:
        key = object_key(pod)
        BURST_SKIPS.labels(reason=skip.reason).inc()
        log.info("burst skipped", pod=key, reason=skip.reason, why=skip.message)
        message = f"Not moved to the virtual node: {skip.message}"
        self._after.put_nowait(FollowUp(pod, [], ("Warning", "BurstSkipped", message)))

    async def _burst(self, pod: Pod, burst: Burst) -> None:
        key = object_key(pod)
        meta = pod.get("metadata") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        path = f"/api/v1/namespaces/{ns}/pods/{name}"
        tolerate = toleration_ops(pod, self.node.toleration)
        try:
            if tolerate and self.toleration_first:
                await self.api.request("PATCH", path, body=tolerate, content_type=JSON_PATCH)
                tolerate = []
            notes = {DELETION_COST: str(self.deletion_cost), ANNOTATION_RULE: burst.decision.source}
            bound = await self._bind(path, ns, name, notes)
        except KubeError as exc:
            self._inflight.pop(key, None)
            if exc.not_found:
                return
            self._retry(key, exc)
            return
        except (OSError, TimeoutError) as exc:
            self._inflight.pop(key, None)
            self._retry(key, exc)
            return
        # Placed either way: events the watch delivers before it sees the binding (our patch among them, perhaps
        # while the binding was in flight) must not make the pod due again, or it would be burst and counted twice.
        self._bound.add(key)
        self._due.pop(key, None)
        if bound is False:
            self._inflight.pop(key, None)
            log.info("burst pod was bound elsewhere meanwhile", pod=key)
            return
        if bound is not True:  # bound to the virtual node by someone else: the annotations go with the toleration
            tolerate = annotation_ops(bound, notes) + toleration_ops(bound, self.node.toleration)
        elapsed = self.clock() - burst.since
        BURSTS.labels(rule=burst.decision.source).inc()
        BURST_SECONDS.observe(elapsed)
        log.info("burst to serverless", pod=key, rule=burst.decision.source, seconds=round(elapsed, 3))
        reason = burst.scheduler_message or "Unschedulable"
        message = (
            f"Bound to the virtual node {self.node.name} (rule {burst.decision.source}); the scheduler said: {reason}"
        )
        self._after.put_nowait(FollowUp(pod, tolerate, ("Normal", "BurstToServerless", message)))

    def _retry(self, key: str, exc: BaseException) -> None:
        n = self._failures[key] = self._failures.get(key, 0) + 1
        delay = self.backoff.delay(n)
        log.warning("burst failed, retrying", pod=key, error=str(exc), retry_in=round(delay, 2))
        if key in self.informer.cache:
            self._due[key] = self.clock() + delay
            self._wake.set()  # the decision loop may be asleep with no deadline

    @property
    def toleration_first(self) -> bool:
        """A NoExecute taint: the toleration must be on the pod before it is bound, or the taint manager evicts it."""
        return self.node.toleration is not None and self.node.toleration.get("effect") == "NoExecute"

    async def _bind(self, path: str, ns: str, name: str, notes: Mapping[str, str]) -> Pod | bool:
        """Bind to the virtual node with ``notes`` as the Binding's annotations (merged into the pod by the API
        server): True when bound so; else, after a 409, the pod when someone else bound it there (without
        the annotations), False when it is elsewhere or gone."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "annotations": dict(notes)},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node.name},
        }
        try:
            await self.api.request("POST", f"{path}/binding", body=body)
            return True
        except KubeError as exc:
            if not exc.conflict:
                raise
        current = await self.api.get_or_none(path)
        if current and (current.get("spec") or {}).get("nodeName") == self.node.name:
            return current
        return False
