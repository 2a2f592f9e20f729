"""The wheel installs into a clean virtualenv and its console script runs (stands in for the Docker build)."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
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
    # The production wheel (and so the image) carries no test bed.
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
    assert not [n for n in names if "sandbox" in n.split("/")[0]], names
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
    # Without the test bed, `vk-provider sandbox` says what to install (exit 2), never a traceback.
    missing = subprocess.run(
        [str(env_dir / "bin" / "vk-provider"), "sandbox"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2
    assert "pip install -e ./sandbox" in missing.stderr and "Traceback" not in missing.stderr
