"""Who is asking (x509 client certificates, bearer tokens) and may they (RBAC, with system:masters bypassing)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from vk_sandbox.apiserver.store import Store
from vk_sandbox.apiserver.tokens import TokenClaims, TokenSigner

MASTERS = "system:masters"
# Who presented which credential, as the real authenticators record it in the user's extra.
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def as_user_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"username": self.user, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = self.extra
        return info


ANONYMOUS_IDENTITY = Identity(ANONYMOUS, ("system:unauthenticated",))


def identity_from_peercert(peercert: dict[str, Any] | None, der: bytes | None = None) -> Identity | None:
    """CN is the user and every O a group, as the real server reads client certificates; with the certificate's
    ``der``, the credential id is its SHA-256 (``X509SHA256=<hex>``)."""
    if not peercert:
        return None
    cn = ""
    orgs: list[str] = []
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    extra = {CREDENTIAL_ID: [f"X509SHA256={hashlib.sha256(der).hexdigest()}"]} if der else {}
    return Identity(cn, (*orgs, "system:authenticated"), extra=extra)


def identity_from_claims(claims: TokenClaims) -> Identity:
    extra: dict[str, list[str]] = {}
    if claims.pod:
        extra["authentication.kubernetes.io/pod-name"] = [claims.pod.get("name", "")]
        extra["authentication.kubernetes.io/pod-uid"] = [claims.pod.get("uid", "")]
    if claims.jti:
        extra[CREDENTIAL_ID] = [f"JTI={claims.jti}"]
    return Identity(claims.username, tuple(claims.groups), claims.uid, extra)


class Authenticator:
    """Bearer tokens: static ones registered by tests, then service-account JWTs checked against the store."""

    def __init__(self, store: Store, signer: TokenSigner) -> None:
        self.store = store
        self.signer = signer
        self.static_tokens: dict[str, Identity] = {}

    def add_static_token(self, token: str, user: str, groups: list[str]) -> None:
        self.static_tokens[token] = Identity(user, (*groups, "system:authenticated"))

    def claims(self, token: str, audiences: list[str] | None = None) -> TokenClaims | None:
        claims = self.signer.verify(token, audiences=audiences)
        if claims is None:
            return None
        # Like the real server, a token dies with its ServiceAccount (and with the pod it is bound to).
        if claims.uid:
            sa = self.store.get("serviceaccounts", claims.namespace, claims.service_account)
            if sa is None or sa["metadata"]["uid"] != claims.uid:
                return None
        if claims.pod and claims.pod.get("uid"):
            pod = self.store.get("pods", claims.namespace, claims.pod.get("name", ""))
            if pod is None or pod["metadata"]["uid"] != claims.pod["uid"]:
                return None
        return claims

    def token_identity(self, token: str, audiences: list[str] | None = None) -> Identity | None:
        if token in self.static_tokens:
            return self.static_tokens[token]
        claims = self.claims(token, audiences)
        return identity_from_claims(claims) if claims is not None else None


@dataclass(frozen=True)
class Attributes:
    """What a request wants to do, in RBAC's terms."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # for non-resource requests

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    def describe(self) -> str:
        if not self.is_resource:
            return f'cannot {self.verb} path "{self.path}"'
        res = self.resource + (f"/{self.subresource}" if self.subresource else "")
        scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        group = f'in API group "{self.api_group}"'
        return f'cannot {self.verb} resource "{res}" {group} {scope}'


