"""The in-memory Store: writes, resourceVersions, watches and the real server's deletion rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.store import Store


def _store() -> Store:
    s = Store(history=100, watch_buffer=5)
    s.create_now("namespaces", {"metadata": {"name": "default"}})
    return s


def _pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "img:1"}]},
    }


async def _bind(s: Store, name: str) -> None:
    def bind(p: dict[str, Any]) -> dict[str, Any]:
        p["spec"]["nodeName"] = "n1"
        return p

    await s.mutate("pods", "default", name, bind, subresource="binding")


async def test_resource_versions_are_global_and_increasing() -> None:
    """Every write across every type takes the next number of one counter; a no-op write keeps it."""
    s = _store()
    a = await s.create("pods", _pod("a"))
    b = await s.create("configmaps", {"metadata": {"name": "c", "namespace": "default"}})
    assert int(b["metadata"]["resourceVersion"]) == int(a["metadata"]["resourceVersion"]) + 1
    same = await s.update("configmaps", b)
    assert same["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    assert s.list("pods")[1] == s.resource_version


async def test_update_conflict_and_status_subresource() -> None:
    """A stale resourceVersion is 409 Conflict; a main write keeps status and a status write keeps spec."""
    s = _store()
    p = await s.create("pods", _pod("a"))
    p["status"] = {"phase": "Running"}
    p["metadata"]["labels"] = {"x": "1"}
    p2 = await s.update("pods", p)
    assert p2["status"]["phase"] == "Pending" and p2["metadata"]["labels"] == {"x": "1"}
    with pytest.raises(ApiError) as exc:
        await s.update("pods", p)
    assert exc.value.code == 409 and exc.value.reason == "Conflict"
    p2["spec"]["containers"][0]["image"] = "img:2"
    p2["status"] = {"phase": "Running"}
    p3 = await s.update("pods", p2, subresource="status")
    assert p3["status"]["phase"] == "Running" and p3["spec"]["containers"][0]["image"] == "img:1"


async def test_a_pod_status_write_keeps_metadata_but_not_owner_references() -> None:
    """As kube-apiserver's podStatusStrategy (tests/e2e/test_pod_status_writes.py holds on both tiers): a pod's
    status write keeps the labels and annotations sent, not ownerReferences."""
    s = _store()
    p = await s.create("pods", _pod("a"))
    p["metadata"]["annotations"] = {"k8s.aliyun.com/eci-instance-id": "eci-1"}
    p["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}]
    p["status"] = {"phase": "Running"}
    written = await s.update("pods", p, subresource="status")
    assert written["metadata"]["annotations"] == {"k8s.aliyun.com/eci-instance-id": "eci-1"}
    assert "ownerReferences" not in written["metadata"] and written["status"]["phase"] == "Running"


async def test_create_validation_and_defaults() -> None:
    """Bad names are 422 with causes; missing namespaces 404; pods get defaults and a computed qosClass."""
    s = _store()
    with pytest.raises(ApiError) as exc:
        await s.create("pods", _pod("Bad_Name"))
    assert exc.value.code == 422 and exc.value.details and exc.value.details["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiError) as exc:
        await s.create("configmaps", {"metadata": {"name": "x", "namespace": "ghost"}})
    assert exc.value.code == 404
    pod = _pod("g")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    created = await s.create("pods", pod)
    assert created["status"]["qosClass"] == "Guaranteed"
    assert created["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    pod = _pod("b")
    pod["spec"]["containers"][0]["image"] = "img"
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    created = await s.create("pods", pod)
    assert created["status"]["qosClass"] == "Burstable"
    assert created["spec"]["containers"][0]["imagePullPolicy"] == "Always"


async def test_graceful_deletion_rules() -> None:
    """Unbound pods go at once; bound pods wait with deletionTimestamp; grace may only shrink; grace 0 with the
    right UID removes; a wrong UID is 409; a negative grace becomes 1."""
    s = _store()
    await s.create("pods", _pod("unbound"))
    gone = await s.delete("pods", "default", "unbound")
    assert gone is not None and s.get("pods", "default", "unbound") is None
    p = await s.create("pods", _pod("bound"))
    await _bind(s, "bound")
    held = await s.delete("pods", "default", "bound")
    assert held is not None and held["metadata"]["deletionGracePeriodSeconds"] == 30
    again = await s.delete("pods", "default", "bound", grace_period_seconds=100)
    assert again is not None and again["metadata"]["deletionGracePeriodSeconds"] == 30
    shorter = await s.delete("pods", "default", "bound", grace_period_seconds=3)
    assert shorter is not None and shorter["metadata"]["deletionGracePeriodSeconds"] == 3
    with pytest.raises(ApiError) as exc:
        await s.delete("pods", "default", "bound", grace_period_seconds=0, uid_precondition="nope")
    assert exc.value.code == 409
    await s.delete("pods", "default", "bound", grace_period_seconds=0, uid_precondition=p["metadata"]["uid"])
    assert s.get("pods", "default", "bound") is None
    await s.create("pods", _pod("negative"))
    await _bind(s, "negative")
    held = await s.delete("pods", "default", "negative", grace_period_seconds=-5)
    assert held is not None and held["metadata"]["deletionGracePeriodSeconds"] == 1  # negative means 1


async def test_terminal_pod_goes_at_once_and_finalizers_hold() -> None:
    """A Succeeded pod is removed at once; finalizers keep an object until the last one is removed;
    Foreground/Orphan propagation never leaves a pod stuck."""
    s = _store()
    await s.create("pods", _pod("done"))
    await _bind(s, "done")

    def succeed(p: dict[str, Any]) -> dict[str, Any]:
        p["status"]["phase"] = "Succeeded"
        return p

    await s.mutate("pods", "default", "done", succeed, subresource="status")
    await s.delete("pods", "default", "done")
    assert s.get("pods", "default", "done") is None
    cm = {"metadata": {"name": "f", "namespace": "default", "finalizers": ["example.com/hold"]}}
    await s.create("configmaps", cm)
    held = await s.delete("configmaps", "default", "f")
    assert held is not None and held["metadata"]["deletionTimestamp"]

    def release(o: dict[str, Any]) -> dict[str, Any]:
        o["metadata"]["finalizers"] = []
        return o

    await s.mutate("configmaps", "default", "f", release)
    assert s.get("configmaps", "default", "f") is None
    for policy in ("Foreground", "Orphan"):
        await s.create("pods", _pod(f"p-{policy.lower()}"))
        await s.delete("pods", "default", f"p-{policy.lower()}", propagation_policy=policy)
        assert s.get("pods", "default", f"p-{policy.lower()}") is None


async def test_orphan_strips_owner_references() -> None:
    """Deleting an owner with Orphan propagation leaves dependents without the owner reference."""
    s = _store()
    owner = await s.create("configmaps", {"metadata": {"name": "owner", "namespace": "default"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await s.create("configmaps", {"metadata": {"name": "dep", "namespace": "default", "ownerReferences": [ref]}})
    await s.delete("configmaps", "default", "owner", propagation_policy="Orphan")
    dep = s.get("configmaps", "default", "dep")
    assert dep is not None and "ownerReferences" not in dep["metadata"]


async def test_watch_replays_from_version_and_maps_selector_transitions() -> None:
    """A watch from a version replays later events; with a selector, starting to match is ADDED and ceasing to
    match is DELETED, as the real server's filtered watch."""
    s = Store(history=100, watch_buffer=100)
    s.create_now("namespaces", {"metadata": {"name": "default"}})
    start = s.resource_version
    await s.create("pods", _pod("a", app="x"))

    def relabel(p: dict[str, Any]) -> dict[str, Any]:
        p["metadata"]["labels"] = {"app": "y"}
        return p

    await s.mutate("pods", "default", "a", relabel)
    await s.create("pods", _pod("b", app="y"))
    w = s.watch("pods", "default", resource_version=start, label_selector="app=x")
    got = [await w.get(timeout=1) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got if e] == [("ADDED", "a"), ("DELETED", "a")]
    assert await w.get(timeout=0.05) is None
    await w.aclose()
    all_w = s.watch("pods", resource_version="0")
    names = [(await all_w.get(timeout=1) or {})["object"]["metadata"]["name"] for _ in range(2)]
    assert names == ["a", "b"]
    await all_w.aclose()
    assert not s.events.watchers


