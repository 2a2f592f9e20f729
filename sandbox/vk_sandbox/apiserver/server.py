"""``SandboxAPIServer``: the embedded API server as an async context manager."""

from __future__ import annotations

import asyncio
import importlib
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from vk_provider.aio import create_guarded_task
from vk_sandbox.apiserver.admission import Admission
from vk_sandbox.apiserver.auth import Authenticator, Authorizer, bootstrap_rbac
from vk_sandbox.apiserver.certs import CertificateAuthority
from vk_sandbox.apiserver.context import (
    AccessContext,
    ControllerContext,
    KubeletContext,
    ReadContext,
    SubresourceContext,
)
from vk_sandbox.apiserver.handlers.request import MAX_BODY
from vk_sandbox.apiserver.handlers.router import Router
from vk_sandbox.apiserver.kubeconfig import cert_user, write_kubeconfig
from vk_sandbox.apiserver.store import Store
from vk_sandbox.apiserver.tokens import TokenSigner
from vk_sandbox.apiserver.workers import HollowKubelets, WorkerSpec

__all__ = ["ControllerContext", "SandboxAPIServer", "WorkerSpec"]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
ADMIN_USER = "sandbox-admin"


class SandboxAPIServer:
    """An in-memory Kubernetes API server on HTTPS, with its CA, admin kubeconfig and built-in controllers."""

    def __init__(
        self,
        *,
        directory: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        node_lease_grace_seconds: float = 40.0,
        controllers: bool = True,
        bookmark_interval: float = 1.0,
        workers: WorkerSpec | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.port = port
        self.host = host
        self.node_lease_grace_seconds = node_lease_grace_seconds
        self.controllers = controllers
        self.bookmark_interval = bookmark_interval
        self.workers = workers or WorkerSpec()
        self.log = structlog.get_logger("vk_sandbox.apiserver")
        self.store = Store()
        # Authenticated requests with a writing verb (POST, PUT, PATCH, DELETE), by user, allowed or not.
        self.write_requests: dict[str, int] = {}
        self.requests: dict[str, int] = {}  # every authenticated request, by user (benchmarks count them)
        self.ca = CertificateAuthority()
        self.signer = TokenSigner()
        self.authenticator = Authenticator(self.store, self.signer)
        self.authorizer = Authorizer(self.store)
        self.url = ""
        self.kubeconfig_path = self.directory / "kubeconfig"
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        cert, key = self.ca.issue("kube-apiserver-kubelet-client", ["system:masters"], client=True)
        self._kubelet_client_cert = (cert, key)
        self.kubelet_client_ssl = self._client_context(cert, key, "kubelet-client")
        self._seed()

    # ---- files and TLS

    def _write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def _client_context(self, cert: bytes, key: bytes, stem: str) -> ssl.SSLContext:
        self.directory.mkdir(parents=True, exist_ok=True)
        cert_path = self._write(f"{stem}.crt", cert, 0o644)
        key_path = self._write(f"{stem}.key", key)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca.cert_pem.decode())
        # Kubelets are reached by IP and their serving certificates name IPs or node names; chain-to-CA is the check.
        ctx.check_hostname = False
        ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def _server_context(self) -> ssl.SSLContext:
        cert, key = self.ca.issue(
            "kube-apiserver", [], server_names=SERVER_NAMES, ip_addresses=[self.host], client=False, server=True
        )
        cert_path = self._write("apiserver.crt", cert, 0o644)
        key_path = self._write("apiserver.key", key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)
        ctx.load_verify_locations(cadata=self.ca.cert_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def _seed(self) -> None:
        for ns in DEFAULT_NAMESPACES:
            self.store.create_now("namespaces", {"metadata": {"name": ns}})
        for key, obj in bootstrap_rbac():
            self.store.create_now(key, obj)
        # The "kubernetes" Service every real cluster has.
        self.store.create_now(
            "services",
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
            },
        )

    # ---- lifecycle

    async def __aenter__(self) -> SandboxAPIServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = self._write("ca.crt", self.ca.cert_pem, 0o644)
        app = web.Application(client_max_size=MAX_BODY + 1024)
        app.router.add_route("*", "/{tail:.*}", self._router().dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._server_context())
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self.url = f"https://{self.host}:{self.port}"
        cert, key = self.ca.issue(ADMIN_USER, ["system:masters"], client=True)
        self._write_kubeconfig(self.kubeconfig_path, user=ADMIN_USER, cert=cert, key=key)
        if self.controllers:
            self._start_controllers()
        if self.workers.count:
            # Worker nodes are there with or without controllers (a test may bind pods to them itself).
            hollow = HollowKubelets(
                self.store, self.workers, lease_renew_seconds=max(0.1, min(10.0, self.node_lease_grace_seconds / 4))
            )
            hollow.register()
            self._tasks.append(create_guarded_task(hollow.run(), name="sandbox-hollow-kubelets"))
        self.log.debug("sandbox apiserver ready", url=self.url, kubeconfig=str(self.kubeconfig_path))
        return self

    def _router(self) -> Router:
        """The HTTP side, each part given only the pieces of this server it needs."""
        return Router(
            access=AccessContext(self.authenticator, self.authorizer),
            reads=ReadContext(self.store, self.bookmark_interval),
            subresources=SubresourceContext(self.store, self.signer),
            kubelets=KubeletContext(self.store, self.kubelet_client_ssl),
            address=lambda: self.host_port,  # the port is known only once the site listens
            write_requests=self.write_requests,
            requests=self.requests,
        )

    def _start_controllers(self) -> None:
        try:
            mod: Any = importlib.import_module("vk_sandbox.apiserver.controllers")
        except ModuleNotFoundError as exc:
            if exc.name != "vk_sandbox.apiserver.controllers":
                raise
            self.log.warning("sandbox controllers are not available in this build")
            return
        ctx = ControllerContext(
            store=self.store,
            ca=self.ca,
            node_lease_grace_seconds=self.node_lease_grace_seconds,
            admission=Admission(self.store),
        )
        for controller in mod.CONTROLLERS:
            name = getattr(controller, "__name__", "controller")
            self._tasks.append(create_guarded_task(controller(ctx), name=f"sandbox-{name}"))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as err:  # already logged by the guard
                self.log.debug("controller ended with an error", error=repr(err))
        self._tasks.clear()
        for w in list(self.store.events.watchers):
            w.aclose_now()
        if self._runner is not None:
            # Abort client connections first: a graceful TLS close waits for the peer's close_notify, which a
            # vanished client never sends, and would leave the socket open past the event loop's life.
            server = self._runner.server
            for conn in list(server.connections) if server is not None else []:
                transport = conn.transport
                if transport is not None:
                    transport.abort()
            await self._runner.cleanup()
            self._runner = None

    # ---- identities

    def _write_kubeconfig(
        self,
        path: Path,
        *,
        user: str,
        cert: bytes | None = None,
        key: bytes | None = None,
        token: str | None = None,
    ) -> Path:
        if token is not None:
            entry: dict[str, Any] = {"token": token}
        else:
            assert cert is not None and key is not None
            entry = cert_user(cert, key)
        return write_kubeconfig(
            path, server=self.url, ca_pem=self.ca.cert_pem, cluster="sandbox", user=user, entry=entry
        )

    def mint_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
    ) -> str:
        """A service-account JWT the server accepts. Bound to the ServiceAccount's UID when it exists (then it dies
        with it); a token for a ServiceAccount not (yet) stored stays valid until it expires."""
        sa = self.store.get("serviceaccounts", namespace, service_account)
        uid = sa["metadata"]["uid"] if sa is not None else ""
        return self.signer.mint(
            namespace, service_account, sa_uid=uid, audiences=audiences, expiration_seconds=expiration_seconds
        )

    def add_static_token(self, token: str, user: str, groups: list[str] | None = None) -> None:
        self.authenticator.add_static_token(token, user, list(groups or []))

    def user_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        user: str | None = None,
        groups: list[str] | None = None,
    ) -> Path:
        """A kubeconfig for another identity: a bearer ``token`` (registered as static for ``user`` when both are
        given), or a fresh client certificate with CN ``user`` and O ``groups``."""
        groups = list(groups or [])
        if token is not None:
            if user is not None:
                self.add_static_token(token, user, groups)
            return self._write_kubeconfig(path, user=user or "token-user", token=token)
        if user is None:
            raise ValueError("user_kubeconfig needs a token or a user")
        cert, key = self.ca.issue(user, groups, client=True)
        return self._write_kubeconfig(path, user=user, cert=cert, key=key)
