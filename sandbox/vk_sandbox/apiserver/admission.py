"""Admission: the one place an object written through the API passes between decoding and the store.

``writes`` awaits ``Admission.admit`` for every create, update and patch (main resource, status and approval,
server-side apply included), with the object as it will be handed to the store and the stored one it replaces.
In the real server's order: the object is defaulted, the request-dependent built-in step runs (a
CertificateSigningRequest records who asked, whatever the body says, as the CSR's create strategy does), then the
mutating admission webhooks (``webhooks.mutate``); the result is defaulted and validated again and the validating
admission webhooks (``webhooks.validate``) see it. The store then defaults and validates once more (a no-op) and
writes. Without any webhook configuration only the built-in step runs.
"""

from __future__ import annotations

from typing import Any, Literal

from vk_sandbox.apiserver import webhooks
from vk_sandbox.apiserver.auth import Identity
from vk_sandbox.apiserver.defaults import default_object, validate_object
from vk_sandbox.apiserver.resources import ResourceType
from vk_sandbox.apiserver.store import Store

Operation = Literal["CREATE", "UPDATE"]

CSR = "certificatesigningrequests.certificates.k8s.io"


class Admission:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def admit(
        self,
        op: Operation,
        rt: ResourceType,
        subresource: str | None,
        obj: dict[str, Any],
        ident: Identity,
        *,
        old: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """The object to write (``obj`` changed in place, or the webhooks' version); ApiError refuses the write."""
        if op == "CREATE" and rt.key == CSR and not subresource:
            _record_requester(obj, ident)
        if rt.key in webhooks.EXEMPT or not webhooks.configured(self.store):
            return obj
        meta = obj.get("metadata") or {}
        req = webhooks.Request(
            operation=op,
            rt=rt,
            subresource=subresource,
            namespace=str(meta.get("namespace") or "") if rt.namespaced else "",
            name=str(meta.get("name") or ""),
            ident=ident,
            dry_run=dry_run,
            old=old,
        )
        default_object(rt, obj)
        obj = await webhooks.mutate(self.store, req, obj)
        default_object(rt, obj)
        validate_object(rt, obj)
        await webhooks.validate(self.store, req, obj)
        return obj


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
