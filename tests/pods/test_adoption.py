"""Adoption after a restart: existing groups are learnt before any create or delete."""

from __future__ import annotations

import asyncio

from tests.pods.fakes import make_pod
from tests.pods.harness import Env
from tests.waiting import eventually
from vk_provider.errors import TransientError
from vk_provider.metrics import REGISTRY
from vk_provider.provider import BackendPod


async def test_adopted_group_is_never_created_again() -> None:
    """After a restart, a pod whose group already exists (by UID) is adopted, not created."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.reconcile(key)
    assert env.provider.actions("create") == []
    assert env.ctl.ready


async def test_adoption_failing_at_start_holds_creates_and_deletes_but_not_readiness() -> None:
    """ECI down at start: the controller is ready once the watch synced; until the listing succeeds no
    group is created or deleted and the GC does not run; then every pod is requeued and adopted once."""
    env = Env()
    env.provider.add_group("default", "old", "uid-old")
    env.provider.add_group("default", "gone", "uid-gone")  # its pod is force-deleted below
    env.provider.add_group("default", "leaving", "uid-leaving")
    eci_back = asyncio.Event()
    real_list = env.provider.backend_pods

    async def backend_pods() -> list[BackendPod]:
        if not eci_back.is_set():
            env.provider.calls.append(("list", ""))
            raise TransientError("ECI DescribeContainerGroups unreachable")
        return await real_list()

    env.provider.backend_pods = backend_pods  # type: ignore[method-assign]
    old = env.add(make_pod("old"))
    new = env.add(make_pod("new"))
    gone = env.add(make_pod("gone"))
    leaving_pod = make_pod("leaving")
    leaving_pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    leaving = env.add(leaving_pod)
    env.ctl.informer.synced.set()
    notified: list[tuple[str, str] | None] = []
    adopt = asyncio.create_task(env.ctl.adoption.run(notify=lambda: notified.append(env.ctl.adoption.pending())))
    try:
        await eventually(lambda: env.provider.actions("list"), timeout=5, interval=0.001, what="a list call")
        assert env.ctl.ready and not env.ctl.state.adopted.is_set()
        pending = env.ctl.adoption.pending()
        assert pending is not None and pending[0] == "failing" and "unreachable" in pending[1]
        assert REGISTRY.get_sample_value("vk_adoption_pending") == 1  # alertable, not only in the message
        env.remove(gone)
        for key in (old, new, gone, leaving):
            await env.reconcile(key)
        assert await env.ctl.gc.sweep() == 0
        assert env.provider.actions("create") == [] and env.provider.actions("delete") == []
        assert env.provider.actions("delete_group") == [] and env.kube.writes("DELETE") == []
        # A group the status stream reports meanwhile gets its status written: status work goes on.
        env.ctl.sync.ingest(BackendPod("default", "old", "uid-old", "eci-uid-old", "Running", {"phase": "Running"}))
        await env.reconcile(old)
        assert env.kube.objects[env.path(make_pod("old"))]["status"]["phase"] == "Running"
        assert env.provider.actions("create") == [] and not env.ctl.state.adopted.is_set()
        eci_back.set()
        await adopt
    finally:
        adopt.cancel()
    assert env.ctl.adoption.pending() is None and notified[0] is not None and notified[-1] is None
    assert REGISTRY.get_sample_value("vk_adoption_pending") == 0
    assert len(env.ctl.queue) == 4  # every pod, and the force-deleted one, requeued
    for key in (old, new, gone, leaving):
        await env.reconcile(key)
    assert env.provider.actions("create") == ["uid-new"]  # never one for a pod that had a group
    assert sorted(env.provider.actions("delete")) == ["uid-gone", "uid-leaving"]
    assert env.ctl.state.groups["uid-old"].group.group_id == "eci-uid-old"


async def test_after_adoption_pods_with_work_go_first_and_the_others_are_spread() -> None:
    """The queue a standby filled in watch order is reordered: a pod without a group (to create) and a pod
    being deleted come before the pods that only confirm their status, which come back over time."""
    env = Env()
    settled = []
    for i in range(3):
        env.provider.add_group("default", f"old-{i}", f"uid-old-{i}")
        settled.append(env.add(make_pod(f"old-{i}")))
    env.provider.add_group("default", "leaving", "uid-leaving")
    leaving_pod = make_pod("leaving")
    leaving_pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    leaving = env.add(leaving_pod)
    new = env.add(make_pod("new"))  # created last, e.g. while the old leader was dead
    # What the watch queued on the standby (a pod being deleted goes in the lane served first).
    assert (list(env.ctl.queue._queue), list(env.ctl.queue._first)) == ([*settled, new], [leaving])
    env.ctl.informer.synced.set()
    await env.ctl.adoption.run()
    assert len(env.ctl.queue) == 3  # the two with work, and the first of the spread ones
    first = [await env.ctl.queue.get() for _ in range(3)]
    assert sorted(first[:2]) == sorted([new, leaving]) and first[2] == settled[0]
    async with asyncio.timeout(5):
        assert sorted([await env.ctl.queue.get() for _ in range(2)]) == sorted(settled[1:])
