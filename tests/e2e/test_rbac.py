"""The daemon runs with nothing more than the ServiceAccount and ClusterRole shipped in manifests/rbac.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import NODE, StackFactory, daemon_flags, running_ready
from vk_provider.app import Daemon
from vk_provider.settings import load_settings

pytestmark = pytest.mark.e2e

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"

PATHS = {
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


@pytest.mark.skipif(not RBAC.is_file(), reason="manifests/rbac.yaml is not there")
async def test_daemon_works_under_the_shipped_cluster_role(make_stack: StackFactory, tmp_path: Path) -> None:
    """With the manifests' ClusterRole only, the node registers, turns Ready, and a pod runs and is deleted."""
    stack = await make_stack(daemon=False)
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    subjects = [s for d in docs if d["kind"] == "ClusterRoleBinding" for s in d.get("subjects") or []]
    sa = next(s for s in subjects if s["kind"] == "ServiceAccount")
    await stack.kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": sa["namespace"]}})
    await stack.kube.request(
        "POST", f"/api/v1/namespaces/{sa['namespace']}/serviceaccounts", body={"metadata": {"name": sa["name"]}}
    )
    for doc in docs:
        if doc["kind"] in PATHS:
            await stack.kube.request("POST", PATHS[doc["kind"]], body=doc)
    token = stack.apiserver.mint_token(sa["namespace"], sa["name"])
    kubeconfig = stack.apiserver.user_kubeconfig(tmp_path / "sa.kubeconfig", token=token)
    # A service account is not a node identity, so the sandbox leaves its serving CSR to an operator:
    # serve self-signed here, the pod flow does not go through the kubelet API.
    flags = daemon_flags(
        stack.apiserver, stack.sim, tmp_path, **{"kube.kubeconfig": str(kubeconfig), "kubelet.tls_mode": "self-signed"}
    )
    daemon = Daemon(load_settings(flags))
    await daemon.start()
    try:
        await daemon.wait_ready(timeout=30)
        await stack.create_pod(
            {
                "metadata": {"name": "web"},
                "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]},
            }
        )
        await stack.wait_pod("web", running_ready, timeout=20)
        await stack.wait_event("web", "ProviderCreateSuccess")
        await stack.delete_pod("web")
        await stack.wait_pod("web", lambda p: p is None, timeout=30)
        lease = await stack.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
        assert lease["spec"]["holderIdentity"] == NODE
        assert not daemon.supervisor.failed.is_set()
    finally:
        await daemon.stop()
