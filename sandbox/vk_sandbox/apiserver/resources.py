"""The resource types the sandbox API server serves, keyed as ``plural`` or ``plural.group``."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for core
    version: str  # "v1"
    plural: str  # "pods"
    kind: str  # "Pod"
    namespaced: bool
    short_names: tuple[str, ...] = ()
    singular: str = ""
    # Subresources served besides the main resource, e.g. ("status", "binding").
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    # The store key holding the objects. events.k8s.io events live with core/v1 events.
    storage: str = ""
    # Name validation: "subdomain" (DNS-1123 subdomain), "label" (DNS-1123 label) or "path" (path segment).
    name_rule: str = "subdomain"
    # Field selectors accepted besides metadata.name and metadata.namespace.
    field_labels: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> str:
        return self.storage or self.key

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "source",
    "type",
)
_CREATE_ONLY = ("create",)

# The kinds kept in the Store.
_STORED: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        ("ns",),
        "namespace",
        ("status",),
        name_rule="label",
        field_labels=("status.phase",),
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        "pod",
        ("status", "binding", "log", "exec", "attach", "portforward", "eviction"),
        categories=("all",),
        field_labels=_POD_FIELDS,
    ),
    ResourceType(
        "", "v1", "nodes", "Node", False, ("no",), "node", ("status", "proxy"), field_labels=("spec.unschedulable",)
    ),
    # POST namespaces/NS/bindings is the older spelling of pods/NAME/binding (the Python clients use it).
    ResourceType("", "v1", "bindings", "Binding", True, (), "binding", verbs=_CREATE_ONLY),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",), "configmap"),
    ResourceType("", "v1", "secrets", "Secret", True, (), "secret", field_labels=("type",)),
    ResourceType(
        "", "v1", "services", "Service", True, ("svc",), "service", ("status",), categories=("all",), name_rule="label"
    ),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), "serviceaccount", ("token",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",), "event", field_labels=_EVENT_FIELDS),
    ResourceType(
        "events.k8s.io", "v1", "events", "Event", True, ("ev",), "event", storage="events", field_labels=_EVENT_FIELDS
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, (), "lease"),
    ResourceType(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        False,
        ("csr",),
        "certificatesigningrequest",
        ("approval", "status"),
        field_labels=("spec.signerName",),
    ),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        False,
        (),
        "tokenreview",
        verbs=_CREATE_ONLY,
        name_rule="path",
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        False,
        (),
        "subjectaccessreview",
        verbs=_CREATE_ONLY,
        name_rule="path",
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        (),
        "selfsubjectaccessreview",
        verbs=_CREATE_ONLY,
        name_rule="path",
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        (),
        "selfsubjectrulesreview",
        verbs=_CREATE_ONLY,
        name_rule="path",
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), "role", name_rule="path"),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (), "clusterrole", name_rule="path"
    ),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), "rolebinding", name_rule="path"
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        (),
        "clusterrolebinding",
        name_rule="path",
    ),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        "deployment",
        ("status", "scale"),
        categories=("all",),
    ),
    ResourceType(
        "apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), "replicaset", ("status", "scale"), categories=("all",)
    ),
    ResourceType("batch", "v1", "jobs", "Job", True, (), "job", ("status",), categories=("all",)),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",), "endpoints"),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, (), "endpointslice"),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        (),
        "mutatingwebhookconfiguration",
        categories=("api-extensions",),
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        (),
        "validatingwebhookconfiguration",
        categories=("api-extensions",),
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        "poddisruptionbudget",
        ("status",),
    ),
)

# metrics.k8s.io is never stored: metrics_api.py computes it from the kubelets on each request, as metrics-server
# serves it behind a real API server. Routed and discovered like the rest, read-only.
METRICS_GROUP = "metrics.k8s.io"
_COMPUTED: tuple[ResourceType, ...] = (
    ResourceType(METRICS_GROUP, "v1beta1", "nodes", "NodeMetrics", False, verbs=("get", "list")),
    ResourceType(METRICS_GROUP, "v1beta1", "pods", "PodMetrics", True, verbs=("get", "list")),
)

_ALL: tuple[ResourceType, ...] = _STORED + _COMPUTED

# Stored kinds only (the Store and the garbage collector iterate these).
RESOURCES: dict[str, ResourceType] = {r.key: r for r in _STORED}

# (group, version, plural) -> type, for routing.
BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in _ALL}

# group -> versions served (one each).
GROUPS: dict[str, str] = {}
for _r in _ALL:
    GROUPS.setdefault(_r.group, _r.version)

# The kind a subresource answers with (discovery's responseKind).
SUBRESOURCE_KINDS: dict[str, tuple[str, str, str]] = {
    # subresource -> (group, version, kind); "" group/kind means "the parent's".
    "status": ("", "", ""),
    "approval": ("", "", ""),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "scale": ("autoscaling", "v1", "Scale"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
    "log": ("", "v1", "Pod"),
    "exec": ("", "v1", "PodExecOptions"),
    "attach": ("", "v1", "PodAttachOptions"),
    "portforward": ("", "v1", "PodPortForwardOptions"),
    "proxy": ("", "v1", "NodeProxyOptions"),
}

SUBRESOURCE_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "approval": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "token": ("create",),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
}


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """The stored type serving ``kind`` in ``api_version`` (e.g. "apps/v1", "Deployment"), or None."""
    group, _, version = api_version.rpartition("/")
    for r in _STORED:
        if r.group == group and r.version == version and r.kind == kind:
            return r
    return None