async def test_watch_too_old_and_overflow_give_410() -> None:
    """A version older than the kept history is 410 at once; a watcher whose buffer overflows gets 410 on its
    next read, and other watchers are unaffected."""
    s = Store(history=3, watch_buffer=5)
    s.create_now("namespaces", {"metadata": {"name": "default"}})
    slow = s.watch("configmaps", resource_version=s.resource_version)
    fast = s.watch("configmaps", resource_version=s.resource_version)
    seen: list[str] = []

    async def drain() -> None:
        async for ev in fast:
            seen.append(ev["object"]["metadata"]["name"])
            if len(seen) == 10:
                return

    task = asyncio.create_task(drain())
    for i in range(10):
        await s.create("configmaps", {"metadata": {"name": f"c{i}", "namespace": "default"}})
        await asyncio.sleep(0)
    await asyncio.wait_for(task, 2)
    assert seen == [f"c{i}" for i in range(10)]
    with pytest.raises(ApiError) as exc:
        await slow.get(timeout=1)
    assert exc.value.code == 410
    with pytest.raises(ApiError) as exc:
        s.watch("configmaps", resource_version="2")
    assert exc.value.code == 410
    await fast.aclose()


async def test_namespace_deletion_removes_its_objects() -> None:
    """Deleting a namespace deletes its objects; it stays Terminating while a bound pod waits for its kubelet, and
    creating in a terminating namespace is forbidden."""
    s = _store()
    s.create_now("namespaces", {"metadata": {"name": "team"}})
    await s.create("configmaps", {"metadata": {"name": "c", "namespace": "team"}})
    pod = _pod("p")
    pod["metadata"]["namespace"] = "team"
    created = await s.create("pods", pod)

    def bind(p: dict[str, Any]) -> dict[str, Any]:
        p["spec"]["nodeName"] = "n1"
        return p

    await s.mutate("pods", "team", "p", bind, subresource="binding")
    ns = await s.delete("namespaces", None, "team")
    assert ns is not None and ns["status"]["phase"] == "Terminating"
    assert s.get("configmaps", "team", "c") is None
    with pytest.raises(ApiError) as exc:
        await s.create("configmaps", {"metadata": {"name": "d", "namespace": "team"}})
    assert exc.value.code == 403
    await s.delete("pods", "team", "p", grace_period_seconds=0, uid_precondition=created["metadata"]["uid"])
    assert s.get("namespaces", None, "team") is None