def _subject_matches(subject: dict[str, Any], ident: Identity, binding_ns: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return bool(name == ident.user)
    if kind == "Group":
        return name in ident.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return ident.user == f"system:serviceaccount:{ns}:{name}"
    return False


def _rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.is_resource:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.api_group not in groups:
        return False
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    ok = "*" in resources or wanted in resources or (attrs.subresource and f"*/{attrs.subresource}" in resources)
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


class Authorizer:
    """RBAC over the stored Roles, ClusterRoles and bindings; system:masters may do anything."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _role_rules(self, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            role = self.store.get("clusterroles.rbac.authorization.k8s.io", None, name)
        elif kind == "Role" and namespace:
            role = self.store.get("roles.rbac.authorization.k8s.io", namespace, name)
        else:
            role = None
        if role is None:
            return []
        rules = role.get("rules") or []
        # Aggregated ClusterRoles: pull in the rules of every ClusterRole the selectors match.
        agg = role.get("aggregationRule") if kind == "ClusterRole" else None
        if isinstance(agg, dict):
            for sel in agg.get("clusterRoleSelectors") or []:
                labels = (sel or {}).get("matchLabels") or {}
                for other in self.store.all_objects("clusterroles.rbac.authorization.k8s.io"):
                    olabels = other["metadata"].get("labels") or {}
                    if labels and all(olabels.get(k) == v for k, v in labels.items()):
                        rules = rules + (other.get("rules") or [])
        return [r for r in rules if isinstance(r, dict)]

    def authorize(self, ident: Identity, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason)."""
        if MASTERS in ident.groups:
            return True, ""
        for crb in self.store.all_objects("clusterrolebindings.rbac.authorization.k8s.io"):
            if any(_subject_matches(s, ident, "") for s in crb.get("subjects") or [] if isinstance(s, dict)):
                for rule in self._role_rules(crb.get("roleRef") or {}, ""):
                    if _rule_allows(rule, attrs):
                        name = crb["metadata"]["name"]
                        return True, f'RBAC: allowed by ClusterRoleBinding "{name}"'
        if attrs.namespace:
            for rb in self.store.all_objects("rolebindings.rbac.authorization.k8s.io"):
                if rb["metadata"].get("namespace") != attrs.namespace:
                    continue
                if any(
                    _subject_matches(s, ident, attrs.namespace) for s in rb.get("subjects") or [] if isinstance(s, dict)
                ):
                    for rule in self._role_rules(rb.get("roleRef") or {}, attrs.namespace):
                        if _rule_allows(rule, attrs):
                            name = rb["metadata"]["name"]
                            return True, f'RBAC: allowed by RoleBinding "{name}/{attrs.namespace}"'
        return False, ""

    def rules_for(self, ident: Identity, namespace: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(resourceRules, nonResourceRules) that apply to ``ident`` in ``namespace`` (SelfSubjectRulesReview)."""
        rules: list[dict[str, Any]] = []
        for crb in self.store.all_objects("clusterrolebindings.rbac.authorization.k8s.io"):
            if any(_subject_matches(s, ident, "") for s in crb.get("subjects") or [] if isinstance(s, dict)):
                rules += self._role_rules(crb.get("roleRef") or {}, "")
        for rb in self.store.all_objects("rolebindings.rbac.authorization.k8s.io"):
            if (
                namespace
                and rb["metadata"].get("namespace") == namespace
                and any(_subject_matches(s, ident, namespace) for s in rb.get("subjects") or [] if isinstance(s, dict))
            ):
                rules += self._role_rules(rb.get("roleRef") or {}, namespace)
        resource_rules = [
            {k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if r.get(k)}
            for r in rules
            if r.get("resources")
        ]
        non_resource = [
            {"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]}
            for r in rules
            if r.get("nonResourceURLs")
        ]
        return resource_rules, non_resource

    def forbidden_message(self, ident: Identity, attrs: Attributes) -> str:
        return f'User "{ident.user}" {attrs.describe()}'


DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
    "/healthz",
    "/livez",
    "/readyz",
]
PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def bootstrap_rbac() -> list[tuple[str, dict[str, Any]]]:
    """The default roles and bindings a fresh real cluster has that matter here."""
    rbac = "rbac.authorization.k8s.io"
    gv = f"{rbac}/v1"

    def crole(name: str, rules: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        return (
            f"clusterroles.{rbac}",
            {"apiVersion": gv, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules},
        )

    def crb(name: str, role: str, groups: list[str]) -> tuple[str, dict[str, Any]]:
        return (
            f"clusterrolebindings.{rbac}",
            {
                "apiVersion": gv,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": rbac, "kind": "Group", "name": g} for g in groups],
            },
        )

    return [
        crole(
            "cluster-admin",
            [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}],
        ),
        crole("system:discovery", [{"nonResourceURLs": DISCOVERY_URLS, "verbs": ["get"]}]),
        crole("system:public-info-viewer", [{"nonResourceURLs": PUBLIC_URLS, "verbs": ["get"]}]),
        crole(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ],
        ),
        crb("cluster-admin", "cluster-admin", [MASTERS]),
        crb("system:discovery", "system:discovery", ["system:authenticated"]),
        crb(
            "system:public-info-viewer", "system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]
        ),
        crb("system:basic-user", "system:basic-user", ["system:authenticated"]),
    ]
