"""The control loop: workers keep going through failures, with backoff and a warning after max_retries."""

from __future__ import annotations

import asyncio

from tests.pods.fakes import make_pod
from tests.pods.harness import Env
from tests.waiting import eventually
from vk_provider.errors import TransientError


async def test_transient_error_is_retried_and_warned_after_max_retries() -> None:
    """Transient failures requeue with backoff; after max_retries a ReconcileRetrying Warning says so."""
    env = Env(max_retries=2, workers=1)
    await env.ready()
    env.provider.fail["create"] = [TransientError("503"), TransientError("503")]
    env.add(make_pod("web"))
    worker = asyncio.create_task(env.ctl.run_worker())
    try:
        await eventually(
            lambda: env.provider.actions("create") == ["uid-web"] * 3, timeout=5, interval=0.01, what="three creates"
        )
        await eventually(
            lambda: "ReconcileRetrying" in env.kube.reasons(),
            timeout=5,
            interval=0.01,
            what="a ReconcileRetrying event",
        )
    finally:
        await env.ctl.drain()
        await worker
    assert "uid-web" in env.provider.groups


async def test_one_worker_survives_many_failures() -> None:
    """A single worker keeps going through repeated Requeue and plain errors (missing ConfigMap, then a crash)."""
    env = Env(workers=1)
    await env.ready()
    env_ref = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]
    env.add(make_pod("a", containers=[{"name": "main", "image": "busybox", "env": env_ref}]))
    env.provider.fail["create"] = [RuntimeError("unexpected"), RuntimeError("unexpected")]
    env.add(make_pod("b"))
    worker = asyncio.create_task(env.ctl.run_worker())
    try:

        def b_done() -> bool:
            assert not worker.done(), worker
            return "MandatoryConfigMapNotFound" in env.kube.reasons() and "uid-b" in env.provider.groups

        def a_done() -> bool:
            assert not worker.done(), worker
            return "uid-a" in env.provider.groups

        await eventually(b_done, timeout=5, interval=0.01, what="a MandatoryConfigMapNotFound event and b's group")
        env.kube.put("/api/v1/namespaces/default/configmaps/cfg", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
        await eventually(a_done, timeout=5, interval=0.01, what="a's group")
    finally:
        await env.ctl.drain()
        await worker


def test_cached_pods_decodes_one_at_a_time_and_survives_changes() -> None:
    """cached_pods() is lazy (the cache holds JSON): a pod removed or added while it is iterated breaks
    nothing, a removed one is skipped, and each pod read is a fresh dict."""
    env = Env()
    for name in ("a", "b", "c"):
        env.add(make_pod(name))
    pods = env.ctl.cached_pods()
    first = next(iter(pods))
    env.remove("default/b")
    env.add(make_pod("d"))
    rest = [p["metadata"]["name"] for p in pods]
    assert first["metadata"]["name"] == "a" and rest == ["c"]
    first["metadata"]["name"] = "changed"
    assert env.ctl.cached_pod("default", "a")["metadata"]["name"] == "a"


async def test_the_watch_echo_of_our_own_write_is_not_reconciled_again() -> None:
    """The pod as our status PATCH left it (same resourceVersion) comes back through the watch: no requeue, as that
    write's reconcile dealt with it. A change by anyone else after it is queued as before."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web", status="Running")
    key = env.add(make_pod("web", uid="uid-web"))
    await env.ready()
    assert await env.ctl.queue.get() == key
    await env.reconcile(key)
    env.ctl.queue.done(key)
    assert len(env.kube.writes("PATCH", "/status")) == 1
    written = env.refresh(key)
    env.ctl._on_pod_event("MODIFIED", written)
    assert len(env.ctl.queue) == 0
    written["metadata"]["labels"] = {"changed": "by-someone"}
    changed = env.kube.put(env.path(written), written)  # a new resourceVersion
    env.ctl.informer.cache[key] = changed
    env.ctl._on_pod_event("MODIFIED", changed)
    assert len(env.ctl.queue) == 1


async def test_when_a_pod_was_seen_is_kept_only_while_it_may_need_a_create() -> None:
    """``PodState.seen`` (for shared reads) holds a new Pending pod until it is reconciled, started or gone, so a
    standby, whose workers never reconcile, does not collect one per pod."""
    env = Env()
    key = env.add(make_pod("web"))
    assert set(env.ctl.state.seen) == {key}
    running = make_pod("web")
    running["status"]["phase"] = "Running"
    env.ctl._on_pod_event("MODIFIED", running)
    assert env.ctl.state.seen == {}
    other = env.add(make_pod("other"))
    env.remove(other)
    assert env.ctl.state.seen == {}
