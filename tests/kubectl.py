"""The one runner for the real kubectl in tests.

Each test gets a fresh HOME and cache dir from the ``kubectl_env`` fixture (tests/conftest.py); ``Kubectl`` adds the
kubeconfig of the server under test. ``run``/``ok`` decode the output, ``run_bytes`` keeps it as bytes, ``start``
launches a long-running command (``logs -f``, ``get -w``, ``port-forward``); ``run_sync`` and ``popen`` serve
synchronous tests. ``top_rows``, ``millicores`` and ``mebibytes`` read ``kubectl top`` output.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import KUBECTL


class Kubectl:
    """Runs the real kubectl against one server with a fresh cache; returns (rc, stdout, stderr)."""

    def __init__(self, env: dict[str, str], kubeconfig: Path) -> None:
        self.env = dict(env, KUBECONFIG=str(kubeconfig))

    async def run_bytes(
        self, *args: str, stdin: bytes | None = None, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**self.env, **(env or {})},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        finally:
            if proc.returncode is None:  # timed out or cancelled: never leave a kubectl running, or unwaited
                proc.kill()
                await asyncio.shield(proc.wait())
        assert proc.returncode is not None
        return proc.returncode, out, err

    async def run(
        self, *args: str, stdin: bytes | None = None, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        rc, out, err = await self.run_bytes(*args, stdin=stdin, timeout=timeout, env=env)
        return rc, out.decode(), err.decode()

    async def ok(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 30.0
    ) -> str:
        rc, out, err = await self.run(*args, stdin=stdin, env=env, timeout=timeout)
        assert rc == 0, f"kubectl {' '.join(args)} failed ({rc}): {err}{out}"
        return out

    async def start(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> asyncio.subprocess.Process:
        """A kubectl that keeps running; the caller reads its pipes and ends it."""
        return await asyncio.create_subprocess_exec(KUBECTL, *args, env={**self.env, **(env or {})}, **kwargs)

    def popen(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[bytes]:
        """``start`` for synchronous tests."""
        return subprocess.Popen([KUBECTL, *args], env={**self.env, **(env or {})}, **kwargs)

    def run_sync(
        self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [KUBECTL, *args], input=stdin, env={**self.env, **(env or {})}, capture_output=True, timeout=timeout
        )


def top_rows(out: str) -> dict[str, list[str]]:
    """``kubectl top`` output by its first column, without the header."""
    lines = [line.split() for line in out.strip().splitlines()]
    return {cols[0]: cols[1:] for cols in lines[1:]}


def millicores(value: str) -> int:
    """A ``kubectl top`` CPU column ("250m", "2") in millicores."""
    return int(value[:-1]) if value.endswith("m") else int(value) * 1000


def mebibytes(value: str) -> int:
    """A ``kubectl top`` memory column ("12Mi") in MiB."""
    assert value.endswith("Mi"), value
    return int(value[:-2])
