"""The admission webhook's certificate: a CA and a serving certificate kept in a Secret, and the CA written
into the MutatingWebhookConfiguration's ``caBundle`` so the API server trusts the webhook.

At start (``WebhookCertificates.ensure``): with ``elastic.cert_file``/``key_file`` the files are served
and nothing is written (the caBundle is then whoever issued them's business, e.g. cert-manager's CA
injector). Otherwise the Secret ``elastic.secret_name`` in ``elastic.namespace`` is read; it is reused when
its serving certificate covers the Service's DNS names and has more than ``RENEW_BEFORE`` left, else a new
one is issued (by the same CA when the Secret has one that is still valid) and written back. Two daemons
starting at once both try to create it: the loser of the 409 reads the winner's. When the Secret cannot be
written (no namespace, no permission) the daemon still serves with what it generated and says so.

Then ``publish_ca_bundle`` sets ``clientConfig.caBundle`` of every webhook of the configuration
``elastic.webhook_configuration``. A configuration that does not exist is a Warning log, not an error: the
burst controller works without the webhook.
"""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.pki import key_pem, load_pem_chain, san_entries
from vk_provider.settings import ElasticSettings

log = structlog.get_logger("vk_provider.elastic.certs")

CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@dataclass(frozen=True)
class Material:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    ca_key_pem: bytes | None = None


def service_names(settings: ElasticSettings) -> list[str]:
    """The names the API server may dial the webhook by: the Service's DNS names, and loopback (a sandbox
    registers the webhook by URL)."""
    svc, ns = settings.service_name, settings.namespace
    return [f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", f"{svc}.{ns}", "localhost", "127.0.0.1"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca(common_name: str = "vk-eci-webhook-ca") -> tuple[bytes, bytes]:
    """(CA certificate PEM, CA key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def issue_serving(ca_pem: bytes, ca_key_pem: bytes, names: list[str]) -> tuple[bytes, bytes]:
    """(serving certificate PEM, key PEM) for ``names`` (DNS names or IP addresses), signed by the CA."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=SERVING_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san_entries(names)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def _valid_for(cert_pem: bytes, now: dt.datetime) -> dt.timedelta:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc - now


def still_good(material: Material, names: list[str], now: dt.datetime | None = None) -> bool:
    """The serving certificate covers ``names``, was signed by the CA, and has more than RENEW_BEFORE left."""
    now = now or _now()
    try:
        cert = x509.load_pem_x509_certificate(material.cert_pem)
        ca = x509.load_pem_x509_certificate(material.ca_pem)
        cert.verify_directly_issued_by(ca)
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # any unreadable or mismatched part: issue anew
        return False
    have = set(ext.get_values_for_type(x509.DNSName)) | {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return set(names) <= have and cert.not_valid_after_utc - now > RENEW_BEFORE


def ssl_context(material: Material) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_pem_chain(ctx, material.cert_pem, material.key_pem)
    return ctx


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _from_secret(secret: dict[str, Any]) -> Material | None:
    data = secret.get("data") or {}
    try:
        raw = {k: base64.b64decode(v) for k, v in data.items()}
    except ValueError:
        return None
    if not all(k in raw for k in ("tls.crt", "tls.key", "ca.crt")):
        return None
    return Material(raw["tls.crt"], raw["tls.key"], raw["ca.crt"], raw.get("ca.key"))


class WebhookCertificates:
    """Finds or makes the webhook's certificate (``ensure``) and publishes its CA (``publish_ca_bundle``)."""

    def __init__(self, api: KubeAPI, settings: ElasticSettings) -> None:
        self.api = api
        self.settings = settings
        self.names = service_names(settings)
        self._secret_path = f"/api/v1/namespaces/{settings.namespace}/secrets"

    async def ensure(self) -> Material:
        s = self.settings
        if s.cert_file is not None and s.key_file is not None:
            cert = s.cert_file.read_bytes()
            return Material(cert, s.key_file.read_bytes(), cert)
        current: dict[str, Any] | None = None
        try:
            current = await self.api.get_or_none(f"{self._secret_path}/{s.secret_name}")
        except KubeError as exc:
            log.warning("webhook Secret not readable; issuing a certificate in memory", error=str(exc))
        found = _from_secret(current) if current else None
        if found is not None and still_good(found, self.names):
            log.info("webhook certificate reused", name=f"{s.namespace}/{s.secret_name}")
            return found
        material = self._issue(found)
        return await self._store(material, current)

    def _issue(self, previous: Material | None) -> Material:
        if (
            previous is not None
            and previous.ca_key_pem
            and _valid_for(previous.ca_pem, _now()) > dt.timedelta(days=SERVING_DAYS) + RENEW_BEFORE
        ):
            ca_pem, ca_key = previous.ca_pem, previous.ca_key_pem  # keep the CA the caBundle already trusts
        else:
            ca_pem, ca_key = new_ca()
        cert, key = issue_serving(ca_pem, ca_key, self.names)
        return Material(cert, key, ca_pem, ca_key)

    async def _store(self, material: Material, current: dict[str, Any] | None) -> Material:
        s = self.settings
        assert material.ca_key_pem is not None
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": s.secret_name,
                "namespace": s.namespace,
                "labels": {"app.kubernetes.io/name": "vk-eci"},
            },
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": _b64(material.cert_pem),
                "tls.key": _b64(material.key_pem),
                "ca.crt": _b64(material.ca_pem),
                "ca.key": _b64(material.ca_key_pem),
            },
        }
        try:
            if current is None:
                await self.api.request("POST", self._secret_path, body=body)
            else:
                body["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
                body["type"] = current.get("type") or body["type"]  # a Secret's type cannot change
                await self.api.request("PUT", f"{self._secret_path}/{s.secret_name}", body=body)
        except KubeError as exc:
            if exc.conflict:
                # Another daemon wrote it first: serve what it wrote, so both present the same CA.
                theirs = await self.api.get_or_none(f"{self._secret_path}/{s.secret_name}")
                found = _from_secret(theirs) if theirs else None
                if found is not None and still_good(found, self.names):
                    return found
            log.warning(
                "webhook Secret not written; serving a certificate kept in memory only (a restart issues another)",
                name=f"{s.namespace}/{s.secret_name}",
                error=str(exc),
            )
            return material
        log.info("webhook certificate issued", name=f"{s.namespace}/{s.secret_name}")
        return material

    async def publish_ca_bundle(self, ca_pem: bytes) -> bool:
        """Write ``ca_pem`` into every webhook of the configuration; True when it is there now."""
        path = f"{MWC_PATH}/{self.settings.webhook_configuration}"
        bundle = _b64(ca_pem)
        for _ in range(3):
            try:
                mwc = await self.api.get_or_none(path)
                if mwc is None:
                    log.warning(
                        "MutatingWebhookConfiguration not found: pods are not routed at admission, only burst "
                        "(install manifests/webhook.yaml)",
                        name=self.settings.webhook_configuration,
                    )
                    return False
                hooks = mwc.get("webhooks") or []
                if all((h.get("clientConfig") or {}).get("caBundle") == bundle for h in hooks):
                    return True
                for h in hooks:
                    h.setdefault("clientConfig", {})["caBundle"] = bundle
                await self.api.request("PUT", path, body=mwc)
                log.info("webhook caBundle written", name=self.settings.webhook_configuration, webhooks=len(hooks))
                return True
            except KubeError as exc:
                if exc.conflict:
                    continue  # changed meanwhile: read it again
                log.warning("webhook caBundle not written", name=self.settings.webhook_configuration, error=str(exc))
                return False
        return False
