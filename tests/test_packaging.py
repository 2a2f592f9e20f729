"""The wheel installs into a clean virtualenv and its console script runs (stands in for the Docker build)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_cli_runs(tmp_path: Path) -> None:
    """Build the wheel, install it with only its runtime dependencies, run `vk-provider --help` and `--version`."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
    )
    wheels = list(dist.glob("vk_eci-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheels[0])], check=True, timeout=600)
    # Only runtime dependencies: the test-only client and tools are not pulled in.
    listed = subprocess.run([str(py), "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    assert "pytest" not in listed and "mypy" not in listed
    out = subprocess.run(
        [str(env_dir / "bin" / "vk-provider"), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "run" in out.stdout and "sandbox" in out.stdout
    version = subprocess.run(
        [str(env_dir / "bin" / "vk-provider"), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.startswith("vk-provider ")
