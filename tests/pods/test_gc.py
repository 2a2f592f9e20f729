"""Orphan GC and vanished groups."""

from __future__ import annotations

from tests.pods.fakes import make_pod
from tests.pods.harness import Env


async def test_gc_deletes_only_old_orphans() -> None:
    """GC deletes groups whose pod UID is not alive and older than gc_min_age; never a live pod's group."""
    env = Env()
    env.provider.add_group("default", "live", "uid-live", age=7200)
    env.provider.add_group("default", "old", "uid-old", age=7200)
    env.provider.add_group("default", "young", "uid-young", age=5)
    env.add(make_pod("live"))
    assert await env.ctl.gc.sweep() == 0  # not synced yet: GC must not run
    await env.ready()
    assert await env.ctl.gc.sweep() == 1
    assert env.provider.actions("delete_group") == ["eci-uid-old"]
    assert set(env.provider.groups) == {"uid-live", "uid-young"}


async def test_vanished_group_fails_the_pod_with_137() -> None:
    """A group that disappeared without our asking: pod Failed, containers exit 137, Warning event."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.reconcile(key)
    env.refresh(key)
    del env.provider.groups["uid-web"]
    await env.ctl.gc.sweep()
    await env.reconcile(key)
    status = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "ContainerGroupVanished"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    assert "ContainerGroupVanished" in env.kube.reasons()
    env.refresh(key)
    await env.reconcile(key)
    assert env.provider.actions("create") == []


async def test_a_just_created_group_missing_from_a_listing_is_not_vanished() -> None:
    """GC does not fail a pod whose group was created moments ago and is not in the listing yet."""
    env = Env(vanish_grace=60.0)
    await env.ready()
    key = env.add(make_pod("web"))
    await env.reconcile(key)
    del env.provider.groups["uid-web"]  # the listing does not show it yet
    await env.ctl.gc.sweep()
    await env.reconcile(key)
    assert env.kube.objects[env.path(make_pod("web"))]["status"]["phase"] == "Pending"
    assert "ContainerGroupVanished" not in env.kube.reasons()


async def test_gc_lists_identities_not_statuses() -> None:
    """A sweep reads every group's identity and age only (``backend_groups``), never every group's status
    (``backend_pods``); the one live pod whose group the controller does not know yet is read by itself."""
    env = Env()
    env.provider.add_group("default", "live", "uid-live", age=7200)
    env.provider.add_group("default", "old", "uid-old", age=7200)
    env.add(make_pod("live"))
    await env.ready()
    env.ctl.state.groups.pop("uid-live")  # as if the status stream had not reported it yet
    env.provider.calls.clear()
    assert await env.ctl.gc.sweep() == 1
    assert env.provider.actions("list") == []
    assert env.provider.actions("groups") == [""]
    assert env.provider.actions("get") == ["uid-live"]
    assert env.ctl.state.groups["uid-live"].group.group_id == "eci-uid-live"
