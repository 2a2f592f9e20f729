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
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE

import pytest

from tests.conftest import KUBECTL
from tests.e2e.conftest import REAL
from tests.kubectl import Kubectl
from tests.waiting import eventually_sync
from vk_sandbox.up import WEBHOOK_CONFIGURATION

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

ROOT = Path(__file__).resolve().parents[2]
VK = Path(sys.executable).with_name("vk-provider")
# The real tier runs the same person's all-in-one on upstream's control plane (`make real-cluster`).
ALL_IN_ONE = [sys.executable, "-m", "tests.controlplane"] if REAL else [str(VK), "sandbox"]
READY_KEYS = {"kubeconfig", "node", "eci_endpoint", "kubelet_port", "metrics_url"}
SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}
WEBSOCKET = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"}
# client-go's WebSocket executor logs this when a frame comes for a stream it has not set up yet. On the real tier
# kube-apiserver translates kubectl's WebSocket into SPDY for the kubelet, and its translator's first frame can beat
# kubectl's stream set-up (seen twice in CI on that tier only). No data is lost: stdout is checked byte for byte.
UPSTREAM_NOISE = re.compile(
    rb"^E\d{4} [\d:.]+ +\d+ websocket\.go:\d+\] Unknown stream id \d+, discarding message\n", re.M
)


def own_stderr(done: subprocess.CompletedProcess[bytes]) -> bytes:
    """kubectl's stderr without client-go's stream set-up race (UPSTREAM_NOISE)."""
    return UPSTREAM_NOISE.sub(b"", done.stderr)


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    directory: Path
    ready: dict[str, object]
    cli: Kubectl
    stdout: Path
    stderr: Path

    def kubectl(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
        done = self.run(*args, env=env, timeout=timeout)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr.decode()}"
        return done.stdout.decode()

    def kubectl_rc(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> int:
        return self.run(*args, env=env, timeout=timeout).returncode

    def run(
        self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return self.cli.run_sync(*args, stdin=stdin, env=env, timeout=timeout)


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
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*ALL_IN_ONE, "--dir", str(state), "--ready-file", str(ready_file)],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            start_new_session=True,
        )
    try:

        def started() -> bool:
            assert proc.poll() is None, f"the sandbox exited with {proc.returncode}: {stderr.read_text()}"
            return ready_file.exists()

        eventually_sync(started, timeout=60, interval=0.1, what=lambda: f"the ready file: {stderr.read_text()}")
        ready = json.loads(ready_file.read_text())
        yield Sandbox(proc, state, ready, Kubectl(kubectl_env, Path(str(ready["kubeconfig"]))), stdout, stderr)
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
    # Two worker nodes beside it (hollow kubelets, or kwok's on the real tier), and the daemon's webhook registered
    # with its CA written in, so a burst namespace works out of the box.
    assert "workers:      sandbox-worker-1, sandbox-worker-2" in banner
    for worker in ("sandbox-worker-1", "sandbox-worker-2"):
        assert "True" in sandbox.kubectl(
            "get", "node", worker, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        )
    eventually_sync(
        lambda: sandbox.kubectl(
            "get", "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION, "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ).strip(),
        timeout=30,
        what="the daemon's CA in its webhook configuration",
    )  # fmt: skip

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
    with sandbox.cli.popen("logs", "-f", "hello-eci", "--tail=1", stdout=PIPE) as follow:
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

    # exec: arguments with spaces, exit codes and stdin over both protocols; kubectl cp both ways.
    for name, protocol in (("ws", WEBSOCKET), ("spdy", SPDY)):
        out = sandbox.kubectl("exec", "deploy/hello-eci", "--", "sh", "-c", "echo hello from $HOSTNAME", env=protocol)
        assert out.startswith("hello from hello-eci-")
        assert sandbox.kubectl_rc("exec", "hello-eci", "--", "sh", "-c", "exit 3", env=protocol) == 3
        # A command that stops reading by itself: ECI's exec stream cannot pass stdin's end without a TTY.
        done = sandbox.run(
            "exec", "-i", "hello-eci", "--", "sh", "-c", "head -n 1 | tr a-z A-Z", stdin=b"piped\n", env=protocol
        )
        assert (done.returncode, done.stdout, own_stderr(done)) == (0, b"PIPED\n", b""), done.stderr
        # One that reads to the end is ended a grace after its last output: a notice on stderr, and a failure.
        done = sandbox.run("exec", "-i", "hello-eci", "--", "cat", stdin=b"to the end\n", env=protocol)
        assert (done.returncode, done.stdout) == (255, b"to the end\n"), done.stderr
        assert b"stdin ended, but ECI's exec stream cannot pass end-of-input" in done.stderr
        # -it under a terminal: the size reaches the command, and the exit code comes back.
        tty = "stty cols 91 rows 27; " + shlex.join(
            [KUBECTL, "exec", "-it", "hello-eci", "--", "sh", "-c", "read x; stty size; echo got-$x; exit 4"]
        )
        done = subprocess.run(
            ["script", "-qec", tty, "/dev/null"],
            input=b"go\n",
            env={**sandbox.cli.env, **protocol, "TERM": "xterm"},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 4 and b"27 91" in done.stdout and b"got-go" in done.stdout, done
        # kubectl cp to the pod (its tar archive is padded to a whole record, so tar ends) and back from it.
        local = sandbox.directory / f"cp-{name}"
        local.mkdir()
        (local / "sent.bin").write_bytes(bytes(range(256)) * 64)
        done = sandbox.run("cp", str(local / "sent.bin"), f"hello-eci:{local}/in-pod.bin", env=protocol)
        assert (done.returncode, own_stderr(done)) == (0, b""), done.stderr
        done = sandbox.run("cp", f"hello-eci:{local}/in-pod.bin", str(local / "back.bin"), env=protocol)
        assert done.returncode == 0, done.stderr
        assert (local / "back.bin").read_bytes() == (local / "sent.bin").read_bytes()

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
    with sandbox.cli.popen("port-forward", "pod/http", f"{local}:{port}", stdout=PIPE) as forward:
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
    eventually_sync(
        lambda: leftover_processes(sandbox.directory) == [],
        timeout=5,
        interval=0.1,
        what=lambda: f"the container processes to end: {leftover_processes(sandbox.directory)}",
    )
    assert "Traceback" not in sandbox.stderr.read_text()
