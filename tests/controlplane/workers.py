"""Worker nodes for the real tier: Nodes with real capacity that kwok keeps Ready and whose pods it brings to Running.

kwok (sigs.k8s.io/kwok) is built by `make controlplane` from tools/controlplane's go.mod, with the stages kwokctl gives
it by default written beside it (``kwok-stages.yaml``): a Node is made Ready and its Lease renewed, a pod bound to it
goes Running and Ready with a pod IP, and a deleted one is removed. kwok is a client of the real API server like a
kubelet, with an identity of its own (cluster-admin: it writes the status of several nodes, which NodeRestriction
would refuse a single node identity). It manages only Nodes labelled ``WORKER_LABEL`` (never the daemon's virtual
node), which the launcher creates as a kubelet registers itself: with its capacity, so the real scheduler fills them.
Their names are the sandbox's (``sandbox-worker-<i>``), so a test reads the same on both tiers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vk_sandbox.apiserver.workers import WorkerSpec

if TYPE_CHECKING:
    from tests.controlplane.launcher import ControlPlane

KWOK = "kwok"
STAGES = "kwok-stages.yaml"
WORKER_LABEL = "e2e.vk-eci.io/kwok-worker"
# What the node lifecycle controller puts on a Node until it is Ready; the scheduler skips a node that has it.
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def missing(bin_dir: Path) -> list[str]:
    return [name for name in (KWOK, STAGES) if not (bin_dir / name).is_file()]


def kwok_args(cluster: ControlPlane, kubeconfig: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--config={cluster.bin_dir / STAGES}",
        f"--manage-nodes-with-label-selector={WORKER_LABEL}",
        "--node-ip=127.0.0.1",  # the InternalIP: metrics-server dials it (and fails, no kubelet there): loopback only
        "--node-lease-duration-seconds=40",  # kubelet's default; kwok renews each worker's Lease in kube-node-lease
        "--v=INFO",
    ]


def worker_node(spec: WorkerSpec, name: str) -> dict[str, Any]:
    """A Node as a kubelet registers it: labels and capacity; kwok's node-initialize stage adds the conditions
    (Ready), addresses and nodeInfo, and keeps the capacity it finds."""
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods)}
    labels = {
        WORKER_LABEL: "true",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


def schedulable(node: dict[str, Any] | None) -> bool:
    """Ready, and without the taints a Node carries until the node lifecycle controller has seen it Ready."""
    if not node:
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = {t.get("key") for t in (node.get("spec") or {}).get("taints") or []}
    return ready and not taints & NOT_READY_TAINTS
