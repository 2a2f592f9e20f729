"""Every Kubernetes API permission `vk-provider run` needs, in one place.

``manifests/rbac.yaml``'s ClusterRole is tested against this list (tests/test_permissions.py: it grants
exactly these), and `vk-provider doctor` asks the API server about each of them with a
SelfSubjectAccessReview. A new API call in the daemon adds its permission here first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    """One verb on one resource (``subresource`` as in ``pods/status``), cluster-wide, and why."""

    group: str
    resource: str
    verb: str
    why: str
    subresource: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        where = f"{self.full_resource}.{self.group}" if self.group else self.full_resource
        return f"{self.verb} {where}"


def _each(group: str, resource: str, verbs: str, why: str) -> list[Permission]:
    base, _, sub = resource.partition("/")
    return [Permission(group, base, verb, why, sub) for verb in verbs.split()]


REQUIRED: tuple[Permission, ...] = tuple(
    [
        *_each("", "nodes", "get create patch", "register or adopt the virtual Node"),
        *_each("", "nodes/status", "patch", "heartbeat the Node's status"),
        *_each("coordination.k8s.io", "leases", "get create update", "the node Lease and the leader election Lease"),
        *_each("", "pods", "get list watch delete", "watch the node's pods and remove finished ones"),
        *_each(
            "",
            "pods",
            "patch",
            "write back the group id, size and zone annotations; elastic: a burst pod's toleration and deletion cost",
        ),
        *_each("", "pods/status", "get patch update", "write pod status"),
        *_each("", "pods/eviction", "create", "evict a spot pod at its release notice (PDBs honoured)"),
        *_each("", "configmaps", "get", "resolve a pod's ConfigMap references"),
        *_each("", "secrets", "get", "resolve a pod's Secret references and image pull secrets"),
        *_each("", "services", "list", "service-link environment variables"),
        *_each("", "serviceaccounts/token", "create", "projected service-account tokens"),
        *_each("", "events", "create patch", "Kubernetes Events for provider decisions"),
        *_each("authentication.k8s.io", "tokenreviews", "create", "authenticate kubelet API clients"),
        *_each("authorization.k8s.io", "subjectaccessreviews", "create", "authorize kubelet API clients"),
        *_each("certificates.k8s.io", "certificatesigningrequests", "get create", "the kubelet serving certificate"),
        *_each("", "pods/binding", "create", "elastic: bind a burst pod to the virtual node"),
        *_each("", "namespaces", "list watch", "elastic: match the profile's namespaceSelectors"),
        *_each("", "secrets", "create update", "elastic: keep the webhook's CA and serving certificate"),
        *_each(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "get update",
            "elastic: write the webhook's caBundle",
        ),
    ]
)
