"""The burst controller's decision for one pod (evaluate): when it waits, why it skips, when it bursts; and the
writes of one burst, in their order."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.kube.fakes import FakeKube
from tests.waiting import eventually
from vk_provider.aio import Backoff
from vk_provider.elastic.burst import DELETION_COST, Burst, BurstController, FollowUp, Skip, Usage, Wait, cpu_of
from vk_provider.elastic.patches import toleration_ops
from vk_provider.elastic.profiles import ANNOTATION_RULE, Profile
from vk_provider.elastic.target import VirtualNode, toleration_for
from vk_provider.fence import NotLeader
from vk_provider.kube.client import KubeError
from vk_provider.kube.events import EventRecorder
from vk_provider.settings import ElasticRule

RULE = ElasticRule.model_validate(
    {"name": "r", "mode": "burst", "selector": {}, "max": {"pods": 3, "cpu": 2}, "burstAfterSeconds": 10}
)


class _NoPods:
    def cached_pod(self, namespace: str, name: str) -> None:
        return None

    def cached_pods(self) -> list[dict[str, Any]]:
        return []


def _controller(validate: Any = lambda pod: None, api: Any = None) -> BurstController:
    return BurstController(
        api,  # evaluate makes no API call
        None,  # type: ignore[arg-type]
        decide=Profile((RULE,)).decide,
        namespace_labels=lambda ns: {},
        node=VirtualNode("vk", dict, toleration_for("k=v:NoSchedule")),
        on_node=_NoPods(),
        validate=validate,
        deletion_cost=-1000,
        clock=lambda: 100.0,
    )


def _pod(cpu: str = "500m", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "d"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}], **spec},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes"}
            ],
        },
    }


def test_a_pod_waits_for_burst_after_seconds_then_bursts() -> None:
    c = _controller()
    c._seen_unschedulable["d/p"] = 95.0
    assert c.evaluate(_pod(), lambda: Usage({}, {}), 100.0) == Wait(105.0)
    out = c.evaluate(_pod(), lambda: Usage({}, {}), 105.0)
    assert isinstance(out, Burst) and out.cpu == 0.5 and out.scheduler_message == "0/2 nodes"


def test_skips_say_why() -> None:
    """A custom scheduler, a backend refusal and each limit are skips; a bound or scheduled pod is nothing."""
    c = _controller(validate=lambda pod: "hostPath volumes are not supported" if pod["spec"].get("volumes") else None)
    c._seen_unschedulable["d/p"] = 0.0
    late = 1000.0
    assert c.evaluate(_pod(schedulerName="volcano"), lambda: Usage({}, {}), late).reason == "scheduler-name"  # type: ignore[union-attr]
    assert c.evaluate(_pod(volumes=[{"name": "h"}]), lambda: Usage({}, {}), late).reason == "unsupported"  # type: ignore[union-attr]
    full = c.evaluate(_pod(), lambda: Usage({"r": 3}, {"r": 1.5}), late)
    assert isinstance(full, Skip) and full.reason == "limit-pods" and full.recheck and "max pods 3" in full.message
    cpu = c.evaluate(_pod(cpu="1"), lambda: Usage({"r": 1}, {"r": 1.5}), late)
    assert isinstance(cpu, Skip) and cpu.reason == "limit-cpu"
    assert isinstance(c.evaluate(_pod(cpu="500m"), lambda: Usage({"r": 1}, {"r": 1.5}), late), Burst)
    bound = _pod(nodeName="w1")
    assert c.evaluate(bound, lambda: Usage({}, {}), late) is None


def test_a_rule_without_limits_never_counts_the_virtual_nodes_pods() -> None:
    """Counting decodes every pod on the virtual node; a burst under a rule without ``max`` must not pay it."""
    free = ElasticRule.model_validate({"name": "f", "mode": "burst", "selector": {}})
    c = _controller()
    c.decide = Profile((free,)).decide
    c._seen_unschedulable["d/p"] = 0.0

    def counted() -> Usage:
        raise AssertionError("usage counted for a rule without limits")

    assert isinstance(c.evaluate(_pod(), counted, 1000.0), Burst)


def test_cpu_of_counts_like_the_scheduler() -> None:
    pod = {
        "spec": {
            "containers": [{"resources": {"requests": {"cpu": "250m"}}}, {"resources": {"limits": {"cpu": "1"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
        }
    }
    assert cpu_of(pod) == 2.0
    pod["spec"]["initContainers"] = []
    assert cpu_of(pod) == 1.25


# ---- the writes of one burst ----------------------------------------------------------------------------
PATH = "/api/v1/namespaces/d/pods/p"


def _writing(kube: FakeKube, taint: str) -> BurstController:
    c = BurstController(
        kube,  # type: ignore[arg-type]
        EventRecorder(kube, host="vk"),  # type: ignore[arg-type]
        decide=Profile((RULE,)).decide,
        namespace_labels=lambda ns: {},
        node=VirtualNode("vk", dict, toleration_for(taint)),
        on_node=_NoPods(),
        validate=lambda pod: None,
        deletion_cost=-1000,
        clock=lambda: 100.0,
    )
    c.backoff = Backoff(base=0.001, cap=0.001)
    return c


async def _burst_one(c: BurstController, kube: FakeKube) -> FollowUp:
    pod = kube.put(PATH, _pod())
    c._seen_unschedulable["d/p"] = 0.0
    burst = c.evaluate(pod, lambda: Usage({}, {}), 1000.0)
    assert isinstance(burst, Burst)
    await c._burst(pod, burst)
    job = c._after.get_nowait()
    await c._follow_up(job)
    return job


def _binding_notes(kube: FakeKube) -> dict[str, str]:
    [(_, _, body)] = kube.writes("POST", "/binding")
    assert body["target"]["name"] == "vk"
    return dict(body["metadata"]["annotations"])


async def test_a_burst_binds_with_its_annotations_first_and_adds_the_toleration_after() -> None:
    """One write before the pod can start: the binding, carrying the deletion cost and the rule (the API server
    merges a Binding's annotations into the pod); then the toleration patch, then the Event."""
    kube = FakeKube()
    await _burst_one(_writing(kube, "k=v:NoSchedule"), kube)
    writes = [(m, p.rsplit("/", 1)[-1] if m == "POST" else p) for m, p, _ in kube.calls if m != "GET"]
    assert writes[:2] == [("POST", "binding"), ("PATCH", PATH)]
    assert writes[2][0] == "POST" and "/events" in kube.calls[2][1]
    assert _binding_notes(kube) == {DELETION_COST: "-1000", ANNOTATION_RULE: "r"}
    [(_, _, ops)] = kube.writes("PATCH", PATH)
    assert ops == [{"op": "add", "path": "/spec/tolerations", "value": [toleration_for("k=v:NoSchedule")]}]
    assert kube.reasons() == ["BurstToServerless"]


async def test_a_no_execute_taint_is_tolerated_before_the_binding() -> None:
    """The taint manager evicts a bound pod that does not tolerate a NoExecute taint: the patch goes first."""
    kube = FakeKube()
    job = await _burst_one(_writing(kube, "k=v:NoExecute"), kube)
    assert [m for m, _, _ in kube.calls][:2] == ["PATCH", "POST"]
    assert kube.calls[1][1].endswith("/binding") and job.toleration == []
    assert _binding_notes(kube)[DELETION_COST] == "-1000"


async def test_a_pod_someone_else_bound_to_the_virtual_node_gets_the_annotations_with_its_toleration() -> None:
    """A 409: the pod is on the virtual node already, bound without our annotations; they follow in the patch."""
    kube = FakeKube()
    kube.fail_next[("POST", PATH + "/binding")] = KubeError(409, "Conflict", "already assigned")
    c = _writing(kube, "k=v:NoSchedule")
    pod = _pod()
    kube.put(PATH, {**pod, "spec": {**pod["spec"], "nodeName": "vk"}})
    c._seen_unschedulable["d/p"] = 0.0
    burst = c.evaluate(pod, lambda: Usage({}, {}), 1000.0)
    assert isinstance(burst, Burst)
    await c._burst(pod, burst)
    job = c._after.get_nowait()
    paths = {op["path"] for op in job.toleration}
    assert paths == {"/metadata/annotations", "/spec/tolerations"}


async def test_a_toleration_patch_is_retried_on_a_transient_error_and_not_on_a_refusal() -> None:
    kube = FakeKube()
    c = _writing(kube, "k=v:NoSchedule")
    kube.put(PATH, _pod())
    ops = toleration_ops(_pod(), c.node.toleration)
    kube.fail_next[("PATCH", PATH)] = KubeError(503, "ServiceUnavailable", "try again")
    await c._tolerate(_pod(), ops)
    assert len(kube.writes("PATCH", PATH)) == 2
    kube.fail_next[("PATCH", PATH)] = KubeError(422, "Invalid", "no")
    await c._tolerate(_pod(), ops)
    assert len(kube.writes("PATCH", PATH)) == 3


async def test_a_follow_up_that_fails_otherwise_does_not_stop_its_writer() -> None:
    """A fenced write (NotLeader is no KubeError) fails that pod's follow-up only: the next one is still written."""
    kube = FakeKube()
    c = _writing(kube, "k=v:NoSchedule")
    kube.put(PATH, _pod())
    ops = toleration_ops(_pod(), c.node.toleration)
    kube.fail_next[("PATCH", PATH)] = NotLeader("refused", reason="NotLeader")  # type: ignore[assignment]
    c._after.put_nowait(FollowUp(_pod(), ops, ("Normal", "BurstToServerless", "first")))
    c._after.put_nowait(FollowUp(_pod(), ops, ("Normal", "BurstToServerless", "second")))
    writer = asyncio.ensure_future(c._follow_up_writer())
    try:
        await eventually(lambda: len(kube.writes("PATCH", PATH)) == 2 and kube.events(), timeout=5)
    finally:
        writer.cancel()
    assert [e["message"] for e in kube.events()] == ["second"]


class _WatchEchoAPI:
    """Answers the binding; the watch delivers an older, still unbound version of the pod while the binding is in
    flight (as a real API server's watch may)."""

    def __init__(self) -> None:
        self.controller: BurstController | None = None
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        if path.endswith("/binding") and self.controller is not None:
            self.controller._on_pod("MODIFIED", _pod())
        return {}


async def test_a_pod_is_burst_once_although_the_watch_shows_it_unbound_after_the_binding() -> None:
    """Events for the pod from before the binding (our own writes) do not make it due again: the real tier burst
    and counted some pods twice. The watch's DELETED (the pod left the unbound ones) forgets it."""
    api = _WatchEchoAPI()
    c = _controller(api=api)
    api.controller = c
    c._on_pod("ADDED", _pod())
    out = c.evaluate(_pod(), lambda: Usage({}, {}), 200.0)
    assert isinstance(out, Burst)
    del c._due["d/p"]  # the decision loop takes it
    await c._burst(_pod(), out)
    assert api.calls == [("POST", "/api/v1/namespaces/d/pods/p/binding")]
    assert "d/p" not in c._due
    c._on_pod("MODIFIED", _pod())  # the scheduler's last word, delivered late
    assert "d/p" not in c._due
    c._on_pod("DELETED", _pod())
    c._on_pod("ADDED", _pod())  # a new pod of the same name
    assert "d/p" in c._due
