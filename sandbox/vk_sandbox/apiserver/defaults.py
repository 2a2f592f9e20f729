"""What the real server does to an object on create and update: defaults, computed fields and validation."""

from __future__ import annotations

import base64
import dataclasses
import random
import re
from dataclasses import dataclass
from typing import Any

from vk_sandbox.apiserver.errors import bad_request, invalid
from vk_sandbox.apiserver.quantity import (
    QuantityError,
    node_status_quantities,
    pod_spec_quantities,
    pod_status_quantities,
)
from vk_sandbox.apiserver.resources import ResourceType
from vk_sandbox.apiserver.services import default_service
from vk_sandbox.apiserver.webhookconfig import KINDS as WEBHOOK_CONFIGURATIONS
from vk_sandbox.apiserver.webhookconfig import default_configuration, validate_configuration

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def name_problem(name: str, rule: str) -> str | None:
    """Why ``name`` is not a valid name under ``rule``, or None."""
    if rule == "label":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if _LABEL.match(name) else LABEL_MSG
    if rule == "path":
        if name in (".", "..") or "/" in name or "%" in name:
            return "may not be '.' or '..' and may not contain '/' or '%'"
        return None
    if len(name) > 253:
        return "must be no more than 253 characters"
    return None if _SUBDOMAIN.match(name) else SUBDOMAIN_MSG


def validate_metadata(rt: ResourceType, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
    causes: list[tuple[str, str]] = []
    if not isinstance(meta, dict):
        causes.append(("metadata", "Required value: metadata is required"))
    elif not name:
        # With generateName the store makes the name on write (after admission: webhooks see name ""), so only
        # an object with neither is refused here.
        if not meta.get("generateName"):
            causes.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        why = name_problem(name, rt.name_rule)
        if why:
            causes.append(("metadata.name", f'Invalid value: "{name}": {why}'))
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                causes.append((f"metadata.{field}", "Invalid value: must be a map of strings"))
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)


def _image_policy(image: str) -> str:
    # Untagged or :latest images are pulled always; a digest or any other tag only if not present.
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_container(c: dict[str, Any]) -> None:
    if isinstance(c.get("image"), str) and "imagePullPolicy" not in c:
        c["imagePullPolicy"] = _image_policy(c["image"])
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(kind)
        if isinstance(probe, dict):
            for field, value in _PROBE_DEFAULTS.items():
                probe.setdefault(field, value)


_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}


def _qos_class(spec: dict[str, Any]) -> str:
    containers = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) if isinstance(c, dict)]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests = res.get("requests") or {}
        limits = res.get("limits") or {}
        if requests or limits:
            any_set = True
        for r in ("cpu", "memory"):
            lim = limits.get(r)
            # A request defaults to the limit when only the limit is given.
            req = requests.get(r, lim)
            if lim is None or str(req) != str(lim):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("securityContext", {})
    spec.setdefault("priority", 0)
    if "serviceAccountName" not in spec and "serviceAccount" in spec:
        spec["serviceAccountName"] = spec["serviceAccount"]
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    mount_service_account_token(spec)
    tolerations = spec.setdefault("tolerations", [])
    if isinstance(tolerations, list):
        # The DefaultTolerationSeconds admission plugin adds these two unless already tolerated.
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(isinstance(t, dict) and t.get("key") == key for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    for field in ("containers", "initContainers"):
        for c in spec.get(field) or []:
            if isinstance(c, dict):
                _default_container(c)
    pod_spec_quantities(spec, requests_from_limits=True)
    status = obj.setdefault("status", {})
    pod_status_quantities(status)
    if isinstance(status, dict):
        _pod_ips(status)
        status.setdefault("phase", "Pending")
        status["qosClass"] = _qos_class(spec)


def _pod_ips(status: dict[str, Any]) -> None:
    """``podIP`` and ``podIPs`` agree, as the real server's conversion makes them: podIP is authoritative (a
    different first podIPs entry is replaced by it), a missing one is podIPs' first."""
    ip, ips = status.get("podIP"), status.get("podIPs")
    first = ips[0].get("ip") if isinstance(ips, list) and ips and isinstance(ips[0], dict) else None
    if isinstance(ip, str) and ip and ip != first:
        status["podIPs"] = [{"ip": ip}]
    elif not ip and isinstance(first, str) and first:
        status["podIP"] = first


SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def mount_service_account_token(spec: dict[str, Any]) -> None:
    """The ServiceAccount admission plugin's projected ``kube-api-access-*`` volume (token, the namespace's
    ``kube-root-ca.crt``, the namespace) mounted into every container, unless the pod opts out or a container
    already mounts the path. Idempotent, so an update leaves it alone. Unlike the real plugin it does not read the
    ServiceAccount's own automountServiceAccountToken, nor refuse a pod whose ServiceAccount does not exist yet."""
    if spec.get("automountServiceAccountToken") is False:
        return
    containers = [c for field in ("initContainers", "containers") for c in spec.get(field) or [] if isinstance(c, dict)]
    if not containers or any(
        isinstance(m, dict) and m.get("mountPath") == SA_MOUNT_PATH
        for c in containers
        for m in c.get("volumeMounts") or []
    ):
        return
    name = "kube-api-access-" + "".join(random.choices(_SUFFIX_ALPHABET, k=5))
    sources = [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "downwardAPI": {
                "items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]
            }
        },
    ]
    volumes = spec.setdefault("volumes", [])
    if not isinstance(volumes, list):
        return
    volumes.append({"name": name, "projected": {"sources": sources, "defaultMode": 420}})
    for c in containers:
        mounts = c.setdefault("volumeMounts", [])
        if isinstance(mounts, list):
            mounts.append({"name": name, "readOnly": True, "mountPath": SA_MOUNT_PATH})


