"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

The binaries are upstream's, built by `make controlplane` from tools/controlplane (one pinned release). They run as
a cluster does: the API server has its own CA and serving certificate, a service-account issuer and keys,
``--authorization-mode=Node,RBAC``, the default admission plugins plus NodeRestriction, and verifies a kubelet's
serving certificate against the cluster CA (``--kubelet-certificate-authority``), the CA that the
controller-manager's CSR signers (kubelet-serving included) sign with. The controller-manager and scheduler each
have their own identity; controllers use per-controller service-account credentials. The aggregation layer is set up
as kubeadm does, and upstream's metrics-server serves metrics.k8s.io behind it (``metrics_server.py``).

``ControlPlane`` offers what the e2e tests ask of the sandbox API server: ``url``, ``kubeconfig_path`` (admin),
``user_kubeconfig`` (a client certificate or a bearer token) and ``mint_token`` (a TokenRequest).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.controlplane import metrics_server, workers
from vk_sandbox.apiserver.certs import CertificateAuthority
from vk_sandbox.apiserver.kubeconfig import cert_user, write_kubeconfig
from vk_sandbox.apiserver.workers import WorkerSpec

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("VK_CONTROLPLANE_BIN", ROOT / ".cache" / "controlplane" / "bin"))
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", metrics_server.BINARY)
HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "kubernetes-admin"
# The names the serving certificate covers besides 127.0.0.1: the ones a cluster's own clients use.
SERVER_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
BASE_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
# What a test may leave in ``default``, and what of it the cluster itself keeps (a field selector).
DEFAULT_NAMESPACE_COLLECTIONS = [
    ("/apis/apps/v1/namespaces/{ns}/deployments", ""),
    ("/apis/apps/v1/namespaces/{ns}/replicasets", ""),
    ("/apis/apps/v1/namespaces/{ns}/statefulsets", ""),
    ("/apis/apps/v1/namespaces/{ns}/daemonsets", ""),
    ("/apis/batch/v1/namespaces/{ns}/cronjobs", ""),
    ("/apis/batch/v1/namespaces/{ns}/jobs", ""),
    ("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", ""),
    ("/api/v1/namespaces/{ns}/configmaps", "metadata.name!=kube-root-ca.crt"),
    ("/api/v1/namespaces/{ns}/secrets", ""),
    ("/api/v1/namespaces/{ns}/serviceaccounts", "metadata.name!=default"),
    ("/api/v1/namespaces/{ns}/services", "metadata.name!=kubernetes"),
    ("/api/v1/namespaces/{ns}/events", ""),
    ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", ""),
    ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", ""),
]


class ControlPlaneError(RuntimeError):
    """A component did not start or stopped on its own; the message names it and the tail of its log."""


