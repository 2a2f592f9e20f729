"""`vk-provider sandbox apiserver` as a process: ready file, one line on stdout, clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.kubectl import Kubectl


async def test_cli_serves_until_sigterm(tmp_path: Path, kubectl_env: dict[str, str]) -> None:
    """The CLI writes {"url","kubeconfig"} to --ready-file, prints where the kubeconfig is, serves kubectl, and
    exits 0 on SIGTERM."""
    ready = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vk_provider.cli",
        "sandbox",
        "apiserver",
        "--dir",
        str(tmp_path / "srv"),
        "--ready-file",
        str(ready),
        "--no-controllers",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("sandbox API server at"), line  # the first and only line on stdout
        info = json.loads(ready.read_text())
        assert info["url"].startswith("https://127.0.0.1:") and info["kubeconfig"] in line
        out = await Kubectl(kubectl_env, Path(info["kubeconfig"])).ok("get", "namespaces", "-o", "name")
        assert "namespace/default" in out
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
    assert rc == 0
