"""Unit tests of the pod controller against in-memory doubles of the API server and the backend."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.kube.fakes import FakeKube
from tests.pods.fakes import FakeProvider, make_pod
from vk_provider.errors import PermanentError, TransientError
from vk_provider.kube.client import KubeError
from vk_provider.kube.events import EventRecorder
from vk_provider.metrics import REGISTRY
from vk_provider.pods.controller import PodController, Requeue
from vk_provider.pods.resources import jwt_expiry
from vk_provider.provider import BackendEvent, BackendPod
from vk_provider.settings import PodsSettings


class Env:
    def __init__(self, vanish_grace: float = 0.0, kube: FakeKube | None = None, **settings: Any) -> None:
        self.kube = kube or FakeKube()
        self.provider = FakeProvider()
        self.recorder = EventRecorder(self.kube, host="vk")  # type: ignore[arg-type]
        opts = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "gc_min_age_seconds": 60.0}
        opts.update(settings)
        self.ctl = PodController(
            self.kube,  # type: ignore[arg-type]
            self.provider,
            self.recorder,
            PodsSettings(**opts),
            node_name="vk",
            delete_poll_max_seconds=0.01,
            vanish_grace_seconds=vanish_grace,
        )

    def path(self, pod: dict[str, Any]) -> str:
        m = pod["metadata"]
        return f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}"

    def add(self, pod: dict[str, Any]) -> str:
        stored = self.kube.put(self.path(pod), pod)
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        old = self.ctl.informer.cache.get(key)
        self.ctl.informer.cache[key] = stored
        self.ctl._on_pod_event("MODIFIED" if old else "ADDED", stored, old)
        return key

    def refresh(self, key: str) -> dict[str, Any]:
        """Feed the API server's current copy back through the watch, as a MODIFIED event would."""
        ns, name = key.split("/")
        obj = copy.deepcopy(self.kube.objects[f"/api/v1/namespaces/{ns}/pods/{name}"])
        self.ctl.informer.cache[key] = obj
        return obj

    def remove(self, key: str) -> None:
        obj = self.ctl.informer.cache.pop(key)
        self.ctl._on_pod_event("DELETED", obj, obj)

    async def ready(self) -> None:
        self.ctl.informer.synced.set()
        await self.ctl.adopt()


def status_patches(env: Env) -> list[Any]:
    return env.kube.writes("PATCH", "/status")


async def test_create_once_then_no_second_group() -> None:
    """A pod without a group gets exactly one create, a ProviderCreateSuccess event, and no second create."""
    env = Env()
    await env.ready()
    key = env.add(make_pod("web"))
    await env.ctl.reconcile(key)
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    assert env.kube.reasons() == ["ProviderCreateSuccess"]


