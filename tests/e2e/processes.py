"""The daemon as a real subprocess (`vk-provider run`, configured through VK_* variables), and the checks the
process tests share: groups per pod in the simulator, the node's Ready condition."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.conftest import NODE, Stack, daemon_flags
from tests.waiting import eventually
from vk_provider.settings import FIELDS

VK = str(Path(sys.executable).with_name("vk-provider"))


def daemon_env(stack: Stack, tmp_path: Path, **extra: Any) -> dict[str, str]:
    """The environment of one `vk-provider run` against the stack; ``extra`` settings win."""
    flags = daemon_flags(
        stack.apiserver,
        stack.sim,
        tmp_path,
        **{
            "kube.kubeconfig": str(stack.settings.kube.kubeconfig),
            "metrics.port": 0,  # both ports bound by the process: see started_line
            "kubelet.port": 0,
            "log.format": "json",
            "pods.workers": 32,
            "eci.rate_limit_qps": 500,
            "eci.rate_limit_burst": 500,
            **extra,
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VK_") and "proxy" not in k.lower()}
    for path, value in flags.items():
        env[FIELDS[path].env] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env


async def start_daemon(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(VK, "run", env=env, stdout=out, stderr=out)


async def stop_daemon(proc: asyncio.subprocess.Process) -> None:
    """A test's clean-up: SIGCONT (a paused process would not act on SIGTERM) and SIGTERM, then SIGKILL if it has
    not exited within 30 s. Nothing for a process that has exited."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def log_tail(log: Path, *, since: int = 0) -> str:
    """The last 3,000 bytes of a daemon's log past byte ``since``, for an assertion's message."""
    return log.read_bytes()[since:][-3000:].decode(errors="replace")


async def log_line(proc: asyncio.subprocess.Process, log: Path, event: str, *, since: int = 0) -> dict[str, Any]:
    """The first JSON log line with this ``event`` the process wrote past byte ``since`` of its log. ``daemon
    started`` names the kubelet port and metrics URL it bound and ``admission webhook listening`` the webhook's
    port, so a test can give it port 0 (a port picked free before the start may be some connection's by then).
    AssertionError with the log's tail if the process exits first."""
    needle = json.dumps(event).encode()

    def line() -> dict[str, Any] | None:
        with log.open("rb") as f:
            f.seek(since)
            for raw in f:
                if needle in raw:
                    return dict(json.loads(raw))
        if proc.returncode is not None:
            tail = log_tail(log, since=since)
            raise AssertionError(f"the daemon exited with code {proc.returncode} before '{event}':\n{tail}")
        return None

    return await eventually(line, timeout=60, interval=0.1, what=f"'{event}' in {log}")


def groups_by_uid(stack: Stack, node: str = NODE) -> Counter[str]:
    """Live (not Terminating) groups of ``node`` in the simulator, by pod UID."""
    live = Counter[str]()
    for g in stack.sim.engine.groups.values():
        tags = dict(g.tags)
        if tags.get("vk-eci/node") == node and g.status not in ("Terminating",):
            live[tags.get("vk-eci/uid", "")] += 1
    return live


async def node_ready(stack: Stack, node: str = NODE) -> bool:
    obj = await stack.kube.get_or_none(f"/api/v1/nodes/{node}")
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
