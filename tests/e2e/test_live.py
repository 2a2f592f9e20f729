"""The live tier's runner (tests/e2e/live.py) against the test bed: the missing-configuration line, the time limit
killing a stuck pytest, and the cleanup through the product's ECIClient (the simulator) and the API server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import live
from tests.e2e.conftest import StackFactory
from tests.waiting import eventually
from vk_provider.eci import names
from vk_provider.eci.client import ECIClient
from vk_provider.eci.listing import describe_by_tags

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

ROOT = Path(__file__).resolve().parents[2]


def test_without_configuration_one_line_and_exit_0() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VK_LIVE_") and k != "KUBECONFIG"}
    env["VK_LIVE_REGION"] = "cn-hangzhou"
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.live"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "e2e-live: not run: set KUBECONFIG, VK_LIVE_ACCESS_KEY_ID, VK_LIVE_ACCESS_KEY_SECRET, VK_LIVE_VSWITCH_IDS, "
        "VK_LIVE_SECURITY_GROUP_ID (docs/operations.md#live-end-to-end-tests)"
    ]


def test_the_time_limit_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A stuck pytest (here a shell that sleeps, with a child that sleeps too) is killed at the limit, child and all."""
    pidfile = tmp_path / "child.pid"
    stuck = ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; trap '' TERM; wait"]  # ignores TERM: needs the KILL
    started = time.monotonic()
    status = live.run_pytest(stuck, os.environ, limit_seconds=1)
    took = time.monotonic() - started
    assert status == live.TIMED_OUT
    assert took < 1 + live.KILL_GRACE_SECONDS + 10, took
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_pytest_within_the_limit_keeps_its_status() -> None:
    assert live.run_pytest([sys.executable, "-c", "raise SystemExit(3)"], os.environ, limit_seconds=60) == 3


async def create_group(client: ECIClient, name: str, cluster: str) -> str:
    params = {
        "ContainerGroupName": name,
        "Container.1.Name": "main",
        "Container.1.Image": "busybox",
        "SecurityGroupId": "sg-e2e",
        "VSwitchId": "vsw-e2e",
        "Tag.1.Key": names.TAG_CLUSTER,
        "Tag.1.Value": cluster,
    }
    return str((await client.call("CreateContainerGroup", params))["ContainerGroupId"])


async def test_cleanup_deletes_the_runs_groups_node_and_namespaces_and_nothing_else(make_stack: StackFactory) -> None:
    run, other = "vk-e2e-0123abcd", "vk-e2e-ffffffff"
    stack = await make_stack(daemon=False)
    client = ECIClient(stack.settings.eci)
    try:
        mine = [await create_group(client, f"mine-{i}", run) for i in range(25)]  # more than one page (20)
        theirs = await create_group(client, "theirs", other)
        assert sorted(await live.delete_tagged_groups(stack.settings.eci, run)) == sorted(mine)

        async def none_left() -> bool:  # a deleted group is Terminating for a moment, then gone
            return not await describe_by_tags(client.call, {"Tag.1.Key": names.TAG_CLUSTER, "Tag.1.Value": run})

        await eventually(none_left, timeout=30, interval=0.2, what=f"the groups tagged {run} to be gone")
        kept = await describe_by_tags(client.call, {"Tag.1.Key": names.TAG_CLUSTER, "Tag.1.Value": other})
        assert [g.ContainerGroupId for g in kept] == [theirs]
    finally:
        await client.close()

    for name in (run, other):
        await stack.create("/api/v1/nodes", {"metadata": {"name": name}})
        labels = {live.RUN_LABEL: name}
        await stack.create("/api/v1/namespaces", {"metadata": {"name": f"{name}-1", "labels": labels}})
        pod = {"metadata": {"name": "p"}, "spec": {"nodeName": name, "containers": [{"name": "a", "image": "busybox"}]}}
        await stack.create_pod(pod, ns=f"{name}-1")
    assert await live.delete_node_and_pods(stack.kube, run) == [f"{run}-1/p"]
    assert await stack.kube.get_or_none(f"/api/v1/nodes/{run}") is None
    assert await stack.kube.get_or_none(f"/api/v1/nodes/{other}") is not None
    assert await stack.pod("p", ns=f"{other}-1") is not None

    gone = await stack.kube.get_or_none(f"/api/v1/namespaces/{run}-1")
    assert gone is None or gone["status"]["phase"] == "Terminating"
    assert await stack.kube.get_or_none(f"/api/v1/namespaces/{other}-1") is not None


async def test_the_runner_against_the_test_bed(make_stack: StackFactory) -> None:
    """`python -m tests.e2e.live` with the test bed standing in for the cloud (VK_LIVE_ENDPOINT is the simulator):
    one live-tier test passes, the simulator's tests are skipped, and the cleanup leaves no group, node or namespace."""
    stack = await make_stack(daemon=False)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VK_")},
        "KUBECONFIG": str(stack.apiserver.kubeconfig_path),
        "VK_LIVE_REGION": stack.sim.region,
        "VK_LIVE_ACCESS_KEY_ID": stack.sim.access_key_id,
        "VK_LIVE_ACCESS_KEY_SECRET": stack.sim.access_key_secret,
        "VK_LIVE_VSWITCH_IDS": "vsw-e2e",
        "VK_LIVE_SECURITY_GROUP_ID": "sg-e2e",
        "VK_LIVE_ENDPOINT": stack.sim.endpoint,
        "VK_LIVE_TIME_LIMIT_MINUTES": "3",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.e2e.live",
        "-rs",
        "-k",
        "becomes_ready or test_live",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), timeout=240))[0].decode()
    assert proc.returncode == 0, out
    run = out.split("e2e-live: run ", 1)[1].split(",", 1)[0]
    assert "1 passed, 5 skipped" in out and "needs the ECI simulator (live tier)" in out, out
    assert f"e2e-live: cleanup: deleted node {run}, its namespaces and 0 pod(s) bound to it" in out, out
    assert stack.sim.calls.get("CreateContainerGroup") == 1
    assert not stack.sim.engine.groups or all(g.status == "Terminating" for g in stack.sim.engine.groups.values())
    assert await stack.kube.get_or_none(f"/api/v1/nodes/{run}") is None
