"""The Deployment controller: template hash, rolling replacement, status, and the real kubectl scale/rollout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubectl import Kubectl
from tests.sandbox.apiserver.test_controllers_replicaset import StandInKubelet, until
from vk_sandbox.apiserver.controllers.deployment import (
    HASH_LABEL,
    resolve_int_or_percent,
    rolling_targets,
    template_hash,
)
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.store import Store


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


def deployment(name: str, replicas: int, image: str = "nginx:1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def live_pods(store: Store, app: str) -> list[dict[str, Any]]:
    pods = store.list("pods", "default", label_selector=f"app={app}")[0]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def dep_status(store: Store, name: str) -> dict[str, Any]:
    d = store.get("deployments.apps", "default", name)
    assert d is not None
    return d.get("status") or {}


def test_template_hash_is_stable_and_name_safe() -> None:
    """Equal templates hash equally (key order aside); the hash uses only the real safe alphabet."""
    a = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    b = {"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"app": "x"}}}
    assert template_hash(a) == template_hash(b)
    assert template_hash(a) != template_hash(a, collision_count=1)
    assert set(template_hash(a)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_surge_and_unavailable_rounding() -> None:
    """Percentages round up for maxSurge and down for maxUnavailable, as the real controller."""
    assert resolve_int_or_percent("25%", 10, round_up=True) == 3
    assert resolve_int_or_percent("25%", 10, round_up=False) == 2
    assert resolve_int_or_percent(2, 10, round_up=False) == 2
    assert resolve_int_or_percent(None, 4, round_up=True) == 1


def test_rolling_step_respects_surge_and_availability() -> None:
    """One step: the new set grows within maxSurge; old pods go only while desired - maxUnavailable stay available."""
    d = deployment("web", 4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    new = {"metadata": {"name": "new"}, "spec": {"replicas": 0}, "status": {}}
    old = {"metadata": {"name": "old"}, "spec": {"replicas": 4}, "status": {"replicas": 4, "availableReplicas": 4}}
    assert rolling_targets(d, new, [old]) == {"new": 1, "old": 4}
    new_ready = {"metadata": {"name": "new"}, "spec": {"replicas": 1}, "status": {"availableReplicas": 1}}
    assert rolling_targets(d, new_ready, [old]) == {"new": 1, "old": 3}
    recreate = deployment("web", 4, strategy={"type": "Recreate"})
    assert rolling_targets(recreate, new, [old]) == {"new": 0, "old": 0}


async def test_rollout_replaces_every_pod_and_reports_complete(server: SandboxAPIServer) -> None:
    """A template change makes a new ReplicaSet; old pods are replaced, and status shows the finished rollout."""
    store = server.store
    async with StandInKubelet(store):
        d = store.create_now("deployments.apps", deployment("web", 3))
        first_hash = template_hash(d["spec"]["template"])
        await until(lambda: dep_status(store, "web").get("availableReplicas") == 3)
        pods = live_pods(store, "web")
        assert {p["metadata"]["labels"][HASH_LABEL] for p in pods} == {first_hash}
        rs = store.get("replicasets.apps", "default", f"web-{first_hash}")
        assert rs is not None
        assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: first_hash}

        def new_image(o: dict[str, Any]) -> dict[str, Any]:
            o["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
            return o

        d2 = await store.mutate("deployments.apps", "default", "web", new_image)
        second_hash = template_hash(d2["spec"]["template"])
        assert second_hash != first_hash

        def finished() -> bool:
            st = dep_status(store, "web")
            pods = live_pods(store, "web")
            return (
                st.get("observedGeneration") == d2["metadata"]["generation"]
                and st.get("updatedReplicas") == 3
                and st.get("replicas") == 3
                and st.get("availableReplicas") == 3
                and len(pods) == 3
                and all(p["metadata"]["labels"][HASH_LABEL] == second_hash for p in pods)
            )

        await until(finished, timeout=10)
        old_rs = store.get("replicasets.apps", "default", f"web-{first_hash}")
        assert old_rs is not None and old_rs["spec"]["replicas"] == 0
        new_rs = store.get("replicasets.apps", "default", f"web-{second_hash}")
        assert new_rs is not None and new_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        conditions = {c["type"]: c for c in dep_status(store, "web")["conditions"]}
        assert conditions["Available"]["status"] == "True"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert conditions["Progressing"]["message"] == f'ReplicaSet "web-{second_hash}" has successfully progressed.'


async def test_rollout_never_drops_below_availability(server: SandboxAPIServer) -> None:
    """With maxUnavailable 0, available pods never fall below the desired count during a rollout."""
    store = server.store
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    async with StandInKubelet(store):
        store.create_now("deployments.apps", deployment("web", 2, **spec))
        await until(lambda: dep_status(store, "web").get("availableReplicas") == 2)
        lowest = [2]
        watching = True

        async def observe() -> None:
            while watching:
                ready = [
                    p
                    for p in live_pods(store, "web")
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
                ]
                lowest[0] = min(lowest[0], len(ready))
                await asyncio.sleep(0)

        observer = asyncio.create_task(observe())

        def new_image(o: dict[str, Any]) -> dict[str, Any]:
            o["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
            return o

        await store.mutate("deployments.apps", "default", "web", new_image)
        await until(
            lambda: (
                (s := dep_status(store, "web")).get("updatedReplicas") == 2
                and s.get("replicas") == 2
                and s.get("availableReplicas") == 2
            ),
            timeout=10,
        )
        watching = False
        await observer
        assert lowest[0] >= 2


@pytest.mark.kubectl
async def test_kubectl_scale_and_rollout_status(server: SandboxAPIServer, kubectl_env: dict[str, str]) -> None:
    """The real kubectl: `scale deployment --replicas=4` is honoured and `rollout status` reports success."""
    store = server.store

    kubectl = Kubectl(kubectl_env, server.kubeconfig_path)

    async with StandInKubelet(store):
        store.create_now("deployments.apps", deployment("web", 1))
        out = await kubectl.ok("scale", "deployment/web", "--replicas=4", timeout=60)
        assert "deployment.apps/web scaled" in out
        out = await kubectl.ok("rollout", "status", "deployment/web", "--timeout=30s", timeout=60)
        assert 'deployment "web" successfully rolled out' in out
        assert len(live_pods(store, "web")) == 4
        assert dep_status(store, "web")["availableReplicas"] == 4


@pytest.mark.kubectl
async def test_kubectl_set_image_and_rollout_undo(server: SandboxAPIServer, kubectl_env: dict[str, str]) -> None:
    """`kubectl set image` rolls out revision 2; `kubectl rollout undo` brings revision 1's template back as 3."""
    store = server.store

    async def kubectl(*args: str) -> str:
        return await Kubectl(kubectl_env, server.kubeconfig_path).ok(*args, timeout=60)

    def images() -> set[str]:
        return {p["spec"]["containers"][0]["image"] for p in live_pods(store, "web")}

    async with StandInKubelet(store):
        first = store.create_now("deployments.apps", deployment("web", 2))
        await kubectl("rollout", "status", "deployment/web", "--timeout=30s")
        await kubectl("set", "image", "deployment/web", "c=nginx:2")
        await kubectl("rollout", "status", "deployment/web", "--timeout=30s")
        await until(lambda: images() == {"nginx:2"} and len(live_pods(store, "web")) == 2)
        await kubectl("rollout", "undo", "deployment/web")
        await kubectl("rollout", "status", "deployment/web", "--timeout=30s")
        await until(lambda: images() == {"nginx:1"} and len(live_pods(store, "web")) == 2)
        old_rs = store.get("replicasets.apps", "default", f"web-{template_hash(first['spec']['template'])}")
        assert old_rs is not None
        assert old_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert old_rs["spec"]["replicas"] == 2
        assert len(store.list("replicasets.apps", "default")[0]) == 2  # no third ReplicaSet for the same template
