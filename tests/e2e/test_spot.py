"""Spot interruptions, the pending deadline and the write-backs, end to end: sandbox API server (with its
ReplicaSet controller), ECI simulator (its ``spot_reclaim`` fault) and the daemon.

The sandbox API server has ``pods/eviction`` (it deletes the pod gracefully and answers 201) but no
PodDisruptionBudget yet: the budget part of issue 14's check (``minAvailable: 4``, 429s until a replacement
is Ready) is written below and skips itself until the sandbox serves policy/v1 poddisruptionbudgets (issue
11); meanwhile the unit tests of pods/disruption.py cover the 429 retries against the real API's answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from tests.e2e.conftest import NODE, Stack, StackFactory, deployment, running_ready
from tests.sandbox.apiserver.conftest import Kubectl
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

SPOT = {"k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo"}
TOLERATE = [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}]


def spot_deployment(name: str, replicas: int) -> dict[str, Any]:
    spec = {"nodeName": NODE, "tolerations": TOLERATE, "containers": [{"name": "app", "image": "nginx:1.25"}]}
    return deployment(name, replicas, spec, SPOT)


async def pods_of(stack: Stack, app: str) -> list[dict[str, Any]]:
    out = await stack.kube.get("/api/v1/namespaces/default/pods", query={"labelSelector": f"app={app}"})
    return list(out.get("items") or [])


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    return await eventually(check, timeout=timeout, interval=0.1, what=what)


def group_of(pod: dict[str, Any]) -> str:
    return str((pod["metadata"].get("annotations") or {}).get("k8s.aliyun.com/eci-instance-id") or "")


async def test_reclaimed_replicas_are_replaced_before_the_release(make_stack: StackFactory) -> None:
    """A 5-replica spot Deployment, 3 groups reclaimed with a 20 s notice: each old pod gets SpotInterruption
    (naming the release time) and DisruptionTarget, is evicted and gone, and 5 replicas are Running again
    well before the release. Every pod carries its group id, billed spec and zone."""
    stack = await make_stack(**{"eci.spot_notice_poll_interval_seconds": 1.0})
    await stack.create("/apis/apps/v1/namespaces/default/deployments", spot_deployment("spot", 5))

    async def five_placed() -> list[dict[str, Any]] | None:
        pods = [p for p in await pods_of(stack, "spot") if not p["metadata"].get("deletionTimestamp")]
        ok = len(pods) == 5 and all(running_ready(p) and group_of(p) for p in pods)
        return pods if ok else None

    pods = await until(five_placed, "5 running spot replicas with write-backs")
    ann = pods[0]["metadata"]["annotations"]
    assert ann["k8s.aliyun.com/eci-instance-spec"] == "2-4Gi" and ann["k8s.aliyun.com/eci-instance-zone"]
    victims = pods[:3]
    started = time.monotonic()
    await stack.sim.set_faults({"spot_reclaim": {"group_ids": [group_of(p) for p in victims], "notice_seconds": 20}})

    for p in victims:
        ev = await stack.wait_event(p["metadata"]["name"], "SpotInterruption", contains=group_of(p))
        assert ev["type"] == "Warning" and "Z (Spot ECI will be released in 20 seconds.)" in ev["message"]
    victim_names = {p["metadata"]["name"] for p in victims}

    async def replaced() -> bool:
        pods = await pods_of(stack, "spot")
        live = [p for p in pods if p["metadata"]["name"] not in victim_names and running_ready(p)]
        return len(live) == 5 and not any(p["metadata"]["name"] in victim_names for p in pods)

    await until(replaced, "5 new replicas running and the evicted pods gone", timeout=19)
    took = time.monotonic() - started
    assert took < 20, f"replacement took {took:.1f}s, not before the release"
    for name in victim_names:
        reasons = [e.get("reason") for e in await stack.events(name)]
        assert "SpotEvicted" in reasons and "ProviderDeleteSuccess" in reasons


async def test_report_only_pod_is_not_evicted_and_fails_bid_failed(
    make_stack: StackFactory, kubectl_env: dict[str, str]
) -> None:
    """vk-eci.io/spot-interruption: report: warned and marked, not evicted; at the release it ends Failed with
    reason BidFailed naming the group, and `kubectl describe` tells the story."""
    stack = await make_stack(**{"eci.spot_notice_poll_interval_seconds": 1.0})
    annotations = {**SPOT, "vk-eci.io/spot-interruption": "report"}
    await stack.create_pod(
        {
            "metadata": {"name": "keep", "annotations": annotations},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]},
        }
    )
    pod = await stack.wait_pod("keep", lambda p: running_ready(p) and bool(p and group_of(p)))
    assert pod is not None
    group = group_of(pod)
    await stack.sim.set_faults({"spot_reclaim": {"group_ids": [group], "notice_seconds": 4}})
    done = await stack.wait_pod("keep", lambda p: (p or {}).get("status", {}).get("phase") == "Failed")
    assert done is not None and done["status"]["reason"] == "BidFailed" and group in done["status"]["message"]
    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert conditions["DisruptionTarget"]["reason"] == "SpotInterruption"
    reasons = [e.get("reason") for e in await stack.events("keep")]
    assert "SpotInterruption" in reasons and "SpotEvicted" not in reasons
    out = await Kubectl(kubectl_env, stack.apiserver.kubeconfig_path).ok("describe", "pod", "keep")
    assert "BidFailed" in out and "SpotInterruption" in out and "DisruptionTarget" in out


async def test_a_pod_pending_past_its_deadline_fails_and_its_group_is_deleted(make_stack: StackFactory) -> None:
    """An image that never pulls: after the (shortened) deadline the pod is Failed/PendingTimeout with ECI's
    last words (ErrImagePull), and its group is gone from the simulator."""
    stack = await make_stack(**{"pods.max_pending_minutes": 0.05, "pods.pending_check_interval_seconds": 0.5})
    await stack.create_pod(
        {"metadata": {"name": "stuck"}, "spec": {"containers": [{"name": "a", "image": "nonexistent/x"}]}}
    )
    done = await stack.wait_pod("stuck", lambda p: (p or {}).get("status", {}).get("phase") == "Failed")
    assert done is not None and done["status"]["reason"] == "PendingTimeout"
    assert "ErrImagePull" in done["status"]["message"]
    await stack.wait_event("stuck", "PendingTimeout")

    async def group_gone() -> bool:
        return not stack.sim.engine.groups

    await until(group_gone, "the pending group deleted")


async def test_a_disruption_budget_paces_the_evictions(make_stack: StackFactory) -> None:
    """Issue 14's check with a PodDisruptionBudget (minAvailable 4 of 5), 3 groups reclaimed with a 20 s notice:
    the evictions the budget refuses (429) are retried, so never fewer than 4 replicas are ready, and all three
    are replaced before the release. Needs PodDisruptionBudget and eviction-with-PDB in the sandbox API server
    (issue 11); skipped until it serves policy/v1 poddisruptionbudgets."""
    stack = await make_stack(**{"eci.spot_notice_poll_interval_seconds": 1.0, "pods.eviction_retry_seconds": 0.5})
    discovery = await stack.kube.get_or_none("/apis/policy/v1")
    if not any(r.get("name") == "poddisruptionbudgets" for r in (discovery or {}).get("resources") or []):
        pytest.skip("the sandbox API server has no PodDisruptionBudget yet (issue 11)")
    await stack.create("/apis/apps/v1/namespaces/default/deployments", spot_deployment("pdb", 5))
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "pdb"},
        "spec": {"minAvailable": 4, "selector": {"matchLabels": {"app": "pdb"}}},
    }
    await stack.create("/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb)

    async def ready_pods() -> list[dict[str, Any]]:
        return [
            p for p in await pods_of(stack, "pdb") if running_ready(p) and not p["metadata"].get("deletionTimestamp")
        ]

    async def five_placed() -> list[dict[str, Any]] | None:
        pods = await ready_pods()
        return pods if len(pods) == 5 and all(group_of(p) for p in pods) else None

    async def budget_allows_one() -> bool:
        got = await stack.kube.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/pdb")
        return (got.get("status") or {}).get("disruptionsAllowed") == 1

    victims = (await until(five_placed, "5 running replicas"))[:3]
    await until(budget_allows_one, "the budget allowing one disruption")
    names = {p["metadata"]["name"] for p in victims}
    # Replacements take 2 s to start: with the fast profile one could be Ready before the next eviction was
    # sent, and then the budget, though kept, refuses nothing (seen once in CI).
    stack.sim.engine.latency = dataclasses.replace(stack.sim.engine.latency, pull=2.0)
    started = time.monotonic()
    await stack.sim.set_faults({"spot_reclaim": {"group_ids": [group_of(p) for p in victims], "notice_seconds": 20}})
    fewest = 5
    while time.monotonic() - started < 19:  # watches the whole window: the budget must hold throughout
        pods = await pods_of(stack, "pdb")
        ready = await ready_pods()
        fewest = min(fewest, len(ready))
        if len(ready) == 5 and not names & {p["metadata"]["name"] for p in pods}:
            break
        await asyncio.sleep(0.1)
    assert fewest >= 4, f"the budget was broken: {fewest} ready replicas at one point"
    assert len(await ready_pods()) == 5 and time.monotonic() - started < 20
    blocked = [n for n in names if "SpotEvictionBlocked" in [e.get("reason") for e in await stack.events(n)]]
    assert blocked, "no eviction was ever refused by the budget"
