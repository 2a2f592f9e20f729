"""`vk-provider sandbox eci`: starts, writes the ready file, serves the SDK, exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from aliyunsdkcore.client import AcsClient
from aliyunsdkeci.request.v20180808.DescribeRegionsRequest import DescribeRegionsRequest

from tests.waiting import eventually_sync


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = tmp_path / "ready.json"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vk_provider.cli", "sandbox", "eci", "--dir", str(tmp_path / "d"),
         "--ready-file", str(ready), "--runtime", "virtual", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip

    def started() -> bool:
        assert proc.poll() is None, proc.communicate()
        return ready.exists()

    eventually_sync(started, timeout=20, what="the ready file")
    return proc, json.loads(ready.read_text())


def test_cli_generates_credentials_and_serves(tmp_path: Path) -> None:
    """Without keys the CLI generates a pair, writes it (mode 0600) to the ready file, and the SDK can use it."""
    proc, info = _start(tmp_path, "--region", "cn-beijing")
    try:
        assert set(info) == {"endpoint", "region", "access_key_id", "access_key_secret"}
        assert info["region"] == "cn-beijing" and info["endpoint"].startswith("http://127.0.0.1:")
        assert (tmp_path / "ready.json").stat().st_mode & 0o077 == 0
        client = AcsClient(
            info["access_key_id"], info["access_key_secret"], "cn-beijing", proxy={"http": "", "https": ""}
        )
        req = DescribeRegionsRequest()
        req.set_endpoint(info["endpoint"].removeprefix("http://"))
        assert json.loads(client.do_action_with_exception(req))["Regions"][0]["RegionId"] == "cn-beijing"
        client.session.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert info["access_key_secret"].encode() not in out


def test_cli_uses_given_credentials(tmp_path: Path) -> None:
    """--access-key-id/--access-key-secret are the accepted pair; one without the other is a usage error."""
    proc, info = _start(tmp_path, "--access-key-id", "my-id", "--access-key-secret", "my-secret")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert (info["access_key_id"], info["access_key_secret"]) == ("my-id", "my-secret")
    bad = subprocess.run(
        [sys.executable, "-m", "vk_provider.cli", "sandbox", "eci", "--access-key-id", "x"],
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2
