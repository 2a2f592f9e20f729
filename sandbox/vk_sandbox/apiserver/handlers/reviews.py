"""TokenReview, SubjectAccessReview, SelfSubjectAccessReview and SelfSubjectRulesReview: the server's own
authentication and RBAC, answered for someone else (or for the caller)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vk_sandbox.apiserver.auth import Attributes, Identity, identity_from_claims
from vk_sandbox.apiserver.context import AccessContext
from vk_sandbox.apiserver.errors import field_invalid, method_not_allowed
from vk_sandbox.apiserver.handlers.request import Target, read_object
from vk_sandbox.apiserver.handlers.response import json_response

REVIEWS = frozenset(
    {
        "tokenreviews.authentication.k8s.io",
        "subjectaccessreviews.authorization.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    }
)


class Reviews:
    def __init__(self, ctx: AccessContext) -> None:
        self.ctx = ctx

    async def review(self, request: web.Request, ident: Identity, t: Target) -> web.Response:
        """POST of any review kind: the spec comes back with the status filled in (201, nothing is stored)."""
        if request.method != "POST" or t.name is not None:
            raise method_not_allowed()
        body = await read_object(request, t.rt)
        spec = body.get("spec")
        if not isinstance(spec, dict):
            raise field_invalid(t.rt.kind, None, "spec", "Required value", reason="FieldValueRequired")
        out: dict[str, Any] = {
            "kind": t.rt.kind,
            "apiVersion": t.rt.api_version,
            "metadata": {"creationTimestamp": None},
            "spec": spec,
        }
        if t.rt.plural == "tokenreviews":
            out["status"] = self.token_review(spec)
        elif t.rt.plural == "selfsubjectrulesreviews":
            res, non_res = self.ctx.authorizer.rules_for(ident, str(spec.get("namespace") or ""))
            out["status"] = {"resourceRules": res, "nonResourceRules": non_res, "incomplete": False}
        else:
            if t.rt.plural == "selfsubjectaccessreviews":
                subject = ident
                spec = dict(spec)
                spec.update({"user": ident.user, "groups": list(ident.groups)})
            else:
                subject = _subject(spec)
            allowed, reason = self.ctx.authorizer.authorize(subject, _attributes(t.rt.kind, spec))
            out["status"] = {"allowed": allowed}
            if reason:
                out["status"]["reason"] = reason
        return json_response(out, status=201)

    def token_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The status of a TokenReview for ``spec`` (``token``, optional ``audiences``)."""
        token = spec.get("token")
        audiences = spec.get("audiences") or None
        if not isinstance(token, str) or not token:
            return {"authenticated": False, "error": "token is required", "user": {}}
        authenticator = self.ctx.authenticator
        if token in authenticator.static_tokens:
            ident = authenticator.static_tokens[token]
            return {"authenticated": True, "user": ident.as_user_info(), "audiences": audiences or []}
        claims = authenticator.claims(token, audiences if isinstance(audiences, list) else None)
        if claims is None:
            return {"authenticated": False, "error": "invalid bearer token", "user": {}}
        ident = identity_from_claims(claims)
        aud = [a for a in claims.audiences if not audiences or a in audiences]
        return {"authenticated": True, "user": ident.as_user_info(), "audiences": aud}


def _subject(spec: dict[str, Any]) -> Identity:
    """The user a SubjectAccessReview asks about; 422 when it names neither a user nor a group."""
    groups = spec.get("groups") or []
    if not isinstance(groups, list) or (not spec.get("user") and not groups):
        why = "at least one of user or group must be specified"
        raise field_invalid("SubjectAccessReview", None, "spec.user", why, summary=f"Invalid value: {why}")
    return Identity(str(spec.get("user") or ""), tuple(str(g) for g in groups), str(spec.get("uid") or ""))


def _attributes(kind: str, spec: dict[str, Any]) -> Attributes:
    """The request an access review asks about: resourceAttributes or nonResourceAttributes."""
    ra = spec.get("resourceAttributes")
    nra = spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        return Attributes(
            verb=str(ra.get("verb", "")),
            api_group=str(ra.get("group", "")),
            resource=str(ra.get("resource", "")),
            subresource=str(ra.get("subresource", "")),
            namespace=str(ra.get("namespace", "")),
            name=str(ra.get("name", "")),
        )
    if isinstance(nra, dict):
        return Attributes(verb=str(nra.get("verb", "")), path=str(nra.get("path", "")))
    raise field_invalid(
        kind,
        None,
        "spec.resourceAttributes",
        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        reason="FieldValueRequired",
        summary="Required value",
    )