def validate_pod(obj: dict[str, Any]) -> None:
    name = str((obj.get("metadata") or {}).get("name") or "")
    spec = obj.get("spec")
    causes: list[tuple[str, str]] = []
    if not isinstance(spec, dict):
        raise invalid("Pod", "", name, [("spec", "Required value")])
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(("spec.containers", "Required value"))
    else:
        seen: set[str] = set()
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                causes.append((f"spec.containers[{i}]", "Invalid value: must be an object"))
                continue
            cname = c.get("name")
            if not isinstance(cname, str) or not cname:
                causes.append((f"spec.containers[{i}].name", "Required value"))
            elif not _LABEL.match(cname):
                causes.append((f"spec.containers[{i}].name", f'Invalid value: "{cname}": {LABEL_MSG}'))
            elif cname in seen:
                causes.append((f"spec.containers[{i}].name", f'Duplicate value: "{cname}"'))
            else:
                seen.add(cname)
            if not c.get("image"):
                causes.append((f"spec.containers[{i}].image", "Required value"))
    rp = spec.get("restartPolicy")
    if rp not in (None, "Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", f'Unsupported value: "{rp}"'))
    if causes:
        raise invalid("Pod", "", name, causes)


def _strip_mutable(spec: dict[str, Any]) -> dict[str, Any]:
    s = dict(spec)
    for field in ("containers", "initContainers"):
        if isinstance(s.get(field), list):
            s[field] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c for c in s[field]]
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"):
        s.pop(field, None)
    return s


def validate_pod_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Pod specs are immutable except images, activeDeadlineSeconds, tolerations and grace, as the real server."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if _strip_mutable(old_spec) != _strip_mutable(new_spec):
        name = str((new.get("metadata") or {}).get("name") or "")
        raise invalid(
            "Pod",
            "",
            name,
            [
                (
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions"
                    " to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it"
                    " was previously negative)",
                )
            ],
        )


_CONTAINER_SHAPES: list[tuple[str, type]] = [
    ("[]", dict),
    ("[].resources", dict),
    ("[].resources.limits", dict),
    ("[].resources.requests", dict),
    ("[].ports", list),
    ("[].ports[]", dict),
    ("[].env", list),
    ("[].env[]", dict),
    ("[].envFrom", list),
    ("[].volumeMounts", list),
    ("[].volumeMounts[]", dict),
    ("[].command", list),
    ("[].args", list),
    ("[].image", str),
    ("[].name", str),
]