async def test_adopted_group_is_never_created_again() -> None:
    """After a restart, a pod whose group already exists (by UID) is adopted, not created."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == []
    assert env.ctl.ready


async def test_status_written_only_on_change() -> None:
    """A backend status change is written once; the same status again writes nothing."""
    env = Env()
    await env.ready()
    key = env.add(make_pod("web"))
    await env.ctl.reconcile(key)
    running = {
        "phase": "Running",
        "podIP": "10.0.0.5",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    bp = BackendPod("default", "web", "uid-web", "eci-1", "Running", running)
    env.ctl.ingest(bp)
    await env.ctl.reconcile(key)
    assert len(status_patches(env)) == 1
    env.refresh(key)
    env.ctl.ingest(BackendPod("default", "web", "uid-web", "eci-1", "Running", copy.deepcopy(running)))
    await env.ctl.reconcile(key)
    await env.ctl.reconcile(key)
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
    await env.ctl.reconcile(key)
    assert len(status_patches(env)) == 2
    assert ("GET", env.path(make_pod("web")), None) in env.kube.calls
    assert env.kube.objects[env.path(make_pod("web"))]["status"]["phase"] == "Running"


async def test_mandatory_missing_config_map_blocks_create() -> None:
    """A required ConfigMap that is missing gives MandatoryConfigMapNotFound, no group, and a requeue."""
    env = Env()
    await env.ready()
    env_ref = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]
    key = env.add(make_pod("web", containers=[{"name": "main", "image": "busybox", "env": env_ref}]))
    with pytest.raises(Requeue):
        await env.ctl.reconcile(key)
    assert env.provider.actions("create") == []
    assert "MandatoryConfigMapNotFound" in env.kube.reasons()
    env.kube.put("/api/v1/namespaces/default/configmaps/cfg", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    assert env.provider.created_resources["uid-web"].config_maps == {"cfg": {"a": "1"}}


async def test_optional_missing_secret_still_starts() -> None:
    """An optional missing Secret gives OptionalSecretNotFound and the group is created."""
    env = Env()
    await env.ready()
    vols = [{"name": "s", "secret": {"secretName": "creds", "optional": True}}]
    key = env.add(make_pod("web", volumes=vols))
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    assert "OptionalSecretNotFound" in env.kube.reasons()
    assert env.provider.created_resources["uid-web"].secrets == {"creds": None}


async def test_service_links_and_tokens_are_resolved() -> None:
    """Service-link variables and projected service-account tokens reach PodResources."""
    env = Env()
    await env.ready()
    env.kube.put(
        "/api/v1/namespaces/default/services/my-db",
        {
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 5432, "protocol": "TCP"}]},
        },
    )
    vols = [
        {
            "name": "tok",
            "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}]},
        }
    ]
    key = env.add(make_pod("web", volumes=vols))
    await env.ctl.reconcile(key)
    res = env.provider.created_resources["uid-web"]
    assert res.service_env["MY_DB_SERVICE_HOST"] == "10.96.0.7"
    assert res.service_env["MY_DB_PORT_5432_TCP_ADDR"] == "10.96.0.7"
    assert res.tokens == {"tok/token": "tok-default"}
    assert "TokenNotRotated" in env.kube.reasons()  # 600 s is not extended by the API server


async def test_permanent_error_fails_the_pod_without_retry() -> None:
    """A permanent rejection marks the pod Failed with the reason, emits ProviderCreateFailed, and is not retried."""
    env = Env()
    await env.ready()
    env.provider.fail["create"] = [PermanentError("InvalidParameter: bad cpu")]
    key = env.add(make_pod("web"))
    await env.ctl.reconcile(key)
    env.refresh(key)
    await env.ctl.reconcile(key)
    status = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "ProviderFailed"
    assert "bad cpu" in status["message"]
    assert env.provider.actions("create") == ["uid-web"]
    assert "ProviderCreateFailed" in env.kube.reasons()


async def test_transient_error_is_retried_and_warned_after_max_retries() -> None:
    """Transient failures requeue with backoff; after max_retries a ReconcileRetrying Warning says so."""
    env = Env(max_retries=2, workers=1)
    await env.ready()
    env.provider.fail["create"] = [TransientError("503"), TransientError("503")]
    env.add(make_pod("web"))
    worker = asyncio.create_task(env.ctl.run_worker())
    try:
        async with asyncio.timeout(5):
            while env.provider.actions("create") != ["uid-web"] * 3:
                await asyncio.sleep(0.01)
            while "ReconcileRetrying" not in env.kube.reasons():
                await asyncio.sleep(0.01)
    finally:
        await env.ctl.drain()
        await worker
    assert "uid-web" in env.provider.groups


async def test_graceful_delete_waits_for_the_group() -> None:
    """deletionTimestamp: delete the group, keep the pod while it terminates, then DELETE grace 0 with the UID."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    pod = make_pod("web")
    key = env.add(pod)
    await env.ready()
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    env.add(pod)
    await env.ctl.reconcile(key)
    assert env.provider.actions("delete") == ["uid-web"]
    assert env.kube.writes("DELETE") == []
    del env.provider.groups["uid-web"]
    await env.ctl.reconcile(key)
    deletes = env.kube.writes("DELETE")
    assert len(deletes) == 1
    assert deletes[0][2]["gracePeriodSeconds"] == 0 and deletes[0][2]["preconditions"] == {"uid": "uid-web"}
    assert env.provider.actions("delete") == ["uid-web"]


async def test_pod_without_group_is_removed_at_once() -> None:
    """A deleting pod that never got a group is removed immediately, with no backend delete."""
    env = Env()
    await env.ready()
    pod = make_pod("web")
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    key = env.add(pod)
    await env.ctl.reconcile(key)
    assert len(env.kube.writes("DELETE")) == 1
    assert env.provider.actions("delete") == []


