"""Status sync: group status written to the pod only when it differs, backend events mirrored once, ephemeral
containers refused."""

from __future__ import annotations

import copy

from tests.pods.fakes import make_pod
from tests.pods.harness import Env, status_patches
from vk_provider.kube.client import KubeError
from vk_provider.provider import BackendEvent, BackendPod


async def test_status_written_only_on_change() -> None:
    """A backend status change is written once; the same status again writes nothing."""
    env = Env()
    await env.ready()
    key = env.add(make_pod("web"))
    await env.reconcile(key)
    running = {
        "phase": "Running",
        "podIP": "10.0.0.5",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    bp = BackendPod("default", "web", "uid-web", "eci-1", "Running", running)
    env.ctl.sync.ingest(bp)
    await env.reconcile(key)
    assert len(status_patches(env)) == 1
    env.refresh(key)
    env.ctl.sync.ingest(BackendPod("default", "web", "uid-web", "eci-1", "Running", copy.deepcopy(running)))
    await env.reconcile(key)
    await env.reconcile(key)
    assert len(status_patches(env)) == 1
    written = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert written["podIP"] == "10.0.0.5" and written["qosClass"] == "BestEffort"
    body = status_patches(env)[0][2]
    assert body["metadata"]["uid"] == "uid-web"


async def test_status_conflict_is_retried_with_a_fresh_read() -> None:
    """A 409 on the status write re-reads the pod and writes again."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    path = env.path(make_pod("web")) + "/status"
    env.kube.fail_next[("PATCH", path)] = KubeError(409, "Conflict", "changed")
    await env.reconcile(key)
    assert len(status_patches(env)) == 2
    assert ("GET", env.path(make_pod("web")), None) in env.kube.calls
    assert env.kube.objects[env.path(make_pod("web"))]["status"]["phase"] == "Running"


async def test_backend_events_are_mirrored_once() -> None:
    """Backend events become Kubernetes Events; the same event count again is not re-sent."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    ev = BackendEvent("Normal", "Pulled", "image pulled", 1, None, None)
    for _ in range(2):
        env.ctl.sync.ingest(
            BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[ev])
        )
        await env.reconcile(key)
    assert env.kube.reasons().count("Pulled") == 1


async def test_ephemeral_containers_are_refused_with_an_event_and_a_waiting_status() -> None:
    """kubectl debug adds an ephemeral container: one Warning per new name, and its status Waiting with the
    reason (so kubectl debug prints it instead of hanging); nothing is sent to the backend; not repeated."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    pod = make_pod("web")
    key = env.add(pod)
    await env.ready()
    await env.reconcile(key)
    pod = env.refresh(key)
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger-abc", "image": "busybox", "stdin": True, "tty": True}]
    env.add(pod)
    await env.reconcile(key)
    env.refresh(key)
    await env.reconcile(key)
    status = env.kube.objects[env.path(pod)]["status"]
    assert status["phase"] == "Running"  # the backend's status is kept
    [eph] = status["ephemeralContainerStatuses"]
    assert eph["name"] == "debugger-abc" and eph["image"] == "busybox" and eph["ready"] is False
    assert eph["state"]["waiting"]["reason"] == "EphemeralContainersNotSupported"
    assert "kubectl exec" in eph["state"]["waiting"]["message"]
    events = [e for e in env.kube.events() if e["reason"] == "EphemeralContainersNotSupported"]
    assert len(events) == 1 and events[0]["type"] == "Warning" and "'debugger-abc'" in events[0]["message"]
    writes = len(status_patches(env))
    # A second debug session adds another name: one more event, both statuses.
    pod = env.refresh(key)
    pod["spec"]["ephemeralContainers"].append({"name": "debugger-def", "image": "alpine"})
    env.add(pod)
    await env.reconcile(key)
    env.refresh(key)
    await env.reconcile(key)
    status = env.kube.objects[env.path(pod)]["status"]
    assert [s["name"] for s in status["ephemeralContainerStatuses"]] == ["debugger-abc", "debugger-def"]
    assert env.kube.reasons().count("EphemeralContainersNotSupported") == 2
    assert len(status_patches(env)) == writes + 1
    assert env.provider.actions("update") == [] and env.provider.actions("create") == []
    # After a daemon restart the status already says so: no second event for the same names.
    fresh = Env(kube=env.kube)
    fresh.provider.add_group("default", "web", "uid-web")
    fresh.add(env.kube.objects[env.path(pod)])
    await fresh.ready()
    await fresh.reconcile(key)
    assert env.kube.reasons().count("EphemeralContainersNotSupported") == 2


async def test_reconcile_works_from_the_trimmed_cached_pod() -> None:
    """A pod arriving with managedFields is cached without them, and is still created and given its
    status from that copy; the copy cached after the status write has none either."""
    env = Env()
    await env.ready()
    raw = make_pod("web")
    raw["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
    stored = env.kube.put(env.path(raw), raw)
    env.ctl.informer.apply_event({"type": "ADDED", "object": stored})
    key = "default/web"
    assert "managedFields" not in env.ctl.informer.cache[key]["metadata"]
    await env.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    env.ctl.sync.ingest(
        BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running", "podIP": "10.0.0.5"})
    )
    await env.reconcile(key)
    assert len(status_patches(env)) == 1
    cached = env.ctl.informer.cache[key]
    assert cached["status"]["podIP"] == "10.0.0.5" and "managedFields" not in cached["metadata"]
    await env.reconcile(key)
    assert len(status_patches(env)) == 1


async def test_held_groups_carry_no_events_and_mirroring_counts_by_digest() -> None:
    """Groups held per pod (ingested or adopted) keep no events; a mirrored event is remembered by a short
    digest, so the same count is not sent again but a higher count is."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    env.provider.groups["uid-web"].events = [BackendEvent("Normal", "Pulled", "image pulled", 1, None, None)]
    key = env.add(make_pod("web"))
    await env.ready()
    assert not hasattr(env.ctl.state.groups["uid-web"].group, "events")
    ev = BackendEvent("Normal", "Started", "container started", 1, None, None)
    bp = BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[ev])
    env.ctl.sync.ingest(bp)
    assert not hasattr(env.ctl.state.groups["uid-web"].group, "events")
    await env.reconcile(key)
    env.ctl.sync.ingest(BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[ev]))
    await env.reconcile(key)
    assert env.kube.reasons().count("Started") == 1
    again = BackendEvent("Normal", "Started", "container started", 2, None, None)
    env.ctl.sync.ingest(
        BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[again])
    )
    patches = len(env.kube.writes("PATCH")) - len(status_patches(env))
    await env.reconcile(key)
    # Mirrored again: the recorder bumps the existing Event's count.
    assert len(env.kube.writes("PATCH")) - len(status_patches(env)) == patches + 1
    marks = env.ctl.sync._mirrored["uid-web"]
    assert len(marks) == 1 and all(isinstance(m, bytes) and len(m) == 12 for m in marks)
