"""The operator's part in a cluster: approve the daemon's kubelet-serving CSR.

The real kube-controller-manager signs kubelet-serving CSRs but never approves them (it auto-approves only kubelet
client certificates); an operator or an approver of their own does. The sandbox API server has an approver built
in, for node identities only; the e2e tests (both tiers) and `make real-cluster` run this one, for the identity
the daemon runs as.
"""

from __future__ import annotations

import asyncio

from vk_provider.kube.client import KubeAPI, KubeError

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


async def approve_serving_csrs(kube: KubeAPI, username: str | None, interval: float = 0.2, prefix: str = "") -> None:
    """Forever: approve each pending kubelet-serving CSR filed by ``username`` (any user when None) whose name starts
    with ``prefix``."""
    while True:
        for csr in (await kube.get(CSRS)).get("items") or []:
            spec, status = csr["spec"], csr.get("status") or {}
            if (
                spec.get("signerName") == "kubernetes.io/kubelet-serving"
                and username in (None, spec.get("username"))
                and csr["metadata"]["name"].startswith(prefix)
                and not status.get("conditions")
            ):
                approved = {"conditions": [{"type": "Approved", "status": "True", "reason": "OperatorApproved"}]}
                try:
                    await kube.request(
                        "PUT", f"{CSRS}/{csr['metadata']['name']}/approval", body={**csr, "status": approved}
                    )
                except KubeError as exc:  # changed or deleted meanwhile: the next round sees it again
                    if exc.status not in (404, 409):
                        raise
        await asyncio.sleep(interval)