async def test_force_deleted_pod_loses_its_group() -> None:
    """A pod that vanished from the API while its group exists gets its group deleted."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.ctl.reconcile(key)
    env.remove(key)
    await env.ctl.reconcile(key)
    assert env.provider.actions("delete") == ["uid-web"]


async def test_gc_deletes_only_old_orphans() -> None:
    """GC deletes groups whose pod UID is not alive and older than gc_min_age; never a live pod's group."""
    env = Env()
    env.provider.add_group("default", "live", "uid-live", age=7200)
    env.provider.add_group("default", "old", "uid-old", age=7200)
    env.provider.add_group("default", "young", "uid-young", age=5)
    env.add(make_pod("live"))
    assert await env.ctl.gc_once() == 0  # not synced yet: GC must not run
    await env.ready()
    assert await env.ctl.gc_once() == 1
    assert env.provider.actions("delete_group") == ["eci-uid-old"]
    assert set(env.provider.groups) == {"uid-live", "uid-young"}


async def test_vanished_group_fails_the_pod_with_137() -> None:
    """A group that disappeared without our asking: pod Failed, containers exit 137, Warning event."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.ctl.reconcile(key)
    env.refresh(key)
    del env.provider.groups["uid-web"]
    await env.ctl.gc_once()
    await env.ctl.reconcile(key)
    status = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "ContainerGroupVanished"
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    assert "ContainerGroupVanished" in env.kube.reasons()
    env.refresh(key)
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == []


async def test_daemonset_pod_is_refused_loudly() -> None:
    """DaemonSet pods get a Warning event and a Pending status that says why; no group."""
    env = Env()
    await env.ready()
    pod = make_pod("ds")
    pod["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "x", "uid": "u", "apiVersion": "apps/v1"}]
    key = env.add(pod)
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == []
    assert "DaemonSetPodNotSupported" in env.kube.reasons()
    assert env.kube.objects[env.path(pod)]["status"]["reason"] == "DaemonSetPodNotSupported"


async def test_image_change_updates_the_group() -> None:
    """Changing a container image on a running pod calls update_pod once."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    pod = make_pod("web")
    key = env.add(pod)
    await env.ready()
    await env.ctl.reconcile(key)
    pod["spec"]["containers"][0]["image"] = "busybox:1.37"
    env.add(pod)
    await env.ctl.reconcile(key)
    await env.ctl.reconcile(key)
    assert env.provider.actions("update") == ["uid-web"]
    assert "ProviderUpdateSuccess" in env.kube.reasons()


