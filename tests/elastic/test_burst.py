"""The burst controller's decision for one pod (evaluate): when it waits, why it skips, when it bursts."""

from __future__ import annotations

from typing import Any

from vk_provider.elastic.burst import Burst, BurstController, Skip, Usage, Wait, cpu_of
from vk_provider.elastic.profiles import Profile
from vk_provider.elastic.target import VirtualNode, toleration_for
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
    assert c.evaluate(_pod(), Usage({}, {}), 100.0) == Wait(105.0)
    out = c.evaluate(_pod(), Usage({}, {}), 105.0)
    assert isinstance(out, Burst) and out.cpu == 0.5 and out.scheduler_message == "0/2 nodes"


def test_skips_say_why() -> None:
    """A custom scheduler, a backend refusal and each limit are skips; a bound or scheduled pod is nothing."""
    c = _controller(validate=lambda pod: "hostPath volumes are not supported" if pod["spec"].get("volumes") else None)
    c._seen_unschedulable["d/p"] = 0.0
    late = 1000.0
    assert c.evaluate(_pod(schedulerName="volcano"), Usage({}, {}), late).reason == "scheduler-name"  # type: ignore[union-attr]
    assert c.evaluate(_pod(volumes=[{"name": "h"}]), Usage({}, {}), late).reason == "unsupported"  # type: ignore[union-attr]
    full = c.evaluate(_pod(), Usage({"r": 3}, {"r": 1.5}), late)
    assert isinstance(full, Skip) and full.reason == "limit-pods" and full.recheck and "max pods 3" in full.message
    cpu = c.evaluate(_pod(cpu="1"), Usage({"r": 1}, {"r": 1.5}), late)
    assert isinstance(cpu, Skip) and cpu.reason == "limit-cpu"
    assert isinstance(c.evaluate(_pod(cpu="500m"), Usage({"r": 1}, {"r": 1.5}), late), Burst)
    bound = _pod(nodeName="w1")
    assert c.evaluate(bound, Usage({}, {}), late) is None


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


class _WatchEchoAPI:
    """Answers the patch and the binding; the watch delivers the patched, still unbound pod while the binding is in
    flight (as a real API server's watch may)."""

    def __init__(self) -> None:
        self.controller: BurstController | None = None
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        if method == "PATCH" and self.controller is not None:
            self.controller._on_pod("MODIFIED", _pod(), _pod())
        return {}


async def test_a_pod_is_burst_once_although_the_watch_shows_it_unbound_after_the_binding() -> None:
    """Events for the pod from before the binding (our own patch) do not make it due again: the real tier burst
    and counted some pods twice. The watch's DELETED (the pod left the unbound ones) forgets it."""
    api = _WatchEchoAPI()
    c = _controller(api=api)
    api.controller = c
    c._on_pod("ADDED", _pod(), None)
    out = c.evaluate(_pod(), Usage({}, {}), 200.0)
    assert isinstance(out, Burst)
    del c._due["d/p"]  # the decision loop takes it
    await c._burst(_pod(), out)
    assert api.calls == [("PATCH", "/api/v1/namespaces/d/pods/p"), ("POST", "/api/v1/namespaces/d/pods/p/binding")]
    assert "d/p" not in c._due
    c._on_pod("MODIFIED", _pod(), _pod())  # the scheduler's last word, delivered late
    assert "d/p" not in c._due
    c._on_pod("DELETED", _pod(), None)
    c._on_pod("ADDED", _pod(), None)  # a new pod of the same name
    assert "d/p" in c._due
