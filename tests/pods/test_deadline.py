"""The pending deadline: a group not Running in time fails its pod (PendingTimeout) and is deleted."""

from __future__ import annotations

from tests.pods.fakes import make_pod
from tests.pods.harness import Env
from vk_provider.pods.deadline import ANNOTATION, deadline_minutes, last_said


def pulling(name: str) -> dict[str, object]:
    pod = make_pod(name)
    pod["status"]["containerStatuses"] = [
        {"name": "main", "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}}
    ]
    return pod


async def test_a_group_pending_past_its_deadline_fails_the_pod_and_is_deleted() -> None:
    """Past max_pending_minutes: Failed/PendingTimeout with what ECI last said, a Warning event, the group
    deleted, and no new group for the pod."""
    env = Env(max_pending_minutes=10)
    env.provider.add_group("default", "web", "uid-web", status="Pending", age=601)
    key = env.add(pulling("web"))
    await env.ready()
    assert await env.ctl.deadline.sweep() == 1
    status = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "PendingTimeout"
    assert "ErrImagePull: pull access denied" in status["message"] and "10 minutes" in status["message"]
    assert "PendingTimeout" in env.kube.reasons()
    assert env.provider.actions("delete") == ["uid-web"]
    env.refresh(key)
    await env.reconcile(key)
    assert env.provider.actions("create") == []
    assert await env.ctl.deadline.sweep() == 0  # once


async def test_young_running_and_annotated_pods_are_left_alone() -> None:
    """A pending group younger than its deadline (the annotation's, when set), or a Running one, is kept."""
    env = Env(max_pending_minutes=10)
    env.provider.add_group("default", "young", "uid-young", status="Pending", age=300)
    env.provider.add_group("default", "running", "uid-running", status="Running", age=7200)
    env.provider.add_group("default", "patient", "uid-patient", status="Pending", age=1200)
    patient = make_pod("patient")
    patient["metadata"]["annotations"] = {ANNOTATION: "30"}
    for pod in (make_pod("young"), make_pod("running"), patient):
        env.add(pod)
    await env.ready()
    assert await env.ctl.deadline.sweep() == 0
    assert env.provider.actions("delete") == []


def test_deadline_and_last_said() -> None:
    """The annotation wins over the default; without a waiting container the group's status word is said."""
    pod = make_pod("p")
    assert deadline_minutes(pod, 240) == 240
    pod["metadata"]["annotations"] = {ANNOTATION: "15"}
    assert deadline_minutes(pod, 240) == 15
    assert last_said(make_pod("p"), "Scheduling") == "the group is Scheduling"
    assert last_said(pulling("p"), "Pending") == "main: ErrImagePull: pull access denied"