def _pod_spec_shapes(prefix: str) -> list[tuple[str, type]]:
    out: list[tuple[str, type]] = [(prefix, dict)]
    for field in ("containers", "initContainers", "ephemeralContainers"):
        out.append((f"{prefix}.{field}", list))
        out += [(f"{prefix}.{field}{p}", t) for p, t in _CONTAINER_SHAPES]
    out += [
        (f"{prefix}.tolerations", list),
        (f"{prefix}.tolerations[]", dict),
        (f"{prefix}.volumes", list),
        (f"{prefix}.volumes[]", dict),
        (f"{prefix}.nodeSelector", dict),
        (f"{prefix}.affinity", dict),
        (f"{prefix}.imagePullSecrets", list),
        (f"{prefix}.imagePullSecrets[]", dict),
        (f"{prefix}.securityContext", dict),
        (f"{prefix}.readinessGates", list),
        (f"{prefix}.readinessGates[]", dict),
        (f"{prefix}.nodeName", str),
    ]
    return out


_WORKLOAD_SHAPES: list[tuple[str, type]] = [
    ("spec.selector", dict),
    ("spec.template", dict),
    ("spec.template.metadata", dict),
    ("spec.template.metadata.labels", dict),
    *_pod_spec_shapes("spec.template.spec"),
]
# Structural shapes checked before anything else looks at an object: a wrong type is a 422, never a crash.
SHAPES: dict[str, list[tuple[str, type]]] = {
    "*": [
        ("metadata", dict),
        ("metadata.labels", dict),
        ("metadata.annotations", dict),
        ("metadata.finalizers", list),
        ("metadata.finalizers[]", str),
        ("metadata.ownerReferences", list),
        ("metadata.ownerReferences[]", dict),
        ("spec", dict),
        ("status", dict),
        ("status.conditions", list),
        ("status.conditions[]", dict),
    ],
    "pods": [
        *_pod_spec_shapes("spec"),
        ("status.containerStatuses", list),
        ("status.containerStatuses[]", dict),
        ("status.initContainerStatuses", list),
        ("status.initContainerStatuses[]", dict),
        ("status.phase", str),
    ],
    "nodes": [
        ("spec.taints", list),
        ("spec.taints[]", dict),
        ("status.addresses", list),
        ("status.addresses[]", dict),
        ("status.nodeInfo", dict),
        ("status.daemonEndpoints", dict),
        ("status.capacity", dict),
        ("status.allocatable", dict),
    ],
    "configmaps": [("data", dict), ("binaryData", dict)],
    "secrets": [("data", dict), ("stringData", dict), ("type", str)],
    "services": [("spec.ports", list), ("spec.ports[]", dict), ("spec.selector", dict)],
    "serviceaccounts": [("secrets", list), ("secrets[]", dict), ("imagePullSecrets", list)],
    "events": [("involvedObject", dict), ("source", dict), ("series", dict)],
    "namespaces": [("spec.finalizers", list)],
    "deployments.apps": [*_WORKLOAD_SHAPES, ("spec.strategy", dict)],
    "replicasets.apps": _WORKLOAD_SHAPES,
    "jobs.batch": _WORKLOAD_SHAPES,
    "certificatesigningrequests.certificates.k8s.io": [
        ("spec.request", str),
        ("spec.usages", list),
        ("spec.signerName", str),
        ("status.certificate", str),
    ],
    "roles.rbac.authorization.k8s.io": [("rules", list), ("rules[]", dict)],
    "clusterroles.rbac.authorization.k8s.io": [("rules", list), ("rules[]", dict), ("aggregationRule", dict)],
    "rolebindings.rbac.authorization.k8s.io": [("subjects", list), ("subjects[]", dict), ("roleRef", dict)],
    "clusterrolebindings.rbac.authorization.k8s.io": [("subjects", list), ("subjects[]", dict), ("roleRef", dict)],
    "leases.coordination.k8s.io": [("spec.holderIdentity", str)],
}
_TYPE_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string"}


@dataclass
class _Shape:
    """A node of the shape tree: the expected type here, the known fields below, and the shape of list items."""

    typ: type | None = None
    fields: dict[str, _Shape] = dataclasses.field(default_factory=dict)
    items: _Shape | None = None


