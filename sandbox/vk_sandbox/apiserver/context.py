"""The narrow views of the server that its parts get to work with, instead of the server object itself.

Controllers get the store, the CA and admission (the pods they create pass it, as a real controller's creates
through the API do), never HTTP. Each HTTP handler module gets only what it reads: the REST verbs
the store (reads also the bookmark interval); subresources the store and the token signer; reviews and request
authentication the authenticator and authorizer; the kubelet proxy and the metrics API the store and the
kubelet-client TLS context.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from vk_sandbox.apiserver.admission import Admission
from vk_sandbox.apiserver.auth import Authenticator, Authorizer
from vk_sandbox.apiserver.certs import CertificateAuthority
from vk_sandbox.apiserver.store import Store
from vk_sandbox.apiserver.tokens import TokenSigner


@dataclass
class ControllerContext:
    store: Store
    ca: CertificateAuthority
    node_lease_grace_seconds: float
    admission: Admission


@dataclass(frozen=True)
class AccessContext:
    """Who is asking and what they may do: bearer tokens, client certificates, RBAC."""

    authenticator: Authenticator
    authorizer: Authorizer


@dataclass(frozen=True)
class ReadContext:
    """What reads need: the store (whose open watches the server closes when it stops) and how often an idle watch
    gets a bookmark."""

    store: Store
    bookmark_interval: float


@dataclass(frozen=True)
class SubresourceContext:
    """Binding, eviction and scale write through the store; ServiceAccount tokens are signed by the signer."""

    store: Store
    signer: TokenSigner


@dataclass(frozen=True)
class KubeletContext:
    """How to reach kubelets: the nodes in the store and the kubelet-client certificate (verifying kubelets against
    the sandbox CA)."""

    store: Store
    client_ssl: ssl.SSLContext
