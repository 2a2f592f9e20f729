"""What the built-in controllers get to work with: the store and the CA, never HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from vk_sandbox.apiserver.certs import CertificateAuthority
from vk_sandbox.apiserver.store import Store


@dataclass
class ControllerContext:
    store: Store
    ca: CertificateAuthority
    node_lease_grace_seconds: float
