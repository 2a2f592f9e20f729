"""`vk-provider sandbox` (the README's `make run`) as a user meets it: one process, the real kubectl.

The sandbox starts as a child process. The test waits for its ready file, then drives it with the
kubectl the banner tells users to run: the shipped examples must run to Ready or Complete on the
virtual node, `logs` and `exec` must work over both streaming protocols, `cp` and `port-forward` too,
and SIGTERM must stop everything, container processes included. On the real tier the all-in-one is
`make real-cluster` (tests/controlplane): the same assertions through upstream's API server and its
kubelet proxy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE

import pytest

from tests.conftest import KUBECTL
from tests.e2e.conftest import REAL

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VK = Path(sys.executable).with_name("vk-provider")
# The real tier runs the same person's all-in-one on upstream's control plane (`make real-cluster`).
ALL_IN_ONE = [sys.executable, "-m", "tests.controlplane"] if REAL else [str(VK), "sandbox"]
READY_KEYS = {"kubeconfig", "node", "eci_endpoint", "kubelet_port", "metrics_url"}
SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
WEBSOCKET = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"}


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    directory: Path
    ready: dict[str, object]
    env: dict[str, str]
    stdout: Path
    stderr: Path

    def kubectl(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
        done = subprocess.run(
            [KUBECTL, *args], env={**self.env, **(env or {})}, capture_output=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr.decode()}"
        return done.stdout.decode()

    def kubectl_rc(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> int:
        done = subprocess.run(
            [KUBECTL, *args], env={**self.env, **(env or {})}, capture_output=True, timeout=timeout, check=False
        )
        return done.returncode


def leftover_processes(directory: Path) -> list[int]:
    """Processes whose working directory is inside ``directory`` (the simulator's containers run there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(directory) or cwd.startswith(f"{directory}/"):
            found.append(int(entry.name))
    return found


@pytest.fixture
def sandbox(tmp_path: Path, kubectl_env: dict[str, str]) -> Iterator[Sandbox]:
    state = tmp_path / "state"
    ready_file = tmp_path / "ready.json"
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    started = time.monotonic()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*ALL_IN_ONE, "--dir", str(state), "--ready-file", str(ready_file)],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        while not ready_file.exists():
            assert proc.poll() is None, f"the sandbox exited with {proc.returncode}: {stderr.read_text()}"
            assert time.monotonic() - started < 60, f"no ready file after 60 s: {stderr.read_text()}"
            time.sleep(0.1)
        ready = json.loads(ready_file.read_text())
        env = {**kubectl_env, "KUBECONFIG": str(ready["kubeconfig"])}
        yield Sandbox(proc, state, ready, env, stdout, stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sandbox_runs_the_examples_and_stops_cleanly(sandbox: Sandbox) -> None:
    # The banner tells users exactly what to run.
    assert set(sandbox.ready) == READY_KEYS
    banner = sandbox.stdout.read_text()
    assert f"export KUBECONFIG={sandbox.ready['kubeconfig']}" in banner
    assert "kubectl apply -f manifests/examples/deployment.yaml" in banner
    node = str(sandbox.ready["node"])
    assert "True" in sandbox.kubectl(
        "get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    )

    # Every shipped example lands on the virtual node and runs to Ready or Complete.
    sandbox.kubectl("apply", "-f", str(ROOT / "manifests" / "examples"))
    sandbox.kubectl("wait", "--for=condition=Available", "deployment/hello-eci", "--timeout=60s", timeout=90)
    sandbox.kubectl("wait", "--for=condition=Ready", "pod/hello-eci", "pod/web-eci", "--timeout=60s", timeout=90)
    sandbox.kubectl("wait", "--for=condition=Complete", "job/pi-eci", "--timeout=90s", timeout=120)
    nodes = sandbox.kubectl("get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}").split()
    assert nodes and set(nodes) == {node}
    assert "3.1415926536" in sandbox.kubectl("logs", "job/pi-eci")

    # logs: the banner's command, then tail, timestamps and follow.
    assert "started on" in sandbox.kubectl("logs", "deploy/hello-eci")
    tail = sandbox.kubectl("logs", "hello-eci", "--tail=1", "--timestamps").splitlines()
    assert len(tail) == 1 and tail[0][:4].isdigit() and "hello from ECI" in tail[0]
    with subprocess.Popen([KUBECTL, "logs", "-f", "hello-eci", "--tail=1"], env=sandbox.env, stdout=PIPE) as follow:
        watchdog = threading.Timer(30, follow.kill)  # a stuck stream fails the test instead of hanging it
        watchdog.start()
        try:
            assert follow.stdout is not None
            first = follow.stdout.readline()
            second = follow.stdout.readline()  # written after the request: -f really follows
            assert b"hello from ECI" in first and b"hello from ECI" in second and first != second
        finally:
            watchdog.cancel()
            follow.kill()

    # exec: arguments with spaces, exit codes and stdin over both protocols.
    for protocol in (WEBSOCKET, SPDY):
        out = sandbox.kubectl("exec", "deploy/hello-eci", "--", "sh", "-c", "echo hello from $HOSTNAME", env=protocol)
        assert out.startswith("hello from hello-eci-")
        assert sandbox.kubectl_rc("exec", "hello-eci", "--", "sh", "-c", "exit 3", env=protocol) == 3
        done = subprocess.run(
            [KUBECTL, "exec", "-i", "hello-eci", "--", "tr", "a-z", "A-Z"],
            input=b"piped\n",
            env={**sandbox.env, **protocol},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, b"PIPED\n"), done.stderr

    # cp: a file into the container and back (tar through exec).
    src, back = sandbox.directory.parent / "cp-src.txt", sandbox.directory.parent / "cp-back.txt"
    src.write_text("copied through the kubelet API\n")
    sandbox.kubectl("cp", str(src), "hello-eci:cp-dst.txt")
    sandbox.kubectl("cp", "hello-eci:cp-dst.txt", str(back))
    assert back.read_text() == src.read_text()

    # port-forward reaches an HTTP server in a pod.
    port = free_port()
    sandbox.kubectl(
        "run", "http", "--image=python", "--restart=Never",
        "--overrides", json.dumps({"spec": {
            "nodeSelector": {"type": "virtual-kubelet"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
        }}),
        "--", "python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
    )  # fmt: skip
    sandbox.kubectl("wait", "--for=condition=Ready", "pod/http", "--timeout=60s", timeout=90)
    local = free_port()
    forwarding = [KUBECTL, "port-forward", "pod/http", f"{local}:{port}"]
    with subprocess.Popen(forwarding, env=sandbox.env, stdout=PIPE) as forward:
        watchdog = threading.Timer(30, forward.kill)
        watchdog.start()
        try:
            assert forward.stdout is not None
            assert b"Forwarding from" in forward.stdout.readline()
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as response:
                assert response.status == 200
        finally:
            watchdog.cancel()
            forward.kill()

    # The daemon's metrics endpoint answers.
    with urllib.request.urlopen(str(sandbox.ready["metrics_url"]), timeout=10) as response:
        assert b"vk_" in response.read()

    # SIGTERM stops everything: exit 0, and no container process is left behind.
    assert leftover_processes(sandbox.directory), "the examples' container processes should be running"
    sandbox.proc.send_signal(signal.SIGTERM)
    assert sandbox.proc.wait(timeout=30) == 0, sandbox.stderr.read_text()
    deadline = time.monotonic() + 5
    while leftover_processes(sandbox.directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftover_processes(sandbox.directory) == []
    assert "Traceback" not in sandbox.stderr.read_text()
