"""Every Prometheus metric of the daemon, in one registry (served on the plain-HTTP metrics port).

Defined in one place so that names stay consistent and docs/operations.md can list them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

PODS = Gauge("vk_pods", "Pods bound to the virtual node, by phase.", ["phase"], registry=REGISTRY)

ECI_CALLS = Counter(
    "vk_eci_calls_total",
    "ECI API calls by action and result (ok or the error code).",
    ["action", "result"],
    registry=REGISTRY,
)
ECI_CALL_SECONDS = Histogram(
    "vk_eci_call_duration_seconds",
    "Latency of one ECI API call attempt.",
    ["action"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ECI_RETRIES = Counter(
    "vk_eci_retries_total",
    "ECI calls retried after Throttling, 5xx or a timeout.",
    ["action", "code"],
    registry=REGISTRY,
)

POD_CREATED_TO_RUNNING = Histogram(
    "vk_pod_created_to_running_seconds",
    "From pod creationTimestamp to the pod reported Running.",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600),
)
STATUS_PROPAGATION = Histogram(
    "vk_status_propagation_seconds",
    "From a status change seen on ECI to the pod status written.",
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

QUEUE_DEPTH = Gauge("vk_queue_depth", "Pods waiting in the reconcile queue.", registry=REGISTRY)
RECONCILES = Counter("vk_reconciles_total", "Reconcile runs by result.", ["result"], registry=REGISTRY)
RECONCILE_RETRIES = Counter("vk_reconcile_retries_total", "Pods requeued after a failure.", registry=REGISTRY)
STATUS_WRITES = Counter("vk_pod_status_writes_total", "Pod status writes to the API server.", registry=REGISTRY)
REFERENCE_READS = Counter(
    "vk_pod_reference_reads_total",
    "Reads of what pods being created reference (ConfigMaps, Secrets, services): sent to the API server, or "
    "shared with a read sent after the pod was seen (pods/shared_reads.py).",
    ["read"],
    registry=REGISTRY,
)
SPOT_EVICTIONS = Counter(
    "vk_spot_evictions_total",
    "Evictions at a spot interruption notice by result (evicted, blocked, gone, too_late).",
    ["result"],
    registry=REGISTRY,
)
PENDING_TIMEOUTS = Counter(
    "vk_pending_timeouts_total", "Pods failed with PendingTimeout (their group deleted).", registry=REGISTRY
)
GC_DELETED = Counter("vk_gc_deleted_groups_total", "Orphan container groups deleted by GC.", registry=REGISTRY)

NODE_READY = Gauge("vk_node_ready", "1 when the virtual node reports Ready.", registry=REGISTRY)
BACKEND_UP = Gauge("vk_backend_up", "1 when the last ECI ping succeeded.", registry=REGISTRY)
ADOPTION_PENDING = Gauge(
    "vk_adoption_pending",
    "1 while the existing container groups are not adopted yet (creates, deletes and GC wait for it).",
    registry=REGISTRY,
)
LEASE_RENEWALS = Counter("vk_lease_renewals_total", "Node Lease renewals by result.", ["result"], registry=REGISTRY)

KUBELET_REQUESTS = Counter(
    "vk_kubelet_requests_total",
    "Kubelet API requests by route and HTTP code.",
    ["route", "code"],
    registry=REGISTRY,
)
KUBELET_STREAMS = Gauge(
    "vk_kubelet_streams", "Open kubelet streams (exec, attach, port-forward, logs -f).", ["kind"], registry=REGISTRY
)

LEADER = Gauge(
    "vk_leader", "1 while this replica leads its virtual node (and may write), 0 on a standby.", registry=REGISTRY
)
LEADER_TRANSITIONS = Counter(
    "vk_leader_transitions_total",
    "Leadership changes of this replica: acquired, released (handover), lost (renew deadline passed).",
    ["transition"],
    registry=REGISTRY,
)
TAKEOVER_SECONDS = Histogram(
    "vk_leader_takeover_seconds",
    "From acquiring the election Lease to the writers running (node written, groups adopted, workers started).",
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
FENCED_WRITES = Counter(
    "vk_fenced_writes_total",
    "Writes refused because this replica does not (or no longer) hold the election Lease, by target.",
    ["target"],
    registry=REGISTRY,
)
PROFILE_VALID = Gauge(
    "vk_elastic_profile_valid",
    "1 when the last read of the elastic profile was good; 0 while a bad file is ignored (the last good one serves).",
    registry=REGISTRY,
)
PROFILE_RULES = Gauge("vk_elastic_profile_rules", "Rules in the live elastic profile.", registry=REGISTRY)
PROFILE_RELOADS = Counter(
    "vk_elastic_profile_reloads_total",
    "Reads of a changed profile file, by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
WEBHOOK_REQUESTS = Counter(
    "vk_elastic_webhook_requests_total",
    "AdmissionReviews answered, by what was done (serverless, burst, none, error: allowed unchanged).",
    ["action"],
    registry=REGISTRY,
)
WEBHOOK_SECONDS = Histogram(
    "vk_elastic_webhook_duration_seconds",
    "Time to answer one AdmissionReview (parse, decide, patch).",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
BURSTS = Counter(
    "vk_elastic_bursts_total", "Unschedulable pods bound to the virtual node, by rule.", ["rule"], registry=REGISTRY
)
BURST_SKIPS = Counter(
    "vk_elastic_burst_skips_total",
    "Unschedulable burst pods left Pending, by reason (unsupported, node-selector, node-affinity, scheduler-name, "
    "limit-pods, limit-cpu).",
    ["reason"],
    registry=REGISTRY,
)
BURST_SECONDS = Histogram(
    "vk_elastic_burst_seconds",
    "From a burst pod first seen Unschedulable to its binding to the virtual node (burstAfterSeconds included).",
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
