"""The sandbox CA: issued certificates verify against it and carry the identity in CN and O."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vk_sandbox.apiserver.certs import CertificateAuthority, subject_of
from vk_sandbox.apiserver.errors import ApiError


def test_issue_client_and_server_certificates() -> None:
    """Issued certificates chain to the CA, hold CN/O and the requested SANs and usages."""
    ca = CertificateAuthority()
    cert_pem, key_pem = ca.issue(
        "alice", ["devs", "ops"], server_names=["node1"], ip_addresses=["127.0.0.1"], server=True
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    assert subject_of(cert) == ("alice", ["devs", "ops"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku and ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert serialization.load_pem_private_key(key_pem, None)


def test_sign_csr_keeps_subject_and_sans() -> None:
    """sign_csr signs the request's subject and SANs with the asked usages; garbage is a 400."""
    ca = CertificateAuthority()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "system:node:vk"),
                ]
            )
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("vk"), x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), usages=["server auth"], expiration_seconds=3600)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca.cert)
    assert subject_of(cert) == ("system:node:vk", ["system:nodes"])
    assert [
        str(i)
        for i in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.IPAddress
        )
    ] == ["10.0.0.1"]
    with pytest.raises(ApiError) as exc:
        ca.sign_csr(base64.b64encode(b"nonsense"), usages=[])
    assert exc.value.code == 400
