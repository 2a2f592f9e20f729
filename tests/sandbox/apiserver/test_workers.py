"""Worker nodes run by the hollow kubelet, scheduled by capacity, through the real kubectl and the official client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.sandbox.apiserver.conftest import Kubectl, until
from vk_provider import cli
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.workers import WorkerSpec, exit_plan

UNSCHEDULABLE = (
    "0/2 nodes are available: 2 Insufficient cpu. no new claims to deallocate, "
    "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    """Two 2-CPU workers, controllers on, a short lease grace so heartbeats are visible quickly."""
    async with SandboxAPIServer(
        directory=tmp_path / "api", workers=WorkerSpec(count=2), node_lease_grace_seconds=4
    ) as srv:
        yield srv


@pytest.fixture
def kc(cluster: SandboxAPIServer, kubectl_env: dict[str, str]) -> Kubectl:
    return Kubectl(kubectl_env, cluster.kubeconfig_path)


def _client(srv: SandboxAPIServer) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(srv.kubeconfig_path), client_configuration=cfg)
    return kubernetes.client.ApiClient(cfg)


def deployment(name: str, replicas: int, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "resources": {"requests": {"cpu": cpu}}}]},
            },
        },
    }


def pods(srv: SandboxAPIServer, app: str) -> list[dict[str, Any]]:
    return [p for p in srv.store.all_objects("pods") if (p["metadata"].get("labels") or {}).get("app") == app]


def pending(srv: SandboxAPIServer, app: str) -> list[dict[str, Any]]:
    return [p for p in pods(srv, app) if not p["spec"].get("nodeName")]


def running(srv: SandboxAPIServer, app: str) -> list[dict[str, Any]]:
    return [p for p in pods(srv, app) if (p.get("status") or {}).get("phase") == "Running"]


async def test_workers_show_capacity_and_allocated_resources(cluster: SandboxAPIServer, kc: Kubectl) -> None:
    """kubectl lists the Ready workers with capacity and allocatable; describe shows what their pods request."""
    out = json.loads(await kc.ok("get", "nodes", "-o", "json"))
    nodes = {n["metadata"]["name"]: n for n in out["items"]}
    assert sorted(nodes) == ["sandbox-worker-1", "sandbox-worker-2"]
    for node in nodes.values():
        assert node["status"]["capacity"] == {"cpu": "2", "memory": "4Gi", "pods": "20", "ephemeral-storage": "20Gi"}
        assert node["status"]["allocatable"] == node["status"]["capacity"]
        assert not node["spec"].get("taints")
    table = await kc.ok("get", "nodes")
    assert "sandbox-worker-1   Ready" in table and "sandbox-worker-2   Ready" in table
    # Leases are renewed (every grace/4 = 1 s here), so the node lifecycle controller keeps them Ready.
    lease = cluster.store.get("leases.coordination.k8s.io", "kube-node-lease", "sandbox-worker-1")
    assert lease is not None
    first = lease["spec"]["renewTime"]
    await until(
        lambda: (
            cluster.store.get("leases.coordination.k8s.io", "kube-node-lease", "sandbox-worker-1")["spec"][  # type: ignore[index]
                "renewTime"
            ]
            != first
        ),
        what="lease renewal",
    )
    await kc.ok("apply", "-f", "-", stdin=json.dumps(deployment("web", 3, "500m")).encode())
    await until(lambda: len(running(cluster, "web")) == 3, what="3 running pods")
    described = await kc.ok("describe", "node", "sandbox-worker-1")
    assert "Allocated resources:" in described
    on_one = sum(1 for p in running(cluster, "web") if p["spec"]["nodeName"] == "sandbox-worker-1")
    milli = on_one * 500
    cpu = str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"  # as kubectl prints a quantity
    assert re.search(rf"\n  cpu\s+{cpu} \({on_one * 25}%\)\s+0 \(0%\)\n", described), described
    assert re.search(rf"Non-terminated Pods:\s+\({on_one} in total\)", described)


async def test_ten_half_cpu_pods_on_two_workers_leave_two_pending(cluster: SandboxAPIServer, kc: Kubectl) -> None:
    """10 x 500m on 2 x 2 CPU: 8 run, exactly 2 are Unschedulable with the real message and a FailedScheduling
    event; deleting a running pod lets one of the pending ones schedule."""
    await kc.ok("apply", "-f", "-", stdin=json.dumps(deployment("burst", 10, "500m")).encode())
    await until(lambda: len(running(cluster, "burst")) == 8 and len(pending(cluster, "burst")) == 2, what="8 + 2")
    waiting = await until(
        lambda: (
            all(
                c.get("reason") == "Unschedulable"
                for p in pending(cluster, "burst")
                for c in p["status"].get("conditions") or []
                if c["type"] == "PodScheduled"
            )
            and pending(cluster, "burst")
        ),
        what="Unschedulable conditions",
    )
    for p in waiting:
        cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", UNSCHEDULABLE)
    name = waiting[0]["metadata"]["name"]
    events = await kc.ok("get", "events", "--field-selector", f"involvedObject.name={name},reason=FailedScheduling")
    assert "Warning" in events and "Insufficient cpu" in events
    with _client(cluster) as api:
        listed = await asyncio.to_thread(
            kubernetes.client.CoreV1Api(api).list_namespaced_pod, "default", field_selector="status.phase=Pending"
        )
    assert sorted(p.metadata.name for p in listed.items) == sorted(p["metadata"]["name"] for p in waiting)
    assert all(p.status.conditions[-1].reason == "Unschedulable" for p in listed.items)

    victim = running(cluster, "burst")[0]["metadata"]["name"]
    started = time.monotonic()
    await kc.ok("delete", "pod", victim, "--grace-period=1")
    assert time.monotonic() - started < 10
    was_pending = {p["metadata"]["name"] for p in waiting}
    await until(
        lambda: any(p["metadata"]["name"] in was_pending and p["spec"].get("nodeName") for p in pods(cluster, "burst")),
        what="a pending pod scheduled",
    )
    # The ReplicaSet's replacement is the one left waiting now: still 8 running, 2 pending.
    await until(lambda: len(running(cluster, "burst")) == 8 and len(pending(cluster, "burst")) == 2, what="8 + 2")


async def test_a_toleration_added_to_a_pending_pod_reschedules_it(cluster: SandboxAPIServer, kc: Kubectl) -> None:
    """A taint keeps a pod off a worker; adding a toleration to the pending pod retries it at once."""
    await kc.ok("taint", "node", "sandbox-worker-1", "dedicated=gpu:NoSchedule")
    await kc.ok("cordon", "sandbox-worker-2")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pod).encode())
    message = (
        "0/2 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable. "
        "no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )

    def condition() -> dict[str, Any] | None:
        p = cluster.store.get("pods", "default", "p") or {}
        return next((c for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), None)

    await until(lambda: (condition() or {}).get("message") == message, what="the taint message")
    patch = json.dumps({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}})
    await kc.ok("patch", "pod", "p", "-p", patch)
    await until(lambda: (cluster.store.get("pods", "default", "p") or {}).get("spec", {}).get("nodeName"), what="bind")
    assert cluster.store.get("pods", "default", "p")["spec"]["nodeName"] == "sandbox-worker-1"  # type: ignore[index]


async def test_hollow_kubelet_runs_pods_and_jobs(cluster: SandboxAPIServer, kc: Kubectl) -> None:
    """A worker pod goes ContainerCreating -> Running with an IP from its node's range; a Job whose container
    sleeps 1 s completes; logs and exec against a worker pod answer an error at once."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
            "containers": [{"name": "c", "image": "nginx"}],
        },
    }
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pod).encode())
    out = await kc.ok("wait", "--for=condition=Ready", "pod/web", "--timeout=20s")
    assert "condition met" in out
    got = cluster.store.get("pods", "default", "web")
    assert got is not None
    index = got["spec"]["nodeName"].rsplit("-", 1)[1]
    assert got["status"]["podIP"].startswith(f"10.244.{index}.")
    assert got["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert got["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"

    started = time.monotonic()
    rc, _, err = await kc.run("logs", "web", timeout=15)
    assert rc != 0 and "hollow sandbox worker" in err and "connection refused" in err
    rc, _, err = await kc.run("exec", "web", "--", "true", timeout=15)
    assert rc != 0 and "hollow sandbox worker" in err
    assert time.monotonic() - started < 10

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once", "namespace": "default"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 1"]}],
                }
            }
        },
    }
    await kc.ok("apply", "-f", "-", stdin=json.dumps(job).encode())
    await kc.ok("wait", "--for=condition=Complete", "job/once", "--timeout=30s", timeout=40)
    done = [p for p in cluster.store.all_objects("pods") if p["metadata"]["name"].startswith("once-")]
    assert done and done[0]["status"]["phase"] == "Succeeded"
    assert done[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_exit_plan_rules() -> None:
    assert exit_plan({"command": ["true"]}) == (0.0, 0)
    assert exit_plan({"command": ["/bin/false"]}) == (0.0, 1)
    assert exit_plan({"command": ["sleep"], "args": ["2.5"]}) == (2.5, 0)
    assert exit_plan({"command": ["sh", "-c", "exit 3"]}) == (0.0, 3)
    assert exit_plan({"command": ["sh", "-c", "sleep infinity"]}) is None
    assert exit_plan({"command": ["nginx"]}) is None
    assert exit_plan({}) is None


async def test_no_workers_keeps_only_registered_nodes(tmp_path: Path) -> None:
    async with SandboxAPIServer(directory=tmp_path / "api", workers=WorkerSpec(count=0)) as srv:
        assert srv.store.all_objects("nodes") == []


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--worker-cpu", "lots"], "worker-cpu"),
        (["--workers", "-1"], "workers"),
        (["--worker-pods", "0"], "worker-pods"),
    ],
)
def test_bad_worker_flags_are_one_line_and_exit_2(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sandbox", "apiserver", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_container_exits_end_or_restart_the_pod_by_restart_policy() -> None:
    """Never: the pod ends Succeeded or Failed by exit codes; OnFailure restarts only a failed container."""
    from vk_sandbox.apiserver import workers as w

    def running_pod(policy: str) -> dict[str, Any]:
        pod = {
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "x"}]},
        }
        return w._running(w._creating(pod, "sandbox-worker-1", "10.244.1.2"))

    ok = w._exited(running_pod("Never"), "c", (0.0, 0))
    assert ok is not None and ok["status"]["phase"] == "Succeeded"
    failed = w._exited(running_pod("Never"), "c", (0.0, 2))
    assert failed is not None and failed["status"]["phase"] == "Failed"
    assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"
    retry = w._exited(running_pod("OnFailure"), "c", (0.0, 1))
    assert retry is not None and retry["status"]["phase"] == "Running" and w._restarts(retry, "c")
    again = w._restarted(retry, "c")
    assert again is not None and again["status"]["containerStatuses"][0]["restartCount"] == 1
    assert again["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    done = w._exited(running_pod("OnFailure"), "c", (0.0, 0))
    assert done is not None and done["status"]["phase"] == "Succeeded" and not w._restarts(done, "c")