class APIError(Exception):
    """An API call of the launcher's own answered with an error status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def missing_binaries(bin_dir: Path = BIN_DIR) -> list[str]:
    return [name for name in COMPONENTS if not (bin_dir / name).is_file()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """Start with ``start()``, stop with ``stop()`` (or use it as a context manager). All state is in ``directory``."""

    directory: Path
    bin_dir: Path = BIN_DIR
    ca: CertificateAuthority = field(default_factory=lambda: CertificateAuthority("vk-eci-e2e-cluster-ca"))
    url: str = ""
    _components: list[_Component] = field(default_factory=list)

    # ---- files

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def kubeconfig_path(self) -> Path:
        return self.directory / "admin.kubeconfig"

    @property
    def ca_path(self) -> Path:
        return self.pki / "ca.crt"

    def _write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.pki / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def _pair(self, stem: str, cert: bytes, key: bytes) -> tuple[Path, Path]:
        return self._write(f"{stem}.crt", cert, 0o644), self._write(f"{stem}.key", key)

    def _write_kubeconfig(self, path: Path, user: str, entry: dict[str, str]) -> Path:
        return write_kubeconfig(path, server=self.url, ca_pem=self.ca.cert_pem, cluster="e2e", user=user, entry=entry)

    def user_kubeconfig(
        self, path: Path, *, token: str | None = None, user: str | None = None, groups: list[str] | None = None
    ) -> Path:
        """A kubeconfig for a bearer ``token``, or for a fresh client certificate with CN ``user`` and O ``groups``.
        (A real API server has no way to register a static token at run time: ``token`` with ``user`` is refused.)"""
        if token is not None:
            if user is not None:
                raise ValueError("a real API server cannot learn a static token at run time; mint one instead")
            return self._write_kubeconfig(path, "token-user", {"token": token})
        if user is None:
            raise ValueError("user_kubeconfig needs a token or a user")
        cert, key = self.ca.issue(user, list(groups or []), client=True)
        return self._write_kubeconfig(path, user, cert_user(cert, key))

    # ---- the API, for the launcher's own few calls

    def _admin_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return ctx

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._admin_context(), timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:  # an HTTPError holds the open response
                raise APIError(exc.code, f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None

    def mint_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
    ) -> str:
        """A TokenRequest for the ServiceAccount (which must exist, as on any real cluster)."""
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = audiences
        out = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(out["status"]["token"])

    # ---- lifecycle

    def _spawn(self, name: str, *args: str) -> None:
        log = self.directory / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for the launcher reaches the components only through stop()
            )
        self._components.append(_Component(name, proc, log))

    def _check_alive(self) -> None:
        for c in self._components:
            if c.proc.poll() is not None:
                tail = c.log.read_text(errors="replace").splitlines()[-15:]
                raise ControlPlaneError(f"{c.name} exited with {c.proc.returncode}:\n" + "\n".join(tail))

    def _wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if check():
                    return
            except (OSError, APIError, KeyError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})")

    def _component_kubeconfig(self, name: str, user: str, groups: list[str]) -> Path:
        cert, key = self.ca.issue(user, groups, client=True)
        return self._write_kubeconfig(
            self.directory / f"{name}.kubeconfig",
            user,
            cert_user(cert, key),
        )

    def start(self, timeout: float = 120) -> ControlPlane:
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ControlPlaneError(f"{', '.join(missing)} not built in {self.bin_dir}: run `make controlplane`")
        self.directory = self.directory.resolve()
        self.pki.mkdir(parents=True, exist_ok=True)
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.url = f"https://{HOST}:{api_port}"
        self._write("ca.crt", self.ca.cert_pem, 0o644)
        ca_key = self._write("ca.key", self.ca.key_pem)
        serving = self._pair(
            "apiserver",
            *self.ca.issue(
                "kube-apiserver",
                [],
                server_names=SERVER_NAMES,
                ip_addresses=[HOST, "10.96.0.1"],
                client=False,
                server=True,
            ),
        )
        kubelet_client = self._pair(
            "apiserver-kubelet-client", *self.ca.issue("kube-apiserver-kubelet-client", ["system:masters"])
        )
        self._pair("admin", *self.ca.issue(ADMIN_USER, ["system:masters"]))
        sa_key = ec.generate_private_key(ec.SECP256R1())
        sa_private = self._write(
            "sa.key",
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        sa_public = self._write(
            "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
        self._write_kubeconfig(
            self.kubeconfig_path,
            ADMIN_USER,
            {"client-certificate": str(self.pki / "admin.crt"), "client-key": str(self.pki / "admin.key")},
        )

        self._spawn(
            "etcd",
            "--name=e2e",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls=http://{HOST}:{etcd_port}",
            f"--advertise-client-urls=http://{HOST}:{etcd_port}",
            f"--listen-peer-urls=http://{HOST}:{peer_port}",
            f"--initial-advertise-peer-urls=http://{HOST}:{peer_port}",
            f"--initial-cluster=e2e=http://{HOST}:{peer_port}",
            "--unsafe-no-fsync",  # a throw-away test cluster: durability buys nothing, fsync costs seconds
            "--log-level=warn",
        )
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://{HOST}:{etcd_port}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={api_port}",
            f"--tls-cert-file={serving[0]}",
            f"--tls-private-key-file={serving[1]}",
            f"--client-ca-file={self.ca_path}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",  # added to the default set, as kubeadm does
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={sa_public}",
            f"--service-account-signing-key-file={sa_private}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-certificate-authority={self.ca_path}",
            f"--kubelet-client-certificate={kubelet_client[0]}",
            f"--kubelet-client-key={kubelet_client[1]}",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",  # kubeadm's order
            "--allow-privileged=true",
            *metrics_server.aggregation_flags(self),
            "--profiling=false",
            "--v=1",
        )
        self._wait("kube-apiserver /readyz", lambda: self._get_text("/readyz") == "ok", deadline - time.monotonic())
        metrics_server.start(self, free_port())

        cm = self._component_kubeconfig("controller-manager", "system:kube-controller-manager", [])
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={cm}",
            f"--authentication-kubeconfig={cm}",
            f"--authorization-kubeconfig={cm}",
            f"--bind-address={HOST}",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa_private}",
            f"--root-ca-file={self.ca_path}",
            f"--cluster-signing-cert-file={self.ca_path}",
            f"--cluster-signing-key-file={ca_key}",
            f"--client-ca-file={self.ca_path}",
            f"--requestheader-client-ca-file={self.pki / metrics_server.FRONT_PROXY_CA}",  # as kubeadm sets it
            "--controllers=*",
            "--v=1",
        )
        sched = self._component_kubeconfig("scheduler", "system:kube-scheduler", [])
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={sched}",
            f"--authentication-kubeconfig={sched}",
            f"--authorization-kubeconfig={sched}",
            f"--bind-address={HOST}",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            "--v=1",
        )
        # Pods can be admitted only once the namespace's ServiceAccount and root CA ConfigMap exist.
        self._wait(
            "the default ServiceAccount and kube-root-ca.crt",
            lambda: (
                self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
                and self.request("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
            ),
            deadline - time.monotonic(),
        )
        self._wait(
            f"APIService {metrics_server.APISERVICE} Available",
            lambda: metrics_server.available(self),
            deadline - time.monotonic(),
        )

    # ---- worker nodes (tests/controlplane/workers.py)

    def add_workers(self, spec: WorkerSpec, timeout: float = 60) -> list[str]:
        """``spec.count`` worker Nodes that kwok runs (started on first use), each Ready and free of the not-ready
        taint when this returns, so the scheduler places pods on them from the first one."""
        missing = workers.missing(self.bin_dir)
        if missing:
            raise ControlPlaneError(f"{', '.join(missing)} not built in {self.bin_dir}: run `make controlplane`")
        if not any(c.name == workers.KWOK for c in self._components):
            kubeconfig = self._component_kubeconfig("kwok", "kwok", ["system:masters"])
            self._spawn(workers.KWOK, *workers.kwok_args(self, kubeconfig))
        names = spec.names()
        for name in names:
            self.request("POST", "/api/v1/nodes", workers.worker_node(spec, name))
        self._wait(
            f"worker nodes {', '.join(names)} Ready and untainted",
            lambda: all(workers.schedulable(self.request("GET", f"/api/v1/nodes/{name}")) for name in names),
            timeout,
        )
        return names

    def reset(self, timeout: float = 60) -> None:
        """Back to a fresh cluster's objects, for the next test: every Node (kwok's workers too), mutating webhook
        configuration, CSR and namespace a test made gone, and in ``default`` everything but what the cluster itself
        keeps there. Pods go with grace 0 (no kubelet is left to finish a graceful delete)."""
        for ns in self.request("GET", "/api/v1/namespaces")["items"]:
            name = ns["metadata"]["name"]
            if name not in BASE_NAMESPACES and not ns["metadata"].get("deletionTimestamp"):
                self._delete(f"/api/v1/namespaces/{name}")
        for path, selector in DEFAULT_NAMESPACE_COLLECTIONS:
            self._delete_all(path.format(ns="default"), selector)
        self._delete_all("/api/v1/nodes")
        self._delete_all("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
        self._delete_all("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        self._delete_all("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")

        def clean() -> bool:
            pods = self.request("GET", "/api/v1/pods")["items"]
            for pod in pods:
                meta = pod["metadata"]
                self._delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", {"gracePeriodSeconds": 0})
            names = {ns["metadata"]["name"] for ns in self.request("GET", "/api/v1/namespaces")["items"]}
            return not pods and names <= BASE_NAMESPACES

        self._wait("the cluster to be clean", clean, timeout)

    def _delete_all(self, path: str, selector: str = "") -> None:
        """Each object of a collection, one DELETE each (not every resource serves deletecollection)."""
        query = f"?fieldSelector={selector}" if selector else ""
        for item in self.request("GET", path + query)["items"]:
            self._delete(f"{path}/{item['metadata']['name']}", {"propagationPolicy": "Background"})

    def _delete(self, path: str, options: dict[str, Any] | None = None) -> None:
        try:
            self.request("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions", **(options or {})})
        except APIError as exc:
            if exc.code != 404:
                raise

    def _get_text(self, path: str) -> str:
        try:
            with urllib.request.urlopen(self.url + path, context=self._admin_context(), timeout=5) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            with exc:
                return f"{exc.code}"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running component has used so far, by name (bench/burst.py)."""
        out: dict[str, float] = {}
        for c in self._components:
            try:
                fields = Path(f"/proc/{c.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[c.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to every component, newest first (then SIGKILL after ``timeout``)."""
        for c in reversed(self._components):
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
            try:
                c.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        self._components.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
