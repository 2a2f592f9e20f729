"""Real processes (simulator process runtime): init container order, restart policies, exit codes, probes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import StackFactory, phase_is, running_ready

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def term(pod: dict[str, Any] | None, name: str = "main") -> dict[str, Any]:
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == name:
            return dict((cs.get("state") or {}).get("terminated") or {})
    return {}


async def test_init_containers_run_in_order(make_stack: StackFactory) -> None:
    """Init containers run one after another, in spec order, before the main container."""
    stack = await make_stack(runtime="process")
    await stack.create_pod(
        {
            "metadata": {"name": "init"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    container("first", "echo first >> /work/order", volumeMounts=[{"name": "w", "mountPath": "/work"}]),
                    container(
                        "second", "echo second >> /work/order", volumeMounts=[{"name": "w", "mountPath": "/work"}]
                    ),
                ],
                "containers": [
                    container("main", "cat /work/order", volumeMounts=[{"name": "w", "mountPath": "/work"}])
                ],
                "volumes": [{"name": "w", "emptyDir": {}}],
            },
        }
    )
    pod = await stack.wait_pod("init", phase_is("Succeeded"), timeout=30)
    assert pod is not None
    inits = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["first", "second"]
    assert all(s["state"]["terminated"]["exitCode"] == 0 for s in inits)
    assert (await stack.logs("init", "main")).split() == ["first", "second"]


async def test_restart_policies_and_exit_codes(make_stack: StackFactory) -> None:
    """Never keeps a failed exit code (Failed); OnFailure restarts a failing container; 0 with Never is Succeeded."""
    stack = await make_stack(runtime="process")
    await stack.create_pod(
        {"metadata": {"name": "fail"}, "spec": {"restartPolicy": "Never", "containers": [container("main", "exit 3")]}}
    )
    await stack.create_pod(
        {"metadata": {"name": "ok"}, "spec": {"restartPolicy": "Never", "containers": [container("main", "exit 0")]}}
    )
    await stack.create_pod(
        {
            "metadata": {"name": "retry"},
            "spec": {"restartPolicy": "OnFailure", "containers": [container("main", "exit 7")]},
        }
    )
    failed = await stack.wait_pod("fail", phase_is("Failed"), timeout=30)
    assert term(failed)["exitCode"] == 3
    ok = await stack.wait_pod("ok", phase_is("Succeeded"), timeout=30)
    assert term(ok)["exitCode"] == 0

    def restarted(p: dict[str, Any] | None) -> bool:
        statuses = ((p or {}).get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0].get("restartCount", 0) >= 1

    retry = await stack.wait_pod("retry", restarted, timeout=40)
    assert retry is not None and retry["status"]["phase"] in ("Running", "Pending")
    last = retry["status"]["containerStatuses"][0].get("lastState", {}).get("terminated") or {}
    assert last.get("exitCode") == 7


async def test_probes_drive_readiness(make_stack: StackFactory) -> None:
    """A passing readiness probe makes the pod Ready; a failing one keeps it Running but not Ready."""
    stack = await make_stack(runtime="process")
    probe_ok = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    probe_bad = {"exec": {"command": ["false"]}, "periodSeconds": 1}
    await stack.create_pod(
        {
            "metadata": {"name": "good"},
            "spec": {"containers": [container("main", "sleep 3600", readinessProbe=probe_ok)]},
        }
    )
    await stack.create_pod(
        {
            "metadata": {"name": "bad"},
            "spec": {"containers": [container("main", "sleep 3600", readinessProbe=probe_bad)]},
        }
    )
    await stack.wait_pod("good", running_ready, timeout=30)
    bad = await stack.wait_pod("bad", phase_is("Running"), timeout=30)
    assert bad is not None
    ready = {c["type"]: c["status"] for c in bad["status"].get("conditions") or []}
    assert ready.get("Ready") != "True"
    assert bad["status"]["containerStatuses"][0]["ready"] is False


async def test_failing_liveness_probe_restarts_the_container(make_stack: StackFactory) -> None:
    """A liveness probe that fails makes the container restart (restartCount grows, pod stays Running)."""
    stack = await make_stack(runtime="process")
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    await stack.create_pod(
        {"metadata": {"name": "live"}, "spec": {"containers": [container("main", "sleep 3600", livenessProbe=probe)]}}
    )

    def restarted(p: dict[str, Any] | None) -> bool:
        statuses = ((p or {}).get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0].get("restartCount", 0) >= 1

    pod = await stack.wait_pod("live", restarted, timeout=40)
    assert pod is not None and pod["status"]["phase"] == "Running"