def _shape_tree(paths: list[tuple[str, type]]) -> _Shape:
    root = _Shape()
    for dotted, typ in paths:
        node = root
        for part in dotted.split("."):
            is_item = part.endswith("[]")
            name = part[:-2] if is_item else part
            if name:
                node = node.fields.setdefault(name, _Shape())
            if is_item:
                if node.items is None:
                    node.items = _Shape()
                node = node.items
        node.typ = typ
    return root


_TREES: dict[str, _Shape] = {}


def _walk(value: Any, node: _Shape, path: str, causes: list[tuple[str, str]]) -> None:
    if value is None:
        return
    if node.typ is not None and not isinstance(value, node.typ):
        causes.append((path, f"Invalid value: must be of type {_TYPE_NAMES.get(node.typ, node.typ.__name__)}"))
        return
    if node.fields and isinstance(value, dict):
        for name, child in node.fields.items():
            if name in value:
                _walk(value[name], child, f"{path}.{name}" if path else name, causes)
    if node.items is not None and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, node.items, f"{path}[{i}]", causes)


def check_shapes(rt: ResourceType, obj: dict[str, Any]) -> None:
    """422 Invalid when a known field has the wrong JSON type (say, ``spec.containers: "x"``)."""
    tree = _TREES.get(rt.storage_key)
    if tree is None:
        tree = _TREES[rt.storage_key] = _shape_tree(SHAPES["*"] + SHAPES.get(rt.storage_key, []))
    causes: list[tuple[str, str]] = []
    _walk(obj, tree, "", causes)
    raw_meta = obj.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    for part in ("labels", "annotations"):
        value = meta.get(part)
        if isinstance(value, dict) and not all(isinstance(v, str) for v in value.values()):
            causes.append((f"metadata.{part}", "Invalid value: values must be strings"))
    if causes:
        name = meta.get("name")
        raise invalid(rt.kind, rt.group, name if isinstance(name, str) else "", causes[:10])


