"""Admission: the one place an object written through the API passes between decoding and the store.

``writes`` calls ``admit`` for every create, update and patch (main resource, status and approval, server-side
apply included), with the object as it will be handed to the store. The store then runs defaults and validation.
Today it holds the one request-dependent change the sandbox makes: a CertificateSigningRequest records who asked,
whatever the body says (the real server does this in the CSR's create strategy). Mutating and validating admission
webhooks (issue 11) go here too; they will need this step async, and defaults run before them.
"""

from __future__ import annotations

from typing import Any, Literal

from vk_sandbox.apiserver.auth import Identity
from vk_sandbox.apiserver.resources import ResourceType

Operation = Literal["CREATE", "UPDATE"]

CSR = "certificatesigningrequests.certificates.k8s.io"


def admit(op: Operation, rt: ResourceType, subresource: str | None, obj: dict[str, Any], ident: Identity) -> None:
    """Change ``obj`` (in the store's form) in place, or raise ApiError to refuse the write."""
    if op == "CREATE" and rt.key == CSR and not subresource:
        _record_requester(obj, ident)


def _record_requester(csr: dict[str, Any], ident: Identity) -> None:
    spec = csr.get("spec")
    if not isinstance(spec, dict):
        return
    spec["username"] = ident.user
    spec["groups"] = list(ident.groups)
    if ident.uid:
        spec["uid"] = ident.uid
    else:
        spec.pop("uid", None)
    if ident.extra:
        spec["extra"] = ident.extra
