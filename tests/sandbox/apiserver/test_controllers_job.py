"""The Job controller: parallelism, completions, backoffLimit, status and the Complete/Failed conditions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubectl import Kubectl
from tests.sandbox.apiserver.test_controllers_replicaset import StandInKubelet, until
from vk_sandbox.apiserver.controllers.job import plan_job
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.store import Store


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}, **spec},
    }


def job_status(store: Store, name: str) -> dict[str, Any]:
    j = store.get("jobs.batch", "default", name)
    assert j is not None
    return j.get("status") or {}


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == ctype), None)


def test_plan_job_counts() -> None:
    """Pods to start never exceed parallelism or the completions still needed; outcomes follow the counts."""

    def pods(*phases: str) -> list[dict[str, Any]]:
        return [{"metadata": {}, "status": {"phase": p}} for p in phases]

    spec = {"spec": {"parallelism": 2, "completions": 3, "backoffLimit": 1}}
    assert plan_job(spec, []) == (2, None)
    assert plan_job(spec, pods("Succeeded", "Succeeded", "Running")) == (0, None)
    assert plan_job(spec, pods("Succeeded", "Succeeded")) == (1, None)
    assert plan_job(spec, pods("Succeeded", "Succeeded", "Succeeded")) == (0, "Complete")
    assert plan_job(spec, pods("Failed", "Failed")) == (0, "Failed")
    work_queue = {"spec": {"parallelism": 2, "completions": None}}
    assert plan_job(work_queue, []) == (2, None)
    assert plan_job(work_queue, pods("Succeeded", "Running")) == (0, None)
    assert plan_job(work_queue, pods("Succeeded", "Succeeded")) == (0, "Complete")


async def test_job_runs_to_completion_with_bounded_parallelism(server: SandboxAPIServer) -> None:
    """completions 3, parallelism 2: never more than 2 active, 3 pods succeed, then Complete with completionTime."""
    store = server.store
    most_active = [0]
    peak_watch = True

    async def watch_active() -> None:
        while peak_watch:
            pods = store.list("pods", "default", label_selector="job-name=work")[0]
            active = [p for p in pods if p.get("status", {}).get("phase") in (None, "Pending", "Running")]
            most_active[0] = max(most_active[0], len(active))
            await asyncio.sleep(0)

    async with StandInKubelet(store, outcome=lambda pod: "Succeeded"):
        watcher = asyncio.create_task(watch_active())
        created = store.create_now("jobs.batch", job("work", parallelism=2, completions=3))
        await until(lambda: condition(job_status(store, "work"), "Complete"), timeout=10)
        peak_watch = False
        await watcher
    status = job_status(store, "work")
    assert status["succeeded"] == 3
    assert status.get("active", 0) == 0
    assert "failed" not in status
    assert status["startTime"] and status["completionTime"]
    complete = condition(status, "Complete")
    assert complete is not None and complete["status"] == "True" and complete["reason"] == "CompletionsReached"
    assert most_active[0] <= 2
    pods = store.list("pods", "default", label_selector="job-name=work")[0]
    assert len(pods) == 3
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert labels["batch.kubernetes.io/controller-uid"] == created["metadata"]["uid"]
        assert labels["batch.kubernetes.io/job-name"] == "work"
        assert pod["spec"]["restartPolicy"] == "Never"


async def test_job_fails_after_backoff_limit(server: SandboxAPIServer) -> None:
    """Every pod fails: after backoffLimit + 1 failures the Job is Failed (BackoffLimitExceeded) and stops."""
    store = server.store
    async with StandInKubelet(store, outcome=lambda pod: "Failed"):
        store.create_now("jobs.batch", job("doomed", backoffLimit=1))
        await until(lambda: condition(job_status(store, "doomed"), "Failed"), timeout=10)
        status = job_status(store, "doomed")
        assert status["failed"] == 2
        failed = condition(status, "Failed")
        assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
        assert failed["message"] == "Job has reached the specified backoff limit"
        # No more pods are started after the verdict (let the controller run a few more passes).
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert len(store.list("pods", "default", label_selector="job-name=doomed")[0]) == 2


@pytest.mark.kubectl
async def test_kubectl_wait_for_job_complete(server: SandboxAPIServer, kubectl_env: dict[str, str]) -> None:
    """`kubectl wait --for=condition=complete job/x` returns once the Job completes."""
    store = server.store
    async with StandInKubelet(store, outcome=lambda pod: "Succeeded"):
        store.create_now("jobs.batch", job("quick", completions=2, parallelism=2))
        kubectl = Kubectl(kubectl_env, server.kubeconfig_path)
        out = await kubectl.ok("wait", "--for=condition=complete", "job/quick", "--timeout=30s", timeout=60)
        assert "job.batch/quick condition met" in out