async def test_backend_events_are_mirrored_once() -> None:
    """Backend events become Kubernetes Events; the same event count again is not re-sent."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    ev = BackendEvent("Normal", "Pulled", "image pulled", 1, None, None)
    for _ in range(2):
        env.ctl.ingest(BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[ev]))
        await env.ctl.reconcile(key)
    assert env.kube.reasons().count("Pulled") == 1


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"


def _token_volume(name: str, **source: Any) -> dict[str, Any]:
    return {"name": name, "projected": {"sources": [{"serviceAccountToken": {"path": "token", **source}}]}}


async def test_projected_tokens_are_never_rotated_and_short_ones_are_warned_about() -> None:
    """No token renewal (it would restart the group): a token the API server does not extend gets one
    TokenNotRotated Warning naming the file and its expiry; the automounted 3607 s token gets none."""
    env = Env()
    await env.ready()
    key = env.add(make_pod("auto", volumes=[_token_volume("kube-api-access-x", expirationSeconds=3607)]))
    await env.ctl.reconcile(key)
    key2 = env.add(make_pod("short", volumes=[_token_volume("tok", expirationSeconds=7200)]))
    await env.ctl.reconcile(key2)
    for uid in ("uid-auto", "uid-short"):
        env.provider.groups[uid].group_status = "Running"
        env.ctl.groups[uid].group.group_status = "Running"
    for _ in range(3):
        await env.ctl.reconcile(key)
        await env.ctl.reconcile(key2)
    assert env.provider.actions("update") == []
    posts = [c for c in env.kube.calls if c[0] == "POST" and c[1].endswith("/serviceaccounts/default/token")]
    assert [p[2]["spec"]["expirationSeconds"] for p in posts] == [3607, 7200]
    warnings = [e for e in env.kube.events() if e["reason"] == "TokenNotRotated"]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning" and warnings[0]["involvedObject"]["name"] == "short"
    msg = warnings[0]["message"]
    assert "tok/token (expirationSeconds 7200) expires at 2099-01-01T00:00:00Z" in msg
    assert "restart" in msg and "3607" in msg
    assert "ProviderUpdateSuccess" not in env.kube.reasons()


async def test_a_foreign_audience_token_is_warned_about_unless_the_jwt_was_extended() -> None:
    """3607 s with an audience is extended only if the API server accepts that audience: the JWT's exp tells."""
    env = Env()
    await env.ready()
    now = time.time()
    issued: dict[str, str] = {
        "year": _jwt({"exp": int(now + 365 * 86400)}),
        "hour": _jwt({"exp": int(now + 3607)}),
    }
    real_request = env.kube.request

    async def request(method: str, path: str, **kw: Any) -> dict[str, Any]:
        out = await real_request(method, path, **kw)
        if path.endswith("/token"):
            name = kw["body"]["spec"]["boundObjectRef"]["name"]
            out["status"] = {"token": issued[name], "expirationTimestamp": "2026-01-01T01:00:07Z"}
        return out

    env.kube.request = request  # type: ignore[method-assign]
    for name in issued:
        vols = [_token_volume("sts", expirationSeconds=3607, audience="sts.aliyuncs.com")]
        await env.ctl.reconcile(env.add(make_pod(name, volumes=vols)))
    warnings = [e for e in env.kube.events() if e["reason"] == "TokenNotRotated"]
    assert [w["involvedObject"]["name"] for w in warnings] == ["hour"]
    expected = datetime.fromtimestamp(int(now + 3607), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"sts/token (expirationSeconds 3607) expires at {expected}" in warnings[0]["message"]


def test_jwt_expiry_reads_the_claim_and_tolerates_garbage() -> None:
    assert jwt_expiry(_jwt({"exp": 1700000000})) == 1700000000.0
    for bad in ("", "tok-default", "a.b.c", "a.!!!.c", _jwt({"exp": "soon"}), _jwt({"exp": True})):
        assert jwt_expiry(bad) is None


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
        async with asyncio.timeout(5):
            while env.kube.reasons().count("MandatoryConfigMapNotFound") < 1 or "uid-b" not in env.provider.groups:
                assert not worker.done(), worker
                await asyncio.sleep(0.01)
            env.kube.put("/api/v1/namespaces/default/configmaps/cfg", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
            while "uid-a" not in env.provider.groups:
                assert not worker.done(), worker
                await asyncio.sleep(0.01)
    finally:
        await env.ctl.drain()
        await worker


async def test_a_just_created_group_missing_from_a_listing_is_not_vanished() -> None:
    """GC does not fail a pod whose group was created moments ago and is not in the listing yet."""
    env = Env(vanish_grace=60.0)
    await env.ready()
    key = env.add(make_pod("web"))
    await env.ctl.reconcile(key)
    del env.provider.groups["uid-web"]  # the listing does not show it yet
    await env.ctl.gc_once()
    await env.ctl.reconcile(key)
    assert env.kube.objects[env.path(make_pod("web"))]["status"]["phase"] == "Pending"
    assert "ContainerGroupVanished" not in env.kube.reasons()


async def test_adoption_failing_at_start_holds_creates_and_deletes_but_not_readiness() -> None:
    """ECI down at start: the controller is ready once the watch synced; until the listing succeeds no
    group is created or deleted and the GC does not run; then every pod is requeued and adopted once."""
    env = Env()
    env.provider.add_group("default", "old", "uid-old")
    env.provider.add_group("default", "gone", "uid-gone")  # its pod is force-deleted below
    env.provider.add_group("default", "leaving", "uid-leaving")
    eci_back = asyncio.Event()
    real_list = env.provider.list_pods

    async def list_pods() -> list[BackendPod]:
        if not eci_back.is_set():
            env.provider.calls.append(("list", ""))
            raise TransientError("ECI DescribeContainerGroups unreachable")
        return await real_list()

    env.provider.list_pods = list_pods  # type: ignore[method-assign]
    old = env.add(make_pod("old"))
    new = env.add(make_pod("new"))
    gone = env.add(make_pod("gone"))
    leaving_pod = make_pod("leaving")
    leaving_pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    leaving = env.add(leaving_pod)
    env.ctl.informer.synced.set()
    notified: list[tuple[str, str] | None] = []
    adopt = asyncio.create_task(env.ctl.adopt(notify=lambda: notified.append(env.ctl.adoption_pending())))
    try:
        async with asyncio.timeout(5):
            while env.provider.actions("list") == []:
                await asyncio.sleep(0.001)
        assert env.ctl.ready and not env.ctl.adopted.is_set()
        pending = env.ctl.adoption_pending()
        assert pending is not None and pending[0] == "failing" and "unreachable" in pending[1]
        assert REGISTRY.get_sample_value("vk_adoption_pending") == 1  # alertable, not only in the message
        env.remove(gone)
        for key in (old, new, gone, leaving):
            await env.ctl.reconcile(key)
        assert await env.ctl.gc_once() == 0
        assert env.provider.actions("create") == [] and env.provider.actions("delete") == []
        assert env.provider.actions("delete_group") == [] and env.kube.writes("DELETE") == []
        # A group the status stream reports meanwhile gets its status written: status work goes on.
        env.ctl.ingest(BackendPod("default", "old", "uid-old", "eci-uid-old", "Running", {"phase": "Running"}))
        await env.ctl.reconcile(old)
        assert env.kube.objects[env.path(make_pod("old"))]["status"]["phase"] == "Running"
        assert env.provider.actions("create") == [] and not env.ctl.adopted.is_set()
        eci_back.set()
        await adopt
    finally:
        adopt.cancel()
    assert env.ctl.adoption_pending() is None and notified[0] is not None and notified[-1] is None
    assert REGISTRY.get_sample_value("vk_adoption_pending") == 0
    assert len(env.ctl.queue) == 4  # every pod, and the force-deleted one, requeued
    for key in (old, new, gone, leaving):
        await env.ctl.reconcile(key)
    assert env.provider.actions("create") == ["uid-new"]  # never one for a pod that had a group
    assert sorted(env.provider.actions("delete")) == ["uid-gone", "uid-leaving"]
    assert env.ctl.groups["uid-old"].group.group_id == "eci-uid-old"


async def test_ephemeral_containers_are_refused_with_an_event_and_a_waiting_status() -> None:
    """kubectl debug adds an ephemeral container: one Warning per new name, and its status Waiting with the
    reason (so kubectl debug prints it instead of hanging); nothing is sent to the backend; not repeated."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    pod = make_pod("web")
    key = env.add(pod)
    await env.ready()
    await env.ctl.reconcile(key)
    pod = env.refresh(key)
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger-abc", "image": "busybox", "stdin": True, "tty": True}]
    env.add(pod)
    await env.ctl.reconcile(key)
    env.refresh(key)
    await env.ctl.reconcile(key)
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
    await env.ctl.reconcile(key)
    env.refresh(key)
    await env.ctl.reconcile(key)
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
    await fresh.ctl.reconcile(key)
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
    await env.ctl.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    env.ctl.ingest(
        BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running", "podIP": "10.0.0.5"})
    )
    await env.ctl.reconcile(key)
    assert len(status_patches(env)) == 1
    cached = env.ctl.informer.cache[key]
    assert cached["status"]["podIP"] == "10.0.0.5" and "managedFields" not in cached["metadata"]
    await env.ctl.reconcile(key)
    assert len(status_patches(env)) == 1


async def test_held_groups_carry_no_events_and_mirroring_counts_by_digest() -> None:
    """Groups held per pod (ingested or adopted) keep no events; a mirrored event is remembered by a short
    digest, so the same count is not sent again but a higher count is."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    env.provider.groups["uid-web"].events = [BackendEvent("Normal", "Pulled", "image pulled", 1, None, None)]
    key = env.add(make_pod("web"))
    await env.ready()
    assert env.ctl.groups["uid-web"].group.events == []
    ev = BackendEvent("Normal", "Started", "container started", 1, None, None)
    bp = BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[ev])
    env.ctl.ingest(bp)
    assert env.ctl.groups["uid-web"].group.events == []
    await env.ctl.reconcile(key)
    env.ctl.ingest(BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[ev]))
    await env.ctl.reconcile(key)
    assert env.kube.reasons().count("Started") == 1
    again = BackendEvent("Normal", "Started", "container started", 2, None, None)
    env.ctl.ingest(BackendPod("default", "web", "uid-web", "eci-1", "Running", {"phase": "Running"}, events=[again]))
    patches = len(env.kube.writes("PATCH")) - len(status_patches(env))
    await env.ctl.reconcile(key)
    # Mirrored again: the recorder bumps the existing Event's count.
    assert len(env.kube.writes("PATCH")) - len(status_patches(env)) == patches + 1
    marks = env.ctl._mirrored["uid-web"]
    assert len(marks) == 1 and all(isinstance(m, bytes) and len(m) == 12 for m in marks)
