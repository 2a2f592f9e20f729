"""The sandbox's certificate authority: server, client and kubelet certificates, and CSR signing."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vk_sandbox.apiserver.errors import bad_request

_KEY_USAGE_EKU = {
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
}


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertificateAuthority:
    """A self-signed ECDSA P-256 CA made at start; nothing is written to disk unless asked."""

    def __init__(self, common_name: str = "vk-eci-sandbox-ca") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem: bytes = self.cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem: bytes = _key_pem(self._key)

    def _build(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey | object,
        *,
        usages: Sequence[x509.ObjectIdentifier],
        server_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def issue(
        self,
        common_name: str,
        organizations: list[str],
        *,
        server_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        client: bool = True,
        server: bool = False,
        days: int = 365,
    ) -> tuple[bytes, bytes]:
        """A new key and a certificate for it: ``(cert_pem, key_pem)``. CN is the user, O the groups."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        )
        cert = self._build(
            x509.Name(attrs),
            key.public_key(),
            usages=usages,
            server_names=server_names,
            ip_addresses=ip_addresses,
            lifetime=dt.timedelta(days=days),
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def sign_csr(self, csr_pem: bytes, *, usages: list[str], expiration_seconds: int | None = None) -> bytes:
        """Sign a PEM CSR as is (subject and SANs from the request); ApiError 400 when it does not parse."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise bad_request("the certificate request is not a valid PEM CSR") from exc
        if not csr.is_signature_valid:
            raise bad_request("the certificate request's signature is invalid")
        server_names: list[str] = []
        ips: list[str] = []
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            server_names = san.get_values_for_type(x509.DNSName)
            ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        ekus = [_KEY_USAGE_EKU[u] for u in usages if u in _KEY_USAGE_EKU]
        lifetime = dt.timedelta(seconds=max(600, expiration_seconds) if expiration_seconds else 365 * 86400)
        cert = self._build(
            csr.subject, csr.public_key(), usages=ekus, server_names=server_names, ip_addresses=ips, lifetime=lifetime
        )
        return cert.public_bytes(serialization.Encoding.PEM)


def subject_of(cert: x509.Certificate) -> tuple[str, list[str]]:
    """(CN, [O...]) of a certificate: the Kubernetes user and groups."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else "", [str(o.value) for o in orgs])
