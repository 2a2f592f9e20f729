"""metrics-server behind the real API server's aggregation layer, on loopback: what ``kubectl top`` needs.

The aggregation layer is set up as kubeadm sets it up: a front-proxy CA of its own, a ``front-proxy-client``
certificate the API server presents to extension API servers (``--proxy-client-cert-file``), and the
``--requestheader-*`` flags that tell them whom to trust for the ``X-Remote-User``/``-Group``/``-Extra-`` headers
(the API server publishes these in the ``kube-system/extension-apiserver-authentication`` ConfigMap, where
metrics-server reads them). metrics-server (upstream's, built by `make controlplane`) runs as its own manifests
install it: ServiceAccount ``kube-system/metrics-server`` (here a TokenRequest token in its kubeconfig) with the same
RBAC, the APIService ``v1beta1.metrics.k8s.io``, ``--kubelet-use-node-status-port`` and InternalIP first. Where
the manifests give up verification (``insecureSkipTLSVerify`` on the APIService, a self-signed serving
certificate), this verifies: the serving certificate is issued by the cluster CA for
``metrics-server.kube-system.svc`` (the name the aggregator checks) and the APIService's ``caBundle`` is that CA;
metrics-server verifies the daemon's kubelet serving certificate with ``--kubelet-certificate-authority`` (the CA the
controller-manager's kubelet-serving signer uses).

How the aggregator reaches it: its Service is of type ExternalName (``localhost``), so the aggregator dials
``localhost:<APIService port>``; a ClusterIP or an EndpointSlice cannot be loopback (docs/testing.md says what was
tried and the API server's answers).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from vk_sandbox.apiserver.certs import CertificateAuthority

if TYPE_CHECKING:
    from tests.controlplane.launcher import ControlPlane

BINARY = "metrics-server"
NAMESPACE = "kube-system"
NAME = "metrics-server"
APISERVICE = "v1beta1.metrics.k8s.io"
FRONT_PROXY_CA = "front-proxy-ca.crt"
FRONT_PROXY_CLIENT = "front-proxy-client"  # kubeadm's CN, and its --requestheader-allowed-names
# The smallest metrics-server accepts (its manifests use 15s): a new pod's CPU needs two scrapes.
RESOLUTION = "10s"
TOKEN_SECONDS = 7 * 24 * 3600  # a kubelet refreshes a projected token; nothing here does, so it outlives the cluster


def aggregation_flags(cluster: ControlPlane) -> list[str]:
    """kube-apiserver's aggregation-layer flags, as kubeadm sets them; writes the front-proxy CA and client pair."""
    front_proxy = CertificateAuthority("front-proxy-ca")
    ca = cluster._write(FRONT_PROXY_CA, front_proxy.cert_pem, 0o644)
    cert, key = cluster._pair("front-proxy-client", *front_proxy.issue(FRONT_PROXY_CLIENT, []))
    return [
        f"--requestheader-client-ca-file={ca}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={cert}",
        f"--proxy-client-key-file={key}",
    ]


def _objects(port: int, ca_pem: bytes) -> list[tuple[str, dict[str, Any]]]:
    """What metrics-server's manifests create (manifests/base: rbac.yaml, service.yaml, apiservice.yaml), but the
    Service (ExternalName, see the module docstring) and the APIService (verified with ``caBundle``)."""
    sa = [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    rbac = "/apis/rbac.authorization.k8s.io/v1"

    def role_ref(kind: str, name: str) -> dict[str, str]:
        return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}

    reader = ["get", "list", "watch"]
    return [
        (f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": NAME}}),
        (
            f"{rbac}/clusterroles",
            {
                "metadata": {
                    "name": "system:aggregated-metrics-reader",
                    "labels": {
                        f"rbac.authorization.k8s.io/aggregate-to-{r}": "true" for r in ("view", "edit", "admin")
                    },
                },
                "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": reader}],
            },
        ),
        (
            f"{rbac}/clusterroles",
            {
                "metadata": {"name": "system:metrics-server"},
                "rules": [
                    {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": reader},
                ],
            },
        ),
        (
            f"{rbac}/namespaces/{NAMESPACE}/rolebindings",
            {
                "metadata": {"name": "metrics-server-auth-reader"},
                "roleRef": role_ref("Role", "extension-apiserver-authentication-reader"),
                "subjects": sa,
            },
        ),
        (
            f"{rbac}/clusterrolebindings",
            {
                "metadata": {"name": "metrics-server:system:auth-delegator"},
                "roleRef": role_ref("ClusterRole", "system:auth-delegator"),
                "subjects": sa,
            },
        ),
        (
            f"{rbac}/clusterrolebindings",
            {
                "metadata": {"name": "system:metrics-server"},
                "roleRef": role_ref("ClusterRole", "system:metrics-server"),
                "subjects": sa,
            },
        ),
        (
            f"/api/v1/namespaces/{NAMESPACE}/services",
            {
                "metadata": {"name": NAME},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": port, "protocol": "TCP", "appProtocol": "https"}],
                },
            },
        ),
        (
            "/apis/apiregistration.k8s.io/v1/apiservices",
            {
                "metadata": {"name": APISERVICE},
                "spec": {
                    "service": {"name": NAME, "namespace": NAMESPACE, "port": port},
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ),
    ]


def start(cluster: ControlPlane, port: int) -> None:
    """Create metrics-server's objects and start it on 127.0.0.1:``port`` (the API server must be ready). The
    caller waits for ``available``."""
    from tests.controlplane.launcher import HOST

    for path, body in _objects(port, cluster.ca.cert_pem):
        cluster.request("POST", path, body)
    token = cluster.mint_token(NAMESPACE, NAME, expiration_seconds=TOKEN_SECONDS)
    kubeconfig = cluster.user_kubeconfig(cluster.directory / "metrics-server.kubeconfig", token=token)
    cert, key = cluster._pair(
        "metrics-server",
        *cluster.ca.issue(
            NAME,
            [],
            server_names=[f"{NAME}.{NAMESPACE}.svc", "localhost"],
            ip_addresses=[HOST],
            client=False,
            server=True,
        ),
    )
    cluster._spawn(
        BINARY,
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        f"--tls-cert-file={cert}",
        f"--tls-private-key-file={key}",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--kubelet-certificate-authority={cluster.ca_path}",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",  # its manifests' order
        "--kubelet-use-node-status-port",
        f"--metric-resolution={RESOLUTION}",
        "--kubelet-request-timeout=5s",  # it must be shorter than the resolution (10s by default)
        "--profiling=false",
        "--v=2",  # one line per failed scrape, naming the node and the reason
    )


def available(cluster: ControlPlane) -> bool:
    """The aggregator's verdict on the APIService (it dials metrics-server and checks its discovery)."""
    status = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}").get("status") or {}
    return any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions") or [])
