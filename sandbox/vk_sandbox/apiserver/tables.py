"""Server-side Tables (meta.k8s.io/v1) with the real column sets, so kubectl prints what users expect."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vk_sandbox.apiserver.resources import ResourceType
from vk_sandbox.apiserver.store import parse_rfc3339

Row = Callable[[dict[str, Any]], list[Any]]


def human_duration(seconds: float) -> str:
    """The short durations kubectl prints under AGE (apimachinery's HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    y = h // (24 * 365)
    if y < 8:
        d = (h // 24) % 365
        return f"{y}y{d}d" if d else f"{y}y"
    return f"{y}y"


def age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    try:
        return human_duration(time.time() - parse_rfc3339(ts).timestamp())
    except ValueError:
        return "<unknown>"


def _col(name: str, typ: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> dict[str, Any]:
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}


def pod_status(pod: dict[str, Any]) -> tuple[str, int, int, int]:
    """(STATUS, ready, total, restarts) as kubectl's pod printer computes them."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    total = len(spec.get("containers") or [])
    reason = status.get("reason") or status.get("phase") or "Unknown"
    ready = restarts = 0
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount", 0))
        state = cs.get("state") or {}
        term = state.get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = "Init:" + (
                term.get("reason")
                or (f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}")
            )
        elif (state.get("waiting") or {}).get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount", 0))
            state = cs.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("terminated"):
                term = state["terminated"]
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
            elif state.get("running") and cs.get("ready"):
                has_running = True
                ready += 1
            elif state.get("running"):
                has_running = True
        if reason == "Completed" and has_running:
            ready_cond = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            reason = "Running" if ready_cond else "NotReady"
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, total, restarts


def _pod_row(pod: dict[str, Any]) -> list[Any]:
    reason, ready, total, restarts = pod_status(pod)
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    gates = spec.get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_cell = f"{ok}/{len(gates)}"
    else:
        gates_cell = "<none>"
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restarts,
        age(pod["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def _node_row(node: dict[str, Any]) -> list[Any]:
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else {"True": "Ready", "False": "NotReady"}.get(ready.get("status"), "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = sorted(
        {k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []

    def addr(kind: str) -> str:
        return next((a.get("address") for a in addrs if a.get("type") == kind), None) or "<none>"

    return [
        node["metadata"]["name"],
        state,
        ",".join(r for r in roles if r) or "<none>",
        age(node["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        addr("InternalIP"),
        addr("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _event_row(ev: dict[str, Any]) -> list[Any]:
    obj = ev.get("involvedObject") or ev.get("regarding") or {}
    last = ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp") or ev.get("eventTime")
    first = ev.get("firstTimestamp") or ev.get("deprecatedFirstTimestamp") or ev.get("eventTime")
    series = ev.get("series") or {}
    if series.get("lastObservedTime"):
        last = series["lastObservedTime"]
    source = ev.get("source") or ev.get("deprecatedSource") or {}
    src = source.get("component") or ev.get("reportingComponent") or ev.get("reportingController") or ""
    if source.get("host"):
        src += f", {source['host']}"
    count = ev.get("count") or ev.get("deprecatedCount") or series.get("count") or 1
    kind = str(obj.get("kind", "")).lower()
    return [
        age(last),
        ev.get("type", ""),
        ev.get("reason", ""),
        f"{kind}/{obj.get('name', '')}",
        obj.get("fieldPath", ""),
        src,
        ev.get("message", ev.get("note", "")),
        age(first),
        count,
        ev["metadata"]["name"],
    ]


def _selector(o: dict[str, Any]) -> str:
    sel = (o.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        parts.append(f"{e.get('key')} {str(e.get('operator', '')).lower()} ({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


def _containers(o: dict[str, Any]) -> tuple[str, str]:
    cs = (((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deployment_row(o: dict[str, Any]) -> list[Any]:
    st = o.get("status") or {}
    names, images = _containers(o)
    return [
        o["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(o["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _replicaset_row(o: dict[str, Any]) -> list[Any]:
    st = o.get("status") or {}
    names, images = _containers(o)
    return [
        o["metadata"]["name"],
        (o.get("spec") or {}).get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        age(o["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _job_row(o: dict[str, Any]) -> list[Any]:
    st = o.get("status") or {}
    spec = o.get("spec") or {}
    names, images = _containers(o)
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    if conds.get("Complete") == "True":
        status = "Complete"
    elif conds.get("Failed") == "True":
        status = "Failed"
    elif conds.get("FailureTarget") == "True":
        status = "FailureTarget"
    elif conds.get("SuccessCriteriaMet") == "True":
        status = "SuccessCriteriaMet"
    else:
        status = "Running"
    duration = ""
    if st.get("startTime"):
        end = st.get("completionTime")
        try:
            stop = parse_rfc3339(end).timestamp() if end else time.time()
            duration = human_duration(stop - parse_rfc3339(st["startTime"]).timestamp())
        except ValueError:
            duration = ""
    completions = spec.get("completions")
    comp = f"{st.get('succeeded', 0)}/{completions}" if completions is not None else f"{st.get('succeeded', 0)}/1 of 1"
    return [
        o["metadata"]["name"],
        status,
        comp,
        duration,
        age(o["metadata"].get("creationTimestamp")),
        names,
        images,
        _selector(o),
    ]


def _service_row(o: dict[str, Any]) -> list[Any]:
    spec = o.get("spec") or {}
    ports = ",".join(
        f"{p.get('port')}" + (f":{p['nodePort']}" if p.get("nodePort") else "") + f"/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    sel = spec.get("selector") or {}
    ingress = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ext = ",".join(i.get("ip") or i.get("hostname") or "" for i in ingress) or (
        ",".join(spec.get("externalIPs") or []) or ("<pending>" if spec.get("type") == "LoadBalancer" else "<none>")
    )
    return [
        o["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        ext,
        ports or "<none>",
        age(o["metadata"].get("creationTimestamp")),
        ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>",
    ]


def _csr_row(o: dict[str, Any]) -> list[Any]:
    spec = o.get("spec") or {}
    conds = [c.get("type") for c in (o.get("status") or {}).get("conditions") or []]
    cond = ",".join(c for c in conds if c) or "Pending"
    if (o.get("status") or {}).get("certificate") and "Approved" in conds:
        cond += ",Issued"
    exp = spec.get("expirationSeconds")
    return [
        o["metadata"]["name"],
        age(o["metadata"].get("creationTimestamp")),
        spec.get("signerName", ""),
        spec.get("username", ""),
        human_duration(exp) if exp else "<none>",
        cond,
    ]


_NAME = _col("Name", fmt="name")
_AGE = _col("Age")
_WIDE_WORKLOAD = [_col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)]

COLUMNS: dict[str, tuple[list[dict[str, Any]], Row]] = {
    "pods": (
        [
            _NAME,
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            _AGE,
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "nodes": (
        [
            _NAME,
            _col("Status"),
            _col("Roles"),
            _AGE,
            _col("Version"),
            _col("Internal-IP", priority=1),
            _col("External-IP", priority=1),
            _col("OS-Image", priority=1),
            _col("Kernel-Version", priority=1),
            _col("Container-Runtime", priority=1),
        ],
        _node_row,
    ),
    "events": (
        [
            _col("Last Seen"),
            _col("Type"),
            _col("Reason"),
            _col("Object"),
            _col("Subobject", priority=1),
            _col("Source", priority=1),
            _col("Message"),
            _col("First Seen", priority=1),
            _col("Count", "integer", 1),
            _col("Name", priority=1),
        ],
        _event_row,
    ),
    "namespaces": (
        [_NAME, _col("Status"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            (o.get("status") or {}).get("phase", "Active"),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "leases.coordination.k8s.io": (
        [_NAME, _col("Holder"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            (o.get("spec") or {}).get("holderIdentity", ""),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "configmaps": (
        [_NAME, _col("Data", "integer"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "secrets": (
        [_NAME, _col("Type"), _col("Data", "integer"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}) + len(o.get("stringData") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "serviceaccounts": (
        [_NAME, _col("Secrets", "integer"), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), age(o["metadata"].get("creationTimestamp"))],
    ),
    "services": (
        [
            _NAME,
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            _AGE,
            _col("Selector", priority=1),
        ],
        _service_row,
    ),
    "deployments.apps": (
        [_NAME, _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _AGE, *_WIDE_WORKLOAD],
        _deployment_row,
    ),
    "replicasets.apps": (
        [
            _NAME,
            _col("Desired", "integer"),
            _col("Current", "integer"),
            _col("Ready", "integer"),
            _AGE,
            *_WIDE_WORKLOAD,
        ],
        _replicaset_row,
    ),
    "jobs.batch": (
        [_NAME, _col("Status"), _col("Completions"), _col("Duration"), _AGE, *_WIDE_WORKLOAD],
        _job_row,
    ),
    "mutatingwebhookconfigurations.admissionregistration.k8s.io": (
        [_NAME, _col("Webhooks", "integer"), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("webhooks") or []), age(o["metadata"].get("creationTimestamp"))],
    ),
    "validatingwebhookconfigurations.admissionregistration.k8s.io": (
        [_NAME, _col("Webhooks", "integer"), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("webhooks") or []), age(o["metadata"].get("creationTimestamp"))],
    ),
    "endpoints": (
        [_NAME, _col("Endpoints"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            ",".join(
                f"{a.get('ip')}:{p.get('port')}"
                for s in o.get("subsets") or []
                for a in s.get("addresses") or []
                for p in s.get("ports") or []
            )
            or "<none>",
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "poddisruptionbudgets.policy": (
        [_NAME, _col("Min Available"), _col("Max Unavailable"), _col("Allowed Disruptions", "integer"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            str((o.get("spec") or {}).get("minAvailable", "N/A")),
            str((o.get("spec") or {}).get("maxUnavailable", "N/A")),
            int((o.get("status") or {}).get("disruptionsAllowed", 0)),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "certificatesigningrequests.certificates.k8s.io": (
        [_NAME, _AGE, _col("SignerName"), _col("Requestor"), _col("RequestedDuration"), _col("Condition")],
        _csr_row,
    ),
}
_DEFAULT: tuple[list[dict[str, Any]], Row] = (
    [_NAME, _col("Created At", "date")],
    lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")],
)


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    rt: ResourceType,
    objs: list[dict[str, Any]],
    *,
    rv: str,
    cont: str | None = None,
    headers: bool = True,
    include: str = "Metadata",
) -> dict[str, Any]:
    """A Table of ``objs``; watches pass ``headers=False`` after their first event, as the real server."""
    key = "events" if rt.plural == "events" else rt.key
    columns, row = COLUMNS.get(key, _DEFAULT)
    rows = []
    for o in objs:
        r: dict[str, Any] = {"cells": row(o)}
        if include == "Object":
            r["object"] = o
        elif include != "None":
            r["object"] = partial(o)
        rows.append(r)
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "rows": rows}
    out["columnDefinitions"] = columns if headers else []
    return out
