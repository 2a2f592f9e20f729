"""RBAC evaluation over stored roles and bindings, and identities from client certificates."""

from __future__ import annotations

from typing import Any

from vk_sandbox.apiserver.auth import Attributes, Authorizer, Identity, bootstrap_rbac, identity_from_peercert
from vk_sandbox.apiserver.store import Store

RBAC = "rbac.authorization.k8s.io"


def _store() -> Store:
    s = Store()
    for ns in ("default", "other"):
        s.create_now("namespaces", {"metadata": {"name": ns}})
    for key, obj in bootstrap_rbac():
        s.create_now(key, obj)
    return s


def _binding(
    kind: str, name: str, role_kind: str, role: str, subjects: list[dict[str, Any]], namespace: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta, "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role}, "subjects": subjects}


def test_masters_bypass_and_anonymous_discovery() -> None:
    """system:masters may do anything; authenticated users may read discovery paths but not resources."""
    az = Authorizer(_store())
    assert az.authorize(Identity("root", ("system:masters",)), Attributes("delete", resource="nodes", name="n"))[0]
    user = Identity("u", ("system:authenticated",))
    assert az.authorize(user, Attributes("get", path="/apis/apps/v1"))[0]
    assert not az.authorize(user, Attributes("get", resource="pods", namespace="default"))[0]
    assert az.authorize(Identity("system:anonymous", ("system:unauthenticated",)), Attributes("get", path="/version"))[
        0
    ]


def test_role_bindings_scope_resource_names_and_subresources() -> None:
    """A RoleBinding grants only in its namespace; resourceNames narrow a rule; a subresource needs its own entry;
    ServiceAccount subjects match their username."""
    s = _store()
    s.create_now(
        f"clusterroles.{RBAC}",
        {
            "metadata": {"name": "pod-reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["only"], "verbs": ["get"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
            ],
        },
    )
    s.create_now(
        f"rolebindings.{RBAC}",
        _binding(
            "RoleBinding",
            "b",
            "ClusterRole",
            "pod-reader",
            [{"kind": "ServiceAccount", "name": "vk"}],
            namespace="default",
        ),
    )
    az = Authorizer(s)
    sa = Identity("system:serviceaccount:default:vk", ("system:serviceaccounts",))
    assert az.authorize(sa, Attributes("list", resource="pods", namespace="default"))[0]
    assert not az.authorize(sa, Attributes("list", resource="pods", namespace="other"))[0]
    assert not az.authorize(sa, Attributes("get", resource="pods", subresource="log", namespace="default"))[0]
    assert az.authorize(sa, Attributes("get", resource="configmaps", namespace="default", name="only"))[0]
    assert not az.authorize(sa, Attributes("get", resource="configmaps", namespace="default", name="else"))[0]
    assert az.authorize(
        sa, Attributes("update", api_group="coordination.k8s.io", resource="leases", namespace="default", name="x")
    )[0]
    other_sa = Identity("system:serviceaccount:other:vk", ("system:serviceaccounts",))
    assert not az.authorize(other_sa, Attributes("list", resource="pods", namespace="default"))[0]


def test_cluster_role_binding_to_group_and_aggregation() -> None:
    """A ClusterRoleBinding to a group grants cluster-wide; an aggregated ClusterRole includes matching roles."""
    s = _store()
    s.create_now(
        f"clusterroles.{RBAC}",
        {
            "metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]},
            "rules": [],
        },
    )
    s.create_now(
        f"clusterroles.{RBAC}",
        {
            "metadata": {"name": "part", "labels": {"agg": "yes"}},
            "rules": [{"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["patch"]}],
        },
    )
    s.create_now(
        f"clusterrolebindings.{RBAC}",
        _binding("ClusterRoleBinding", "g", "ClusterRole", "agg", [{"kind": "Group", "name": "system:nodes"}]),
    )
    az = Authorizer(s)
    node = Identity("system:node:vk", ("system:nodes", "system:authenticated"))
    assert az.authorize(node, Attributes("patch", resource="nodes", subresource="status", name="vk"))[0]
    assert not az.authorize(node, Attributes("delete", resource="nodes", name="vk"))[0]


def test_identity_from_peer_certificate() -> None:
    """CN is the user and each O a group; no certificate means no identity."""
    peer = {"subject": ((("organizationName", "system:nodes"),), (("commonName", "system:node:vk"),))}
    ident = identity_from_peercert(peer)
    assert ident is not None and ident.user == "system:node:vk" and "system:nodes" in ident.groups
    assert identity_from_peercert(None) is None and identity_from_peercert({}) is None


def test_identities_carry_their_credential_id() -> None:
    """As the real authenticators: a client certificate's id is its SHA-256, a service-account token's its JTI."""
    import hashlib

    from vk_sandbox.apiserver.auth import identity_from_claims
    from vk_sandbox.apiserver.tokens import TokenSigner

    peer = {"subject": ((("commonName", "alice"),),)}
    ident = identity_from_peercert(peer, b"der-bytes")
    assert ident is not None
    assert ident.extra == {
        "authentication.kubernetes.io/credential-id": [f"X509SHA256={hashlib.sha256(b'der-bytes').hexdigest()}"]
    }
    signer = TokenSigner()
    claims = signer.verify(signer.mint("default", "builder"))
    assert claims is not None and claims.jti
    assert identity_from_claims(claims).extra == {"authentication.kubernetes.io/credential-id": [f"JTI={claims.jti}"]}
