"""Per request: who is asking (bearer token, client certificate, impersonation) and whether RBAC lets them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vk_sandbox.apiserver.auth import ANONYMOUS_IDENTITY, Attributes, Identity, identity_from_peercert
from vk_sandbox.apiserver.context import AccessContext
from vk_sandbox.apiserver.errors import ApiError, bad_request


class RequestAccess:
    def __init__(self, ctx: AccessContext) -> None:
        self.ctx = ctx

    def identify(self, request: web.Request) -> Identity:
        """The identity the request acts as: authenticated, then impersonated when it asks and may."""
        return self.impersonate(request, self.authenticate(request))

    def authenticate(self, request: web.Request) -> Identity:
        auth = request.headers.get("Authorization", "")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            ident = self.ctx.authenticator.token_identity(token.strip())
            if ident is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            return ident
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        tls = request.transport.get_extra_info("ssl_object") if request.transport else None
        ident = identity_from_peercert(peer, tls.getpeercert(binary_form=True) if peer and tls else None)
        return ident or ANONYMOUS_IDENTITY

    def impersonate(self, request: web.Request, ident: Identity) -> Identity:
        """Honour Impersonate-User/-Group (kubectl --as/--as-group) when RBAC allows the impersonate verb."""
        user = request.headers.get("Impersonate-User")
        groups = request.headers.getall("Impersonate-Group", [])
        if not user:
            if groups:
                raise bad_request("impersonating groups requires impersonating a user")
            return ident
        if user.startswith("system:serviceaccount:") and user.count(":") == 3:
            _, _, ns, name = user.split(":")
            self.authorize(ident, Attributes("impersonate", resource="serviceaccounts", namespace=ns, name=name))
        else:
            self.authorize(ident, Attributes("impersonate", resource="users", name=user))
        for g in groups:
            self.authorize(ident, Attributes("impersonate", resource="groups", name=g))
        if user.startswith("system:serviceaccount:") and not groups:
            ns = user.split(":")[2] if user.count(":") == 3 else ""
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        return Identity(user, (*groups, "system:authenticated"))

    def authorize(self, ident: Identity, attrs: Attributes) -> None:
        """ApiError 403, worded as the real server's, unless RBAC allows ``attrs``."""
        allowed, _ = self.ctx.authorizer.authorize(ident, attrs)
        if allowed:
            return
        msg = self.ctx.authorizer.forbidden_message(ident, attrs)
        details: dict[str, Any] = {}
        if attrs.is_resource:
            details = {"kind": attrs.resource}
            if attrs.api_group:
                details["group"] = attrs.api_group
            if attrs.name:
                details["name"] = attrs.name
            res = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
            msg = f'{res} "{attrs.name}" is forbidden: {msg}' if attrs.name else f"{res} is forbidden: {msg}"
        else:
            msg = f"forbidden: {msg}"
        raise ApiError(403, "Forbidden", msg, details=details or None)
