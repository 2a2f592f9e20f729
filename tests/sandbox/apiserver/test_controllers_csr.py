"""The kubelet-serving CSR approver and signer, driven through the store and through the official client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.sandbox.apiserver.conftest import until
from tests.waiting import eventually_sync
from vk_sandbox.apiserver.controllers.csr import SIGNER, kubelet_serving_problem
from vk_sandbox.apiserver.server import SandboxAPIServer

CSR_KEY = "certificatesigningrequests.certificates.k8s.io"
USAGES = ["digital signature", "server auth"]


def csr_pem(
    cn: str = "system:node:n1", orgs: tuple[str, ...] = ("system:nodes",), *, sans: bool = True, email: bool = False
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs
    ]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    alt: list[x509.GeneralName] = []
    if sans:
        alt += [x509.DNSName("n1"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if email:
        alt.append(x509.RFC822Name("kubelet@example.com"))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_object(
    name: str,
    pem: bytes,
    *,
    username: str = "system:node:n1",
    groups: list[str] | None = None,
    usages: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": SIGNER,
            "usages": usages or USAGES,
            "username": username,
            "groups": groups if groups is not None else ["system:nodes", "system:authenticated"],
        },
    }


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SandboxAPIServer]:
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        yield srv


def conditions(server: SandboxAPIServer, name: str) -> dict[str, dict[str, Any]]:
    csr = server.store.get(CSR_KEY, None, name)
    assert csr is not None
    return {c["type"]: c for c in (csr.get("status") or {}).get("conditions", [])}


def certificate(server: SandboxAPIServer, name: str) -> str | None:
    csr = server.store.get(CSR_KEY, None, name)
    assert csr is not None
    return (csr.get("status") or {}).get("certificate")


def test_validation_rules() -> None:
    """Only CN=username, O=system:nodes, DNS/IP SANs and server-auth usages from a node identity pass."""
    assert kubelet_serving_problem(csr_object("ok", csr_pem())) is None
    assert "node identity" in (kubelet_serving_problem(csr_object("x", csr_pem(), username="alice")) or "")
    assert "system:nodes" in (
        kubelet_serving_problem(csr_object("x", csr_pem(), groups=["system:authenticated"])) or ""
    )
    assert "usages" in (kubelet_serving_problem(csr_object("x", csr_pem(), usages=["client auth"])) or "")
    assert "CN" in (kubelet_serving_problem(csr_object("x", csr_pem(cn="system:node:other"))) or "")
    assert "O must" in (kubelet_serving_problem(csr_object("x", csr_pem(orgs=("system:masters",)))) or "")
    assert "alternative names" in (kubelet_serving_problem(csr_object("x", csr_pem(sans=False))) or "")
    assert "only DNS and IP" in (kubelet_serving_problem(csr_object("x", csr_pem(email=True))) or "")
    broken = csr_object("x", csr_pem())
    broken["spec"]["request"] = base64.b64encode(b"not a csr").decode()
    assert "PEM" in (kubelet_serving_problem(broken) or "")


async def test_node_csr_is_approved_and_signed_by_the_sandbox_ca(server: SandboxAPIServer) -> None:
    """A valid node request gets Approved/AutoApproved and a certificate chained to the CA with the asked SANs."""
    server.store.create_now(CSR_KEY, csr_object("node-n1", csr_pem()))
    pem = await until(lambda: certificate(server, "node-n1"))
    assert conditions(server, "node-n1")["Approved"]["reason"] == "AutoApproved"
    cert = x509.load_pem_x509_certificate(base64.b64decode(pem))
    ca = x509.load_pem_x509_certificate(server.ca.cert_pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in list(eku)


async def test_non_node_requests_stay_pending_and_bad_approved_ones_fail(server: SandboxAPIServer) -> None:
    """Requests from others are left for a human; a human-approved invalid one gets Failed/SignerValidationFailure."""
    store = server.store
    store.create_now(CSR_KEY, csr_object("from-alice", csr_pem(cn="alice"), username="alice", groups=["devs"]))
    store.create_now(CSR_KEY, csr_object("marker", csr_pem()))
    await until(lambda: certificate(server, "marker"))
    assert conditions(server, "from-alice") == {}

    def approve(o: dict[str, Any]) -> dict[str, Any]:
        o.setdefault("status", {})["conditions"] = [
            {"type": "Approved", "status": "True", "reason": "ByHand", "message": "ok"}
        ]
        return o

    await store.mutate(CSR_KEY, None, "from-alice", approve, subresource="approval")
    failed = await until(lambda: conditions(server, "from-alice").get("Failed"))
    assert failed["reason"] == "SignerValidationFailure"
    assert certificate(server, "from-alice") is None

    # A valid node request filed by a service account (a virtual kubelet's daemon) waits for a human, then is signed.
    sa = "system:serviceaccount:vk-eci:vk-eci"
    store.create_now(CSR_KEY, csr_object("from-sa", csr_pem(), username=sa, groups=["system:serviceaccounts"]))
    store.create_now(CSR_KEY, csr_object("marker-2", csr_pem()))
    await until(lambda: certificate(server, "marker-2"))
    assert conditions(server, "from-sa") == {}
    await store.mutate(CSR_KEY, None, "from-sa", approve, subresource="approval")
    assert await until(lambda: certificate(server, "from-sa"))


async def test_kubelet_flow_through_the_official_client(server: SandboxAPIServer, tmp_path: Path) -> None:
    """A node identity creates its CSR over HTTPS with the `kubernetes` client and reads back the certificate."""
    from kubernetes import client, config

    store = server.store
    store.create_now(
        "clusterroles.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "test-node-csr"},
            "rules": [
                {
                    "apiGroups": ["certificates.k8s.io"],
                    "resources": ["certificatesigningrequests"],
                    "verbs": ["create", "get"],
                }
            ],
        },
    )
    store.create_now(
        "clusterrolebindings.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "test-node-csr"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "test-node-csr"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
        },
    )
    kubeconfig = server.user_kubeconfig(tmp_path / "node.kubeconfig", user="system:node:n1", groups=["system:nodes"])
    pem = csr_pem()

    def as_kubelet() -> str:
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        with api_client:
            api = client.CertificatesV1Api(api_client)
            body = client.V1CertificateSigningRequest(
                metadata=client.V1ObjectMeta(name="kubelet-serving-n1"),
                spec=client.V1CertificateSigningRequestSpec(
                    request=base64.b64encode(pem).decode(), signer_name=SIGNER, usages=USAGES
                ),
            )
            api.create_certificate_signing_request(body)

            def issued() -> str | None:
                got = api.read_certificate_signing_request("kubelet-serving-n1")
                return str(got.status.certificate) if got.status and got.status.certificate else None

            return eventually_sync(issued, timeout=4, interval=0.02, what="a certificate issued")

    issued = await asyncio.wait_for(asyncio.to_thread(as_kubelet), timeout=30)
    cert = x509.load_pem_x509_certificate(base64.b64decode(issued))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    # The requester's credential is recorded as the real server does: the SHA-256 of its client certificate.
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    client_pem = base64.b64decode(user["client-certificate-data"])
    der = x509.load_pem_x509_certificate(client_pem).public_bytes(serialization.Encoding.DER)
    stored = store.get(CSR_KEY, None, "kubelet-serving-n1")
    assert stored is not None
    assert stored["spec"]["extra"] == {
        "authentication.kubernetes.io/credential-id": [f"X509SHA256={hashlib.sha256(der).hexdigest()}"]
    }


async def test_approval_conditions_get_their_timestamps(server: SandboxAPIServer) -> None:
    """As the real CSR strategy: an approval condition written without times gets lastUpdateTime and
    lastTransitionTime (the way `kubectl certificate approve` writes it, with lastUpdateTime only, is kept)."""
    store = server.store
    store.create_now(CSR_KEY, csr_object("plain", csr_pem(cn="alice"), username="alice", groups=["devs"]))
    csr = store.get(CSR_KEY, None, "plain")
    assert csr is not None
    csr["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]}
    approved = store.update_now(CSR_KEY, csr, subresource="approval")
    cond = approved["status"]["conditions"][0]
    assert cond["lastUpdateTime"] and cond["lastTransitionTime"] == cond["lastUpdateTime"]
