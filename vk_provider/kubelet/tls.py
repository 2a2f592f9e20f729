"""The kubelet API's TLS: serving certificate (files, CSR or self-signed) and client CA.

CSR mode, the way a real kubelet gets its serving certificate:
1. reuse ``<cert_dir>/kubelet-server-current.pem`` if it is still valid and covers our names;
2. otherwise serve at once with a temporary self-signed certificate, and create a
   ``certificates.k8s.io/v1`` CSR (signer ``kubernetes.io/kubelet-serving``; CN
   ``system:node:<node>``, O ``system:nodes``, SANs for the node's addresses). That signer is never
   auto-approved, so we log the ``kubectl certificate approve`` command to run;
3. when the certificate is issued, load it into the live SSLContext (new handshakes use it, no
   restart), save it, and renew at ~80% of its lifetime.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio import client as k8s

from vk_provider.aio import Backoff, create_guarded_task
from vk_provider.pki import key_pem, load_pem_chain, san_entries
from vk_provider.settings import KubeletSettings

log = structlog.get_logger("vk_provider.kubelet.tls")

SERVICE_ACCOUNT_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
SIGNER = "kubernetes.io/kubelet-serving"
USAGES = ["digital signature", "key encipherment", "server auth"]
CURRENT = "kubelet-server-current.pem"
RENEW_FRACTION = 0.8


def self_signed(node_name: str, addresses: list[str], *, days: int = 365) -> tuple[bytes, bytes]:
    """A self-signed serving certificate and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(time.time())}")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    sans = san_entries([node_name, *addresses])
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def make_csr(node_name: str, addresses: list[str]) -> tuple[bytes, bytes]:
    """(CSR PEM, key PEM) for the kubelet-serving signer."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
            ]
        )
    )
    sans = san_entries(addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key_pem(key)


@dataclass(frozen=True)
class CertInfo:
    not_before: dt.datetime
    not_after: dt.datetime
    common_name: str
    sans: frozenset[str]

    def renew_at(self) -> dt.datetime:
        return self.not_before + (self.not_after - self.not_before) * RENEW_FRACTION


def cert_info(cert_pem: bytes) -> CertInfo:
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    sans: set[str] = set()
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans.update(ext.get_values_for_type(x509.DNSName))
        sans.update(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return CertInfo(
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        str(cns[0].value) if cns else "",
        frozenset(sans),
    )


def split_pem(bundle: bytes) -> tuple[bytes, bytes]:
    """(certificates, private key) from a combined PEM file."""
    certs: list[bytes] = []
    key: list[bytes] = []
    current: list[bytes] | None = None
    for line in bundle.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN ") and b"PRIVATE KEY" in line:
            current = key
        elif line.startswith(b"-----BEGIN "):
            current = certs
        if current is not None:
            current.append(line)
        if line.startswith(b"-----END "):
            current = None
    return b"".join(certs), b"".join(key)


def load_client_ca(settings: KubeletSettings, explicit: bytes | None, api: Any) -> bytes | None:
    """Client CA: the one given, the configured file, the service account's ca.crt, the kubeconfig's CA."""
    if explicit:
        return explicit
    if settings.client_ca_file is not None:
        return settings.client_ca_file.read_bytes()
    if SERVICE_ACCOUNT_CA.exists():
        return SERVICE_ACCOUNT_CA.read_bytes()
    ca_path = getattr(getattr(api, "configuration", None), "ssl_ca_cert", None)
    if ca_path and Path(ca_path).exists():
        return Path(ca_path).read_bytes()
    return None


class ServingTLS:
    """Owns the SSLContext of the kubelet API and keeps its serving certificate current."""

    def __init__(
        self,
        settings: KubeletSettings,
        *,
        node_name: str,
        addresses: list[str],
        api: Any,
        client_ca_pem: bytes | None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._settings = settings
        self._node = node_name
        self._addresses = [a for a in addresses if a]
        self._api = api
        self._now = now
        self.ready = False
        self.current: CertInfo | None = None
        self.csr_names: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.client_ca = load_client_ca(settings, client_ca_pem, api)
        if self.client_ca:
            self.context.load_verify_locations(cadata=self.client_ca.decode())
            # Optional but verified when given: token-only scrapers such as metrics-server still work.
            self.context.verify_mode = ssl.CERT_OPTIONAL
        else:
            log.warning("no client CA known: client certificates are not accepted, only bearer tokens")

    def _load(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Load into the live context: connections made from now on get the new certificate."""
        load_pem_chain(self.context, cert_pem, key_pem)
        self.current = cert_info(cert_pem)

    async def start(self) -> None:
        mode = self._settings.tls_mode
        if mode == "files":
            if self._settings.cert_file is None or self._settings.key_file is None:
                raise ValueError("kubelet.tls_mode=files needs kubelet.cert_file and kubelet.key_file")
            self.context.load_cert_chain(self._settings.cert_file, self._settings.key_file)
            self.current = cert_info(self._settings.cert_file.read_bytes())
            self.ready = True
            return
        if mode == "self-signed":
            log.warning(
                "SERVING WITH A SELF-SIGNED CERTIFICATE: the API server cannot verify this kubelet; "
                "use tls_mode=csr or files in production"
            )
            self._load(*self_signed(self._node, self._addresses))
            self.ready = True
            return
        existing = self._read_current()
        if existing is not None:
            try:
                self._load(*existing)
                self.ready = True
                log.info("reusing serving certificate", not_after=str(self.current.not_after if self.current else ""))
            except (ssl.SSLError, ValueError) as exc:  # e.g. a key that does not match the certificate
                log.warning("saved serving certificate is unusable; requesting a new one", error=str(exc))
                existing = None
        if existing is None:
            self._load(*self_signed(self._node, self._addresses, days=1))
        self._task = create_guarded_task(self._rotate(), name="kubelet-serving-cert")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _read_current(self) -> tuple[bytes, bytes] | None:
        path = self._settings.cert_dir / CURRENT
        try:
            cert_pem, key_pem = split_pem(path.read_bytes())
            info = cert_info(cert_pem)
        except (OSError, ValueError, IndexError):
            return None
        wanted = {self._node, *self._addresses}
        if info.not_after <= self._now() or info.common_name != f"system:node:{self._node}" or not wanted <= info.sans:
            return None
        return cert_pem, key_pem

    def _save(self, cert_pem: bytes, key_pem: bytes) -> None:
        d = self._settings.cert_dir
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = d / f".{CURRENT}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem + key_pem)
        os.replace(tmp, d / CURRENT)

    async def _rotate(self) -> None:
        backoff = Backoff(base=5.0, cap=300.0)
        failures = 0
        while True:
            if self.ready and self.current is not None:
                wait = (self.current.renew_at() - self._now()).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                cert_pem, key_pem = await self._request_certificate()
            except _CSRRefused as exc:
                failures += 1
                log.error("serving certificate request refused", csr=exc.name, reason=exc.reason)
                await asyncio.sleep(backoff.delay(failures))
                continue
            except Exception as exc:
                failures += 1
                log.warning("serving certificate request failed", error=describe_error(exc))
                await asyncio.sleep(backoff.delay(failures))
                continue
            failures = 0
            self._save(cert_pem, key_pem)
            self._load(cert_pem, key_pem)
            self.ready = True
            log.info(
                "serving certificate issued and loaded",
                not_after=str(self.current.not_after if self.current else ""),
            )

    async def _request_certificate(self) -> tuple[bytes, bytes]:
        # Like a kubelet's, the certificate also names the node (the API server dials a Hostname address
        # first when the node reports one).
        csr_pem, key_pem = make_csr(self._node, [self._node, *self._addresses])
        certs = k8s.CertificatesV1Api(self._api)
        body = k8s.V1CertificateSigningRequest(
            metadata=k8s.V1ObjectMeta(generate_name=f"csr-{self._node}-"),
            spec=k8s.V1CertificateSigningRequestSpec(
                request=base64.b64encode(csr_pem).decode(),
                signer_name=SIGNER,
                usages=USAGES,
            ),
        )
        created = await certs.create_certificate_signing_request(body)
        name = created.metadata.name
        self.csr_names.append(name)
        log.info("serving certificate CSR created", csr=name)
        poll = self._settings.csr_poll_seconds
        polls = 0
        while True:
            csr = await certs.read_certificate_signing_request(name)
            status = csr.status
            conditions = (status.conditions if status is not None else None) or []
            for cond in conditions:
                if cond.type in ("Denied", "Failed") and cond.status == "True":
                    raise _CSRRefused(name, f"{cond.type}: {cond.reason or ''} {cond.message or ''}".strip())
            if status is not None and status.certificate:
                return base64.b64decode(status.certificate), key_pem
            approved = any(c.type == "Approved" and c.status == "True" for c in conditions)
            if polls == 1 and not approved:
                # Said once, after one poll period: an approver that acts at once (ours in the sandbox,
                # or a cluster's auto-approver) never makes the operator read it.
                log.warning(
                    "serving certificate CSR created; it needs approval "
                    "(the kubelet-serving signer is never auto-approved)",
                    csr=name,
                    approve=f"kubectl certificate approve {name}",
                )
            polls += 1
            await asyncio.sleep(poll)


def describe_error(exc: BaseException) -> str:
    """A short description of an API error: status and reason, plus the Status message when there is one."""
    status = getattr(exc, "status", None)
    if status is None:
        return repr(exc)
    message = ""
    body = getattr(exc, "body", None)
    if isinstance(body, (str, bytes)):
        with contextlib.suppress(ValueError, TypeError):
            message = str(json.loads(body).get("message", ""))
    return f"{status} {getattr(exc, 'reason', '')}: {message}".strip()


class _CSRRefused(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