def default_object(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Apply the defaults the real server applies on create and update (after checking the shapes); a quantity that
    does not parse is a 400 in the real decoder's words."""
    try:
        _default_object(rt, obj)
    except QuantityError as exc:
        raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {exc}') from exc


def _default_object(rt: ResourceType, obj: dict[str, Any]) -> None:
    # A JSON null at the top level or in metadata means "absent", as when the real server decodes into Go structs.
    for k in [k for k, v in obj.items() if v is None]:
        del obj[k]
    if isinstance(obj.get("metadata"), dict):
        meta = obj["metadata"]
        for k in [k for k, v in meta.items() if v is None]:
            del meta[k]
    check_shapes(rt, obj)
    if rt.key in WEBHOOK_CONFIGURATIONS:
        default_configuration(rt.key, obj)
    elif rt.key == "pods":
        default_pod(obj)
    elif rt.key == "services":
        default_service(obj)
    elif rt.key == "nodes":
        node_status_quantities(obj.get("status"))
    elif rt.key == "secrets":
        if not obj.get("type"):
            obj["type"] = "Opaque"
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            # The real server folds stringData into data (base64) on every write.
            raw_data = obj.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
    elif rt.key == "namespaces":
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            # Every namespace carries its own name as a label (NamespaceDefaultLabelName).
            labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else None
            meta["labels"] = {**(labels or {}), "kubernetes.io/metadata.name": meta["name"]}
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif rt.key in ("deployments.apps", "replicasets.apps"):
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            if rt.key == "deployments.apps":
                spec.setdefault("revisionHistoryLimit", 10)
                spec.setdefault("progressDeadlineSeconds", 600)
                spec.setdefault(
                    "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
                )
    elif rt.key == "jobs.batch":
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            if spec.get("completions") is None and spec.get("parallelism") is None:
                spec["completions"] = 1  # only then: parallelism alone means a work queue
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("manualSelector", False)
            spec.setdefault("suspend", False)
            spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
            _default_job_selector(obj, spec)
            _default_job_labels(obj, spec)
    if rt.key in ("deployments.apps", "replicasets.apps", "jobs.batch"):
        tmpl = (obj.get("spec") or {}).get("template")
        if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
            t_spec = tmpl["spec"]
            t_spec.setdefault("restartPolicy", "Never" if rt.key == "jobs.batch" else "Always")
            t_spec.setdefault("dnsPolicy", "ClusterFirst")
            t_spec.setdefault("terminationGracePeriodSeconds", 30)
            t_spec.setdefault("schedulerName", "default-scheduler")
            t_spec.setdefault("securityContext", {})
            for field in ("containers", "initContainers"):
                for c in t_spec.get(field) or []:
                    if isinstance(c, dict):
                        _default_container(c)
            pod_spec_quantities(t_spec, requests_from_limits=False)


TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone")


def copy_topology_labels(pod: dict[str, Any], node: dict[str, Any] | None) -> None:
    """The PodTopologyLabels admission plugin (its feature gate is on in v1.36): a pod created with a nodeName, or
    bound, gets the node's region and zone labels, never replacing a label the pod already has."""
    node_labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    found = {k: node_labels[k] for k in TOPOLOGY_LABELS if isinstance(node_labels.get(k), str)}
    meta = pod.get("metadata")
    if found and isinstance(meta, dict):
        labels = meta.get("labels")
        meta["labels"] = {**found, **(labels if isinstance(labels, dict) else {})}


NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def taint_new_node(node: dict[str, Any]) -> None:
    """The TaintNodesByCondition admission plugin (on by default): a new Node starts with the not-ready NoSchedule
    taint; the node lifecycle controller takes it off once the node's conditions allow."""
    spec = node.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    taints = spec.get("taints")
    if not isinstance(taints, list):
        taints = spec["taints"] = []
    if not any(
        isinstance(t, dict) and t.get("key") == NOT_READY_TAINT["key"] and t.get("effect") == "NoSchedule"
        for t in taints
    ):
        taints.append(dict(NOT_READY_TAINT))


def job_labels(job: dict[str, Any]) -> dict[str, str]:
    """The labels the API server gives a Job's pod template (and so its pods), keyed by the Job's UID."""
    meta = job.get("metadata") or {}
    uid, name = str(meta.get("uid")), str(meta.get("name"))
    return {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }


def _default_job_selector(job: dict[str, Any], spec: dict[str, Any]) -> None:
    """Unless manualSelector, select on the Job's UID and label the template to match (as the real server)."""
    if spec.get("manualSelector") or spec.get("selector") or not (job.get("metadata") or {}).get("uid"):
        return
    labels = job_labels(job)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": labels["controller-uid"]}}
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmeta = tmpl.setdefault("metadata", {})
        if isinstance(tmeta, dict):
            tmeta["labels"] = {**(tmeta.get("labels") or {}), **labels}


def _default_job_labels(job: dict[str, Any], spec: dict[str, Any]) -> None:
    """A Job without labels of its own carries its pod template's (the selector's included), as the real server."""
    meta, tmpl = job.get("metadata"), spec.get("template")
    t_labels = (tmpl.get("metadata") or {}).get("labels") if isinstance(tmpl, dict) else None
    if isinstance(meta, dict) and not meta.get("labels") and isinstance(t_labels, dict) and t_labels:
        meta["labels"] = dict(t_labels)


def validate_object(rt: ResourceType, obj: dict[str, Any]) -> None:
    validate_metadata(rt, obj)
    if rt.key in WEBHOOK_CONFIGURATIONS:
        validate_configuration(rt.key, obj)
    elif rt.key == "pods":
        validate_pod(obj)
    elif rt.key in ("deployments.apps", "replicasets.apps", "jobs.batch"):
        name = str(obj["metadata"]["name"])
        spec = obj.get("spec")
        tmpl = spec.get("template") if isinstance(spec, dict) else None
        if not isinstance(tmpl, dict) or not isinstance(tmpl.get("spec"), dict):
            raise invalid(rt.kind, rt.group, name, [("spec.template", "Required value")])
        if rt.key != "jobs.batch" and not isinstance(spec.get("selector"), dict):  # type: ignore[union-attr]
            raise invalid(rt.kind, rt.group, name, [("spec.selector", "Required value")])
