"""Crash safety: kill -9 of the daemon in the middle of a 200-pod burst, then a restart; and a restart
while ECI is unreachable.

The daemon runs as a real subprocess (`vk-provider run`), configured through VK_* variables, so the
kill is a real SIGKILL with calls in flight. Afterwards every pod must have exactly one group (the
ClientToken and the adoption of existing groups prevent duplicates) and every pod must be Running.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NODE, StackFactory, daemon_flags, running_ready
from tests.e2e.processes import daemon_env, groups_by_uid, node_ready, start_daemon, stop_daemon
from tests.waiting import eventually
from vk_provider.app import Daemon
from vk_provider.settings import load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

PODS = 200


async def test_kill_9_mid_burst_then_restart_gives_one_group_per_pod(make_stack: StackFactory, tmp_path: Path) -> None:
    """SIGKILL during a 200-pod burst, restart: one group per pod, all Running; SIGTERM then deletes nothing."""
    stack = await make_stack(runtime="virtual", daemon=False)
    env = daemon_env(stack, tmp_path)
    log = tmp_path / "daemon.log"
    proc = await start_daemon(env, log)
    procs = [proc]
    try:
        await eventually(lambda: node_ready(stack), timeout=30, interval=0.2, what="the node to be Ready")
        sem = asyncio.Semaphore(25)

        async def create(i: int) -> None:
            async with sem:
                await stack.create_pod(
                    {
                        "metadata": {"name": f"burst-{i:03d}"},
                        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]},
                    }
                )

        creator = asyncio.gather(*(create(i) for i in range(PODS)))

        async def some_groups() -> bool:
            return sum(groups_by_uid(stack).values()) >= 40

        await eventually(some_groups, timeout=30, interval=0.2, what="the first groups")
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        killed_at = sum(groups_by_uid(stack).values())
        await creator
        assert killed_at < PODS, "the burst finished before the kill; the test proved nothing"

        proc = await start_daemon(env, log)
        procs.append(proc)

        async def all_running() -> bool:
            pods = await stack.kube.get("/api/v1/namespaces/default/pods")
            phases = Counter((p.get("status") or {}).get("phase") for p in pods.get("items") or [])
            return phases.get("Running", 0) == PODS

        await eventually(all_running, timeout=90, interval=0.2, what=f"{PODS} pods Running after the restart")
        pods = (await stack.kube.get("/api/v1/namespaces/default/pods"))["items"]
        uids = {p["metadata"]["uid"] for p in pods}
        live = groups_by_uid(stack)
        assert set(live) == uids
        duplicates = {uid: n for uid, n in live.items() if n != 1}
        assert duplicates == {}

        # SIGTERM is a graceful stop: exit code 0 and not a single group deleted.
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 40) == 0
        assert groups_by_uid(stack) == live
    finally:
        for p in procs:
            await stop_daemon(p)


def node_ready_message(node: dict[str, Any] | None) -> str | None:
    """The Ready condition's message when Ready is True, else None."""
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return str(c.get("message") or "")
    return None


async def test_eci_down_at_daemon_start_node_ready_then_adopts_without_duplicates(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    """ECI failing every call while the daemon starts: the node still turns Ready (NotReady would evict every
    pod), saying adoption is pending; no group is created or deleted meanwhile; once ECI answers, the old group
    is adopted (not created again), the pod created during the outage gets exactly one group, nothing is deleted."""
    stack = await make_stack(runtime="virtual", daemon=False)
    settings = load_settings(
        daemon_flags(
            stack.apiserver,
            stack.sim,
            tmp_path,
            **{
                "kube.kubeconfig": str(stack.settings.kube.kubeconfig),
                "eci.max_retries": 1,
                "eci.backoff_base_seconds": 0.05,
                "eci.backoff_max_seconds": 0.2,
                "node.ping_interval_seconds": 0.2,
            },
        )
    )
    spec = {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
    first = Daemon(settings, with_kubelet=False)
    try:
        await first.start()
        await first.wait_ready(timeout=30)
        await stack.create_pod({"metadata": {"name": "before"}, "spec": spec})
        await stack.wait_pod("before", running_ready, timeout=30)
    finally:
        await first.stop()
    before = groups_by_uid(stack)
    assert sum(before.values()) == 1

    await stack.sim.set_faults({"errors": {"rate": 1.0, "code": "ServiceUnavailable", "actions": []}})
    await stack.create_pod({"metadata": {"name": "during"}, "spec": spec})
    calls_at_outage = dict(stack.sim.stats()["calls"])
    second = Daemon(settings, with_kubelet=False)
    try:
        await second.start()
        await second.wait_ready(timeout=15)  # Ready although ECI fails every call
        assert second.pods is not None and not second.pods.state.adopted.is_set()

        async def says_pending() -> bool:
            msg = node_ready_message(await stack.kube.get_or_none(f"/api/v1/nodes/{NODE}"))
            return msg is not None and "not adopted yet" in msg and "ServiceUnavailable" in msg

        await eventually(says_pending, timeout=15, interval=0.2, what="the Ready message to say adoption is pending")
        # A deliberate window, not synchronisation: workers, GC and retries get their chance to do something wrong.
        await asyncio.sleep(1.0)
        calls = stack.sim.stats()["calls"]
        for action in ("CreateContainerGroup", "DeleteContainerGroup", "UpdateContainerGroup"):
            assert calls.get(action, 0) == calls_at_outage.get(action, 0), action
        assert calls.get("DescribeContainerGroups", 0) > calls_at_outage.get("DescribeContainerGroups", 0)

        await stack.sim.set_faults({"errors": None})
        async with asyncio.timeout(30):
            await second.pods.state.adopted.wait()
        await stack.wait_pod("during", running_ready, timeout=30)
        await stack.wait_pod("before", running_ready, timeout=5)

        async def says_plain_ready() -> bool:
            msg = node_ready_message(await stack.kube.get_or_none(f"/api/v1/nodes/{NODE}"))
            return msg == "virtual kubelet is ready; ECI API reachable"

        await eventually(
            says_plain_ready, timeout=15, interval=0.2, what="the Ready message to drop the pending adoption"
        )
        pods = (await stack.kube.get("/api/v1/namespaces/default/pods"))["items"]
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
        assert set(uids) == {"before", "during"}
        live = groups_by_uid(stack)
        assert live == Counter({uids["before"]: 1, uids["during"]: 1})
        assert stack.sim.stats()["calls"].get("DeleteContainerGroup", 0) == 0
        assert stack.sim.stats()["calls"].get("CreateContainerGroup", 0) == calls_at_outage["CreateContainerGroup"] + 1
    finally:
        await second.stop()
