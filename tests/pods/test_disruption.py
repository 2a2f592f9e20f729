"""Spot interruption notices: event, DisruptionTarget condition, eviction with 429 retries, report-only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.pods.fakes import make_pod
from tests.pods.harness import Env
from vk_provider.kube.client import KubeError
from vk_provider.pods.disruption import ACTION_ANNOTATION, Disruptions, action
from vk_provider.provider import Interruption

EVICTION = "/api/v1/namespaces/default/pods/web/eviction"


def notice(seconds: float = 180.0, now: datetime | None = None) -> Interruption:
    return Interruption(
        reason="SpotToBeReleased",
        message="Spot ECI will be released in 3 minutes.",
        release_at=(now or datetime.now(UTC)) + timedelta(seconds=seconds),
    )


async def interrupted(env: Env, pod: dict[str, Any], interruption: Interruption) -> str:
    """The pod runs with a group that has just announced its release; reconcile it once."""
    bp = env.provider.add_group("default", pod["metadata"]["name"], pod["metadata"]["uid"])
    key = env.add(pod)
    await env.ready()
    bp.interruption = interruption
    env.ctl.state.remember(bp)
    await env.reconcile(key)
    return key


async def handle_all(d: Disruptions) -> None:
    """What the loop does with every queued notice, awaited in turn (no task, no waiting)."""
    while not d._queue.empty():
        await d._handle(d._queue.get_nowait())


def refuse_evictions(env: Env, times: int) -> None:
    """The API server answers the pod's eviction with 429 (the budget forbids it) ``times`` times."""
    original = env.kube.request
    left = [times]

    async def request(method: str, path: str, **kw: Any) -> dict[str, Any]:
        if method == "POST" and path == EVICTION and left[0] > 0:
            left[0] -= 1
            env.kube.calls.append((method, path, kw.get("body")))
            raise KubeError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
        return await original(method, path, **kw)

    env.kube.request = request  # type: ignore[method-assign]


class Clock:
    """Wall time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC)

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


async def test_notice_records_event_condition_and_evicts_once() -> None:
    """At the notice: a Warning SpotInterruption naming group and release time, DisruptionTarget=True, and one
    policy/v1 Eviction with the pod's UID as precondition; a second reconcile does not repeat it."""
    env = Env()
    n = notice()
    key = await interrupted(env, make_pod("web"), n)
    await env.reconcile(key)  # the same notice again
    await handle_all(env.ctl.disruptions)
    [event] = [e for e in env.kube.events() if e["reason"] == "SpotInterruption"]
    assert event["type"] == "Warning" and "eci-uid-web" in event["message"]
    assert n.release_at.strftime("%Y-%m-%dT%H:%M:%SZ") in event["message"]
    conds = {c["type"]: c for c in env.kube.objects[env.path(make_pod("web"))]["status"]["conditions"]}
    assert conds["DisruptionTarget"]["status"] == "True" and conds["DisruptionTarget"]["reason"] == "SpotInterruption"
    [(_, _, body)] = env.kube.writes("POST", "/eviction")
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["deleteOptions"]["preconditions"]["uid"] == "uid-web"
    assert "SpotEvicted" in env.kube.reasons()


async def test_a_refused_eviction_is_retried_until_allowed() -> None:
    """429 (the budget forbids it) is retried every eviction_retry_seconds; one SpotEvictionBlocked Warning
    carries the API's message; then the eviction goes through."""
    env = Env()
    clock = Clock()
    env.ctl.disruptions._now, env.ctl.disruptions._sleep = clock.now, clock.sleep
    refuse_evictions(env, 3)
    await interrupted(env, make_pod("web"), notice())
    await handle_all(env.ctl.disruptions)
    assert len(env.kube.writes("POST", "/eviction")) == 4
    blocked = [e for e in env.kube.events() if e["reason"] == "SpotEvictionBlocked"]
    assert len(blocked) == 1 and "disruption budget" in blocked[0]["message"]
    assert "SpotEvicted" in env.kube.reasons()


async def test_eviction_stops_at_the_release_time() -> None:
    """A budget that never allows it: the retries end at the release, with a SpotEvictionTooLate Warning."""
    env = Env()
    clock = Clock()
    env.ctl.disruptions._now, env.ctl.disruptions._sleep = clock.now, clock.sleep
    refuse_evictions(env, 10_000)
    await interrupted(env, make_pod("web"), notice(seconds=10, now=clock.t))
    await handle_all(env.ctl.disruptions)
    assert len(env.kube.writes("POST", "/eviction")) == 6  # at 0, 2, 4, 6, 8 and 10 s
    assert "SpotEvictionTooLate" in env.kube.reasons()
    assert "SpotEvicted" not in env.kube.reasons()


async def test_the_loop_handles_notices_concurrently() -> None:
    """run() gives each notice its own coroutine: a pod whose eviction keeps being refused does not hold up
    another pod's; cancelling run() cancels them."""
    env = Env()
    env.ctl.disruptions.retry_seconds = 3600
    refuse_evictions(env, 10_000)
    await interrupted(env, make_pod("web"), notice())
    other = make_pod("api")
    env.provider.add_group("default", "api", "uid-api").interruption = notice()
    key = env.add(other)
    env.ctl.state.remember(env.provider.groups["uid-api"])
    await env.reconcile(key)
    task = asyncio.get_running_loop().create_task(env.ctl.disruptions.run())
    try:
        for _ in range(1000):
            if "SpotEvicted" in env.kube.reasons():
                break
            await asyncio.sleep(0)
        assert "SpotEvicted" in env.kube.reasons()  # api's, while web waits an hour for its retry
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_report_only_pod_is_not_evicted() -> None:
    """vk-eci.io/spot-interruption: report: the event and the condition, but no eviction."""
    env = Env()
    pod = make_pod("web")
    pod["metadata"]["annotations"] = {ACTION_ANNOTATION: "report"}
    await interrupted(env, pod, notice())
    await handle_all(env.ctl.disruptions)
    assert "SpotInterruption" in env.kube.reasons()
    assert env.kube.writes("POST", "/eviction") == []
    assert action(pod, "evict") == "report" and action(make_pod("x"), "report") == "report"


async def test_group_gone_after_a_notice_fails_the_pod_bid_failed() -> None:
    """A group that disappears after its release notice was reclaimed: Failed/BidFailed naming group and time,
    not ContainerGroupVanished."""
    env = Env()
    env.ctl.disruptions.default_action = "report"
    n = notice(seconds=0)
    key = await interrupted(env, make_pod("web"), n)
    env.refresh(key)
    del env.provider.groups["uid-web"]
    await env.ctl.gc.sweep()
    await env.reconcile(key)
    status = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "BidFailed"
    assert "eci-uid-web" in status["message"] and n.release_at.strftime("%Y-%m-%dT%H:%M:%SZ") in status["message"]
    assert "ContainerGroupVanished" not in env.kube.reasons()
