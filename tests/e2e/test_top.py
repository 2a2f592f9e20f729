"""`kubectl top` through metrics.k8s.io: the sandbox API server serves it itself; on the real tier it is upstream's
metrics-server behind the real API server's aggregation layer, scraping the daemon's kubelet API at the address and
port the Node object gives (InternalIP, ``status.daemonEndpoints``) and verifying its serving certificate with the
cluster CA."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import NODE, SLOW, StackFactory, running_ready
from tests.kubectl import Kubectl, mebibytes, millicores, top_rows
from tests.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.simulator]

# A little CPU (a short loop, then a pause) for as long as the test can take, and never longer.
WORK = ["timeout", "120", "sh", "-c", "while :; do i=0; while [ $i -lt 1000 ]; do i=$((i+1)); done; sleep 0.1; done"]


async def test_kubectl_top_pod_and_node(make_stack: StackFactory, kubectl_env: dict[str, str]) -> None:
    """A Running pod on the virtual node shows in `kubectl top pod` with its CPU, and the node in `kubectl top node`
    with CPU, its share of the node's allocatable CPU, and memory."""
    stack = await make_stack(runtime="process")
    assert stack.daemon is not None
    status = (await stack.kube.get(f"/api/v1/nodes/{NODE}"))["status"]
    # What metrics-server reads to reach the kubelet (--kubelet-preferred-address-types, --kubelet-use-node-status-port)
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == stack.daemon.kubelet_port
    container = {"name": "main", "image": "busybox", "command": WORK}
    spec = {"terminationGracePeriodSeconds": 0, "containers": [container]}
    await stack.create_pod({"metadata": {"name": "work", "labels": {"app": "work"}}, "spec": spec})
    await stack.wait_pod("work", running_ready, timeout=20)
    kubectl = Kubectl(kubectl_env, stack.apiserver.kubeconfig_path)

    async def top(kind: str, name: str) -> list[str] | None:
        """The row of ``name`` once it shows CPU in use: metrics-server needs two scrapes of a new pod (10 s apart)
        for a rate, the sandbox a second one (15 s) after a first that may have seen none."""
        rc, out, err = await kubectl.run("top", kind)
        assert rc == 0 or "metrics not available yet" in err, f"kubectl top {kind} ({rc}): {err}{out}"
        row = top_rows(out).get(name) if rc == 0 else None
        return row if row and millicores(row[0]) > 0 else None

    pod = await eventually(lambda: top("pod", "work"), timeout=60 * SLOW, interval=1, what="top pod: work")
    assert mebibytes(pod[1]) >= 0, pod
    node = await eventually(lambda: top("node", NODE), timeout=60 * SLOW, interval=1, what=f"top node: {NODE}")
    _, cpu_share, memory, memory_share = node[:4]
    assert cpu_share.endswith("%") and mebibytes(memory) > 0 and memory_share.endswith("%"), node
    assert set(top_rows(await kubectl.ok("top", "node"))) == {NODE}
    only = top_rows(await kubectl.ok("top", "pod", "-l", "app=work", "-A"))
    assert set(only) == {"default"} and only["default"][0] == "work", only
