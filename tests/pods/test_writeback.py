"""Write-backs: the group id, billed size and zone land on the pod once the group is placed, once."""

from __future__ import annotations

from tests.pods.fakes import make_pod
from tests.pods.harness import Env
from vk_provider.pods.writeback import INSTANCE_ID, INSTANCE_SPEC, INSTANCE_ZONE


async def test_written_once_when_placed() -> None:
    """Not before ECI placed the group; then one metadata PATCH with id, spec and zone; none after."""
    env = Env()
    bp = env.provider.add_group("default", "web", "uid-web", status="Pending")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.reconcile(key)
    assert env.kube.writes("PATCH", "/pods/web") == []
    bp.zone, bp.size = "cn-hangzhou-k", "2-4Gi"
    env.ctl.state.remember(bp)
    await env.reconcile(key)
    await env.reconcile(key)
    [(_, _, body)] = env.kube.writes("PATCH", "/pods/web")
    assert body["metadata"]["uid"] == "uid-web"
    annotations = env.kube.objects[env.path(make_pod("web"))]["metadata"]["annotations"]
    assert annotations == {INSTANCE_ID: "eci-uid-web", INSTANCE_SPEC: "2-4Gi", INSTANCE_ZONE: "cn-hangzhou-k"}


async def test_written_with_the_status_when_the_status_changes() -> None:
    """A group placed and Running in one change: its status PATCH carries the write-backs, and no metadata PATCH
    (a write and a watch event fewer per pod); a later reconcile writes neither again."""
    env = Env()
    bp = env.provider.add_group("default", "web", "uid-web", status="Running")
    bp.zone, bp.size = "cn-hangzhou-k", "2-4Gi"
    key = env.add(make_pod("web"))
    await env.ready()
    await env.reconcile(key)
    env.refresh(key)
    await env.reconcile(key)
    assert env.kube.writes("PATCH", "/pods/web") == []
    [(_, _, body)] = env.kube.writes("PATCH", "/pods/web/status")
    assert body["metadata"] == {
        "uid": "uid-web",
        "annotations": {INSTANCE_ID: "eci-uid-web", INSTANCE_SPEC: "2-4Gi", INSTANCE_ZONE: "cn-hangzhou-k"},
    }
    assert body["status"]["phase"] == "Running"
    stored = env.kube.objects[env.path(make_pod("web"))]
    assert stored["metadata"]["annotations"][INSTANCE_ID] == "eci-uid-web"
