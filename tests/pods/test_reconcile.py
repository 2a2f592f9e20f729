"""Reconcile: create, update and delete a pod's group, the events and failures that go with them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.pods.fakes import make_pod
from tests.pods.harness import Env, jwt
from vk_provider.errors import PermanentError
from vk_provider.pods.reconcile import Requeue


async def test_create_once_then_no_second_group() -> None:
    """A pod without a group gets exactly one create, a ProviderCreateSuccess event, and no second create."""
    env = Env()
    await env.ready()
    key = env.add(make_pod("web"))
    await env.reconcile(key)
    await env.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    assert env.kube.reasons() == ["ProviderCreateSuccess"]


async def test_mandatory_missing_config_map_blocks_create() -> None:
    """A required ConfigMap that is missing gives MandatoryConfigMapNotFound, no group, and a requeue."""
    env = Env()
    await env.ready()
    env_ref = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]
    key = env.add(make_pod("web", containers=[{"name": "main", "image": "busybox", "env": env_ref}]))
    with pytest.raises(Requeue):
        await env.reconcile(key)
    assert env.provider.actions("create") == []
    assert "MandatoryConfigMapNotFound" in env.kube.reasons()
    env.kube.put("/api/v1/namespaces/default/configmaps/cfg", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    await env.reconcile(key)
    assert env.provider.actions("create") == ["uid-web"]
    assert env.provider.created_resources["uid-web"].config_maps == {"cfg": {"a": "1"}}


async def test_a_burst_shares_reads_and_a_pod_seen_after_a_change_gets_the_new_value() -> None:
    """Pods the watch brought before a ConfigMap read share it (one GET for five creates); a pod seen after the
    ConfigMap changed gets the new value, though the earlier read is still kept."""
    env = Env()
    await env.ready()
    path = "/api/v1/namespaces/default/configmaps/cfg"
    env.kube.put(path, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    vols = [{"name": "c", "configMap": {"name": "cfg"}}]
    keys = [env.add(make_pod(f"p{i}", volumes=vols)) for i in range(5)]
    for key in keys:
        await env.reconcile(key)
    assert len(env.kube.writes("GET", "/configmaps/cfg")) == 1
    assert [env.provider.created_resources[f"uid-p{i}"].config_maps for i in range(5)] == [{"cfg": {"a": "1"}}] * 5
    env.kube.objects[path]["data"] = {"a": "2"}
    await env.reconcile(env.add(make_pod("late", volumes=vols)))
    assert env.provider.created_resources["uid-late"].config_maps == {"cfg": {"a": "2"}}
    assert len(env.kube.writes("GET", "/configmaps/cfg")) == 2


async def test_optional_missing_secret_still_starts() -> None:
    """An optional missing Secret gives OptionalSecretNotFound and the group is created."""
    env = Env()
    await env.ready()
    vols = [{"name": "s", "secret": {"secretName": "creds", "optional": True}}]
    key = env.add(make_pod("web", volumes=vols))
    await env.reconcile(key)
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
    await env.reconcile(key)
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
    await env.reconcile(key)
    env.refresh(key)
    await env.reconcile(key)
    status = env.kube.objects[env.path(make_pod("web"))]["status"]
    assert status["phase"] == "Failed" and status["reason"] == "ProviderFailed"
    assert "bad cpu" in status["message"]
    assert env.provider.actions("create") == ["uid-web"]
    assert "ProviderCreateFailed" in env.kube.reasons()


async def test_graceful_delete_waits_for_the_group() -> None:
    """deletionTimestamp: delete the group, keep the pod while it terminates, then DELETE grace 0 with the UID."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    pod = make_pod("web")
    key = env.add(pod)
    await env.ready()
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    env.add(pod)
    await env.reconcile(key)
    assert env.provider.actions("delete") == ["uid-web"]
    assert env.kube.writes("DELETE") == []
    del env.provider.groups["uid-web"]
    await env.reconcile(key)
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
    await env.reconcile(key)
    assert len(env.kube.writes("DELETE")) == 1
    assert env.provider.actions("delete") == []


async def test_force_deleted_pod_loses_its_group() -> None:
    """A pod that vanished from the API while its group exists gets its group deleted."""
    env = Env()
    env.provider.add_group("default", "web", "uid-web")
    key = env.add(make_pod("web"))
    await env.ready()
    await env.reconcile(key)
    env.remove(key)
    await env.reconcile(key)
    assert env.provider.actions("delete") == ["uid-web"]


async def test_daemonset_pod_is_refused_loudly() -> None:
    """DaemonSet pods get a Warning event and a Pending status that says why; no group."""
    env = Env()
    await env.ready()
    pod = make_pod("ds")
    pod["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "x", "uid": "u", "apiVersion": "apps/v1"}]
    key = env.add(pod)
    await env.reconcile(key)
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
    await env.reconcile(key)
    pod["spec"]["containers"][0]["image"] = "busybox:1.37"
    env.add(pod)
    await env.reconcile(key)
    await env.reconcile(key)
    assert env.provider.actions("update") == ["uid-web"]
    assert "ProviderUpdateSuccess" in env.kube.reasons()


def _token_volume(name: str, **source: Any) -> dict[str, Any]:
    return {"name": name, "projected": {"sources": [{"serviceAccountToken": {"path": "token", **source}}]}}


async def test_projected_tokens_are_never_rotated_and_short_ones_are_warned_about() -> None:
    """No token renewal (it would restart the group): a token the API server does not extend gets one
    TokenNotRotated Warning naming the file and its expiry; the automounted 3607 s token gets none."""
    env = Env()
    await env.ready()
    key = env.add(make_pod("auto", volumes=[_token_volume("kube-api-access-x", expirationSeconds=3607)]))
    await env.reconcile(key)
    key2 = env.add(make_pod("short", volumes=[_token_volume("tok", expirationSeconds=7200)]))
    await env.reconcile(key2)
    for uid in ("uid-auto", "uid-short"):
        env.provider.groups[uid].group_status = "Running"
        env.ctl.state.groups[uid].group.group_status = "Running"
    for _ in range(3):
        await env.reconcile(key)
        await env.reconcile(key2)
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
        "year": jwt({"exp": int(now + 365 * 86400)}),
        "hour": jwt({"exp": int(now + 3607)}),
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
        await env.reconcile(env.add(make_pod(name, volumes=vols)))
    warnings = [e for e in env.kube.events() if e["reason"] == "TokenNotRotated"]
    assert [w["involvedObject"]["name"] for w in warnings] == ["hour"]
    expected = datetime.fromtimestamp(int(now + 3607), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"sts/token (expirationSeconds 3607) expires at {expected}" in warnings[0]["message"]
