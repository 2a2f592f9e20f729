"""manifests/ as an operator uses them: `kubectl apply -k`, then the daemon under the shipped ServiceAccount.

The daemon gets a token of the `vk-eci` ServiceAccount and the settings of the shipped ConfigMap (only the
cloud-specific values are pointed at the simulator). Its serving CSR is approved with `kubectl certificate
approve`, as docs/operations.md tells operators to. Every example then runs to Ready or Complete, and
`kubectl logs`/`exec` pass the kubelet API's TokenReview and SubjectAccessReview: the ClusterRole is enough.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import NODE, StackFactory, daemon_flags
from tests.kubectl import Kubectl
from tests.waiting import eventually
from vk_provider.app import Daemon
from vk_provider.settings import load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def shipped(kind: str, name: str) -> dict[str, Any]:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return dict(doc)
    raise AssertionError(f"no {kind} {name} in manifests/")


async def test_manifests_are_enough_to_run_the_examples(
    make_stack: StackFactory, tmp_path: Path, kubectl_env: dict[str, str]
) -> None:
    stack = await make_stack(runtime="process", daemon=False)
    admin = Kubectl(kubectl_env, stack.apiserver.kubeconfig_path)
    await admin.ok("apply", "-k", str(MANIFESTS))

    deployment = shipped("Deployment", "vk-eci")
    namespace = deployment["metadata"]["namespace"]
    pod_spec = deployment["spec"]["template"]["spec"]
    token = stack.apiserver.mint_token(namespace, pod_spec["serviceAccountName"])
    sa_kubeconfig = stack.apiserver.user_kubeconfig(tmp_path / "sa.kubeconfig", token=token)

    # The shipped ConfigMap is the settings file; only the cloud-specific values change.
    config = tmp_path / "config.yaml"
    config.write_text(shipped("ConfigMap", "vk-eci-config")["data"]["config.yaml"])
    flags = daemon_flags(stack.apiserver, stack.sim, tmp_path)
    for key in ("node.name", "eci.cluster_name", "eci.vswitch_ids", "eci.security_group_id"):
        flags.pop(key)
    flags.update({"config_file": str(config), "kube.kubeconfig": str(sa_kubeconfig), "node.name": NODE})
    flags.update({"eci.vswitch_ids": ["vsw-manifests"], "eci.security_group_id": "sg-manifests"})
    flags.update({"eci.cluster_dns": [], "kubelet.csr_poll_seconds": 0.2})
    # What the Deployment's POD_NAMESPACE gives the daemon: the election Lease lives in its own namespace.
    pod_env = {e["name"]: e for e in pod_spec["containers"][0]["env"]}
    assert pod_env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert deployment["spec"]["replicas"] == 2
    flags["ha.namespace"] = namespace
    settings = load_settings(flags)
    assert settings.kubelet.tls_mode == "csr", "the shipped settings use a CSR-issued serving certificate"

    daemon = Daemon(settings)
    await daemon.start()
    try:
        await daemon.wait_ready(timeout=30)
        # The operator's step: approve the kubelet-serving CSR the daemon filed.
        names = await eventually(
            lambda: admin.ok(
                "get",
                "csr",
                "-o",
                f"jsonpath={{.items[?(@.spec.username=='system:serviceaccount:{namespace}:{pod_spec['serviceAccountName']}')].metadata.name}}",
            ),
            timeout=20,
            interval=0.1,
            what="the daemon to file a serving CSR",
        )
        await admin.ok("certificate", "approve", *names.split())
        await daemon.wait_serving(timeout=20)

        # Under the shipped role the daemon (once it leads) fills the webhook's Secret and writes its CA into the
        # configuration.
        async def published() -> dict[str, Any] | None:
            secret = await stack.kube.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/vk-eci-webhook-tls")
            if secret is None:
                return None
            mwc = await stack.kube.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/vk-eci")
            ca = (secret.get("data") or {}).get("ca.crt")
            return secret if ca and mwc["webhooks"][0]["clientConfig"].get("caBundle") == ca else None

        secret = await eventually(published, timeout=20, what="the webhook's Secret and caBundle")
        assert secret["type"] == "kubernetes.io/tls" and secret["data"]["tls.crt"]

        await admin.ok("apply", "-f", str(MANIFESTS / "examples"))
        await admin.ok("wait", "--for=condition=Available", "deployment/hello-eci", "--timeout=60s", timeout=90)
        await admin.ok("wait", "--for=condition=Ready", "pod/hello-eci", "pod/web-eci", "--timeout=60s", timeout=90)
        await admin.ok("wait", "--for=condition=Complete", "job/pi-eci", "--timeout=90s", timeout=120)
        assert "3.1415926536" in await admin.ok("logs", "job/pi-eci")
        assert (await admin.ok("exec", "hello-eci", "--", "echo", "through the kubelet API")).strip() == (
            "through the kubelet API"
        )

        lease = await stack.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
        assert lease["spec"]["holderIdentity"] == NODE
        election = await stack.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/vk-eci-{NODE}")
        assert daemon.elector is not None and election["spec"]["holderIdentity"] == daemon.elector.identity
        pdb = shipped("PodDisruptionBudget", "vk-eci")
        assert pdb["spec"]["minAvailable"] == 1 and pdb["metadata"]["namespace"] == namespace
        assert not daemon.supervisor.failed.is_set()
    finally:
        await daemon.stop()
