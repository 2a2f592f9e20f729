"""Shared controller pieces: the keyed queue, the informer cache, conditions, guards and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.waiting import eventually
from vk_provider.aio import Backoff
from vk_sandbox.apiserver.controllers._common import (
    Informer,
    KeyQueue,
    guarded,
    restarting,
    set_condition,
)
from vk_sandbox.apiserver.controllers.matching import selector_matches
from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.server import SandboxAPIServer


def obj(name: str, rv: int, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": str(rv)}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True}]
    return {"metadata": meta}


async def test_key_queue_deduplicates_and_bounds_batches() -> None:
    """Keys queued twice are reconciled once; a batch never exceeds its limit; an empty wait times out."""
    q: KeyQueue[str] = KeyQueue()
    q.add_all(["a", "b", "a", "c"])
    assert await q.take(2) == ["a", "b"]
    assert await q.take(10) == ["c"]
    assert await q.take(10, timeout=0.01) == []
    waiter = asyncio.create_task(q.take())
    await asyncio.sleep(0)
    q.add("d")
    assert await asyncio.wait_for(waiter, timeout=1) == ["d"]


def test_informer_keeps_the_newest_version_and_indexes_owners() -> None:
    """Older events never overwrite newer writes, deletions leave tombstones, and owners index their objects."""
    inf = Informer(store=None, key="pods")  # type: ignore[arg-type]  # apply() never touches the store
    assert inf.apply("ADDED", obj("p", 5, owner="rs-1"))
    assert not inf.apply("MODIFIED", obj("p", 4, owner="rs-2"))  # stale event after our own write
    assert [o["metadata"]["resourceVersion"] for o in inf.owned("rs-1")] == ["5"]
    assert inf.apply("MODIFIED", obj("p", 7, owner="rs-2"))
    assert inf.owned("rs-1") == [] and len(inf.owned("rs-2")) == 1
    assert inf.apply("DELETED", obj("p", 8, owner="rs-2"))
    assert not inf.apply("ADDED", obj("p", 7, owner="rs-2"))  # a late event does not resurrect it
    assert inf.objects == {} and inf.owned("rs-2") == []
    assert inf.apply("ADDED", obj("p", 9))  # a new object of the same name is welcome


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    """Same status/reason/message: no change; a new status: new lastTransitionTime; empty reason is omitted."""
    conds: list[dict[str, Any]] = []
    assert set_condition(conds, "Ready", "True", "", "")
    assert "reason" not in conds[0] and "message" not in conds[0]
    assert not set_condition(conds, "Ready", "True", "", "")
    conds[0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    assert set_condition(conds, "Ready", "True", "Again", "same status")
    assert conds[0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert set_condition(conds, "Ready", "False", "Broken", "down")
    assert conds[0]["lastTransitionTime"] != "2000-01-01T00:00:00Z"


def test_label_selector_expressions() -> None:
    """matchLabels and matchExpressions are ANDed; an empty selector matches everything."""
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}
    assert selector_matches(sel, {"app": "web"})
    assert not selector_matches(sel, {"app": "web", "tier": "db"})
    assert not selector_matches(sel, {"app": "api"})
    assert selector_matches({}, {"anything": "x"})


def test_guarded_swallows_and_reports_errors() -> None:
    """A reconcile error (API or bug) yields None instead of escaping; a result passes through."""

    def boom() -> int:
        raise KeyError("spec")

    def conflict() -> int:
        raise ApiError(409, "Conflict", "changed")

    assert guarded("test", "k", boom) is None
    assert guarded("test", "k", conflict) is None
    assert guarded("test", "k", lambda: 3) == 3


async def test_restarting_controller_survives_a_crash(tmp_path: Path) -> None:
    """A controller that crashes is started again after the backoff."""
    runs: list[int] = []
    second = asyncio.Event()

    async def flaky(ctx: Any) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        second.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(restarting(flaky, backoff=Backoff(base=0.01, cap=0.01, jitter=False))(None))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(second.wait(), timeout=5)
        assert len(runs) == 2
        assert restarting(flaky).__name__ == "flaky"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_controllers_keep_running_after_a_bad_object(tmp_path: Path) -> None:
    """A Deployment the controller cannot handle does not stop it from reconciling the next one."""
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        store = srv.store
        bad = {
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "bad"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": "not-an-object"},
                "template": {
                    "metadata": {"labels": {"app": "bad"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        }
        store.create_now("deployments.apps", bad)  # accepted by the server; its rollingUpdate breaks the reconcile
        good = dict(bad, metadata={"name": "good", "namespace": "default"})
        good["spec"] = dict(bad["spec"], strategy={"type": "RollingUpdate"}, selector={"matchLabels": {"app": "good"}})
        good["spec"]["template"] = {
            "metadata": {"labels": {"app": "good"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
        store.create_now("deployments.apps", good)
        await eventually(
            lambda: store.list("replicasets.apps", "default", label_selector="app=good")[0],
            timeout=5,
            interval=0.01,
            what="a ReplicaSet for the good Deployment",
        )