async def test_list_pages_and_bad_continue() -> None:
    """list_page splits a list with continue tokens; a garbled token is 400."""
    s = _store()
    for i in range(5):
        await s.create("configmaps", {"metadata": {"name": f"c{i}", "namespace": "default"}})
    items, _, token = s.list_page("configmaps", "default", limit=2)
    assert [i["metadata"]["name"] for i in items] == ["c0", "c1"] and token
    items, _, token = s.list_page("configmaps", "default", limit=10, continue_token=token)
    assert [i["metadata"]["name"] for i in items] == ["c2", "c3", "c4"] and token is None
    with pytest.raises(ApiError) as exc:
        s.list_page("configmaps", continue_token="!!!")
    assert exc.value.code == 400


def test_pod_gets_its_nodes_topology_labels_on_create_and_binding() -> None:
    """PodTopologyLabels (v1.36): region and zone only, copied when the pod is created with a nodeName or bound, never
    replacing the pod's own label."""
    s = _store()
    node_labels = {
        "topology.kubernetes.io/region": "r1",
        "topology.kubernetes.io/zone": "z1",
        "topology.kubernetes.io/other": "x",
        "failure-domain.beta.kubernetes.io/zone": "old",
    }
    s.create_now("nodes", {"metadata": {"name": "n1", "labels": node_labels}})
    direct = _pod("direct", app="a")
    direct["spec"]["nodeName"] = "n1"
    assert s.create_now("pods", direct)["metadata"]["labels"] == {
        "app": "a",
        "topology.kubernetes.io/region": "r1",
        "topology.kubernetes.io/zone": "z1",
    }
    s.create_now("pods", _pod("later", **{"topology.kubernetes.io/zone": "mine"}))
    assert s.get("pods", "default", "later")["metadata"]["labels"] == {"topology.kubernetes.io/zone": "mine"}  # type: ignore[index]

    def bind(p: dict[str, Any]) -> dict[str, Any]:
        p["spec"]["nodeName"] = "n1"
        return p

    bound = s.mutate_now("pods", "default", "later", bind, subresource="binding")
    assert bound["metadata"]["labels"] == {"topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": "mine"}
    # A pod bound to a node the store does not know gets nothing (as the plugin ignores NotFound).
    ghost = _pod("ghost")
    ghost["spec"]["nodeName"] = "nowhere"
    assert s.create_now("pods", ghost)["metadata"]["labels"] == {}


def test_precondition_failures_in_the_real_wording() -> None:
    """As kube-apiserver v1.36.3: a delete names the kind (and group), an update reports the storage error."""
    s = _store()
    s.create_now("pods", _pod("p"))
    uid = s.get("pods", "default", "p")["metadata"]["uid"]  # type: ignore[index]
    with pytest.raises(ApiError) as exc:
        s.delete_now("pods", "default", "p", uid_precondition="u-1")
    assert exc.value.code == 409
    assert exc.value.message == (
        f'Operation cannot be fulfilled on Pod "p": the UID in the precondition (u-1) does not match the UID in '
        f"record ({uid}). The object might have been deleted and then recreated"
    )
    assert exc.value.details == {"name": "p", "kind": "Pod"}
    s.create_now("jobs.batch", {"metadata": {"name": "j", "namespace": "default"}, "spec": {"template": {"spec": {}}}})
    rv = s.get("jobs.batch", "default", "j")["metadata"]["resourceVersion"]  # type: ignore[index]
    with pytest.raises(ApiError) as exc:
        s.delete_now("jobs.batch", "default", "j", resource_version_precondition="1")
    assert exc.value.message == (
        f'Operation cannot be fulfilled on Job.batch "j": the ResourceVersion in the precondition (1) does not match '
        f"the ResourceVersion in record ({rv}). The object might have been modified"
    )
    assert exc.value.details == {"name": "j", "kind": "Job", "group": "batch"}
    with pytest.raises(ApiError) as exc:
        s.update_now("pods", {**_pod("p"), "metadata": {"name": "p", "namespace": "default", "uid": "u-1"}})
    assert exc.value.message == (
        'Operation cannot be fulfilled on pods "p": StorageError: invalid object, Code: 4, Key: '
        "/registry/pods/default/p, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: "
        f"u-1, UID in object meta: {uid}"
    )
    assert exc.value.details == {"name": "p", "kind": "pods"}
