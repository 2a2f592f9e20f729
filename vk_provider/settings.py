"""One settings tree for the daemon.

Sources, later ones winning: defaults, an optional YAML file, ``VK_*`` environment variables
(``VK_<SECTION>__<FIELD>``), then command-line flags. Every field has a flag derived from its
path (``eci.rate_limit_qps`` -> ``--eci-rate-limit-qps``); a few well-known ones also have the
short flag the Go virtual-kubelet users know (``--kubeconfig``, ``--region`` ...), declared with
``json_schema_extra={"flag": ...}``. ``docs/configuration.md`` is generated from this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "VK_"
ENV_DELIMITER = "__"


def _flag(name: str) -> dict[str, Any]:
    return {"flag": name}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class KubeSettings(_Section):
    """How the daemon reaches the Kubernetes API server."""

    kubeconfig: Path | None = Field(
        None,
        description="Path to a kubeconfig file. Empty means in-cluster configuration.",
        json_schema_extra=_flag("--kubeconfig"),
    )
    context: str | None = Field(None, description="kubeconfig context to use (default: current).")
    request_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one API request.")


class NodeSettings(_Section):
    """The virtual Node and its heartbeats."""

    name: str = Field(
        "virtual-kubelet-eci",
        description="Name of the virtual Node.",
        json_schema_extra=_flag("--nodename"),
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels for the Node (YAML map, or JSON in env/flag)."
    )
    taint: str | None = Field(
        "virtual-kubelet.io/provider=alibabacloud:NoSchedule",
        description="Taint key=value:Effect put on the Node. Empty string disables it.",
    )
    internal_ip: str | None = Field(
        None,
        description="The Node's InternalIP: the daemon pod's IP (set from the downward API).",
    )
    hostname_address: str | None = Field(
        None,
        description="Value of the Node's Hostname address. Default: internal_ip when set (the API server dials "
        "the Hostname address first, and a virtual node's name resolves nowhere), else the node name.",
    )
    zone: str | None = Field(None, description="Zone for the topology.kubernetes.io/zone label.")
    capacity_cpu: str = Field("10000", description="Node cpu capacity (a Kubernetes quantity).")
    capacity_memory: str = Field("40Ti", description="Node memory capacity.")
    capacity_pods: str = Field("10000", description="Node pod capacity.")
    capacity_ephemeral_storage: str = Field("100Ti", description="Node ephemeral-storage capacity.")
    capacity_from_quota: bool = Field(
        False,
        description="Derive the node's cpu capacity from the account's ECI vCPU quota (ListUsage MaxCpu); "
        "memory and pods have no documented quota and keep their settings.",
    )
    status_interval_seconds: float = Field(60.0, gt=0, description="Node status PATCH period.")
    lease_interval_seconds: float = Field(10.0, gt=0, description="Lease renew period.")
    lease_duration_seconds: int = Field(40, gt=0, description="Lease duration written to the Lease.")
    ping_interval_seconds: float = Field(10.0, gt=0, description="Backend ping period.")
    backend_outage_grace_seconds: float = Field(
        600.0,
        ge=0,
        description="How long the ECI API may be unreachable before the node reports NetworkUnavailable "
        "(no new pods scheduled; Ready stays True so running pods are never evicted; see docs/operations.md).",
    )

    @field_validator("taint")
    @classmethod
    def _taint_shape(cls, v: str | None) -> str | None:
        if not v:
            return None
        if ":" not in v:
            raise ValueError("must look like key=value:Effect or key:Effect")
        effect = v.rsplit(":", 1)[1]
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError("effect must be NoSchedule, PreferNoSchedule or NoExecute")
        return v


# ECI's published quotas per minute (per account) of the actions that are not token buckets
# (../shared/docs/elasticity-notes.md); "*" is every action not named.
DEFAULT_PER_MINUTE: dict[str, int] = {
    "DescribeContainerGroups": 2000,
    "DescribeContainerGroupStatus": 2000,
    "DescribeMultiContainerGroupMetric": 2000,
    "DescribeContainerLog": 500,
    "ExecContainerCommand": 500,
    "*": 1000,
}


class ECISettings(_Section):
    """How the daemon reaches ECI and where groups are placed."""

    region: str = Field("cn-hangzhou", description="ECI region id.", json_schema_extra=_flag("--region"))
    endpoint: str | None = Field(
        None,
        description="ECI endpoint URL (e.g. the simulator's http://127.0.0.1:PORT). "
        "Empty means the public endpoint of the region.",
        json_schema_extra=_flag("--eci-endpoint"),
    )
    access_key_id: str | None = Field(None, description="AccessKey id. Also read from ALIBABA_CLOUD_ACCESS_KEY_ID.")
    access_key_secret: SecretStr | None = Field(
        None, description="AccessKey secret. Also read from ALIBABA_CLOUD_ACCESS_KEY_SECRET."
    )
    security_token: SecretStr | None = Field(
        None,
        description="STS security token, sent with an STS AccessKey pair (access_key_id/access_key_secret). "
        "Also read from ALIBABA_CLOUD_SECURITY_TOKEN. Never refreshed: restart the daemon with a new token "
        "before it expires, or use ram_role_name.",
    )
    ram_role_name: str | None = Field(
        None,
        description="Sign with the ECS instance RAM role of this name instead of an AccessKey pair (on ACK: the "
        "worker nodes' role). Its STS credentials come from the ECS metadata server and are refreshed by the SDK.",
        pattern=r"^[A-Za-z0-9.-]{0,64}$",
    )
    credentials_file: Path | None = Field(
        None,
        description="A mounted file with `access_key_id` and `access_key_secret`, optionally `security_token` "
        "(YAML or KEY=VALUE lines).",
    )
    vswitch_ids: list[str] = Field(
        default_factory=list,
        description="Default vSwitches (several = multi-zone), comma-separated in env/flag.",
        json_schema_extra=_flag("--vswitch"),
    )
    security_group_id: str | None = Field(
        None, description="Default security group.", json_schema_extra=_flag("--security-group")
    )
    cluster_name: str = Field(
        "vk-eci",
        description="Cluster identity written into every group's tags; GC only touches groups with it.",
        json_schema_extra=_flag("--cluster-name"),
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$",
    )
    cluster_dns: list[str] = Field(
        default_factory=list, description="Name servers for dnsPolicy ClusterFirst (the cluster DNS service)."
    )
    cluster_domain: str = Field("cluster.local", description="Cluster DNS domain for search paths.")
    thread_pool_size: int = Field(16, ge=1, le=256, description="Threads for blocking SDK calls.")
    rate_limit_qps: float = Field(
        20.0,
        gt=0,
        description="Client-side rate limit of each write action (CreateContainerGroup, DeleteContainerGroup, "
        "UpdateContainerGroup, RestartContainerGroup), per second: ECI's token bucket is 20/s.",
    )
    rate_limit_burst: int = Field(
        50,
        ge=1,
        description="Burst of each write action's bucket: half of ECI's 100, so that calls which reach ECI "
        "bunched together (thread pool, network) still fit in its bucket at the same rate.",
    )
    rate_limits_per_minute: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_PER_MINUTE),
        description='Client-side quota per minute of every other action ("*": the rest), as ECI counts them; '
        "each action has its own bucket, so a create backlog never holds up status polls, logs or exec. Actions "
        "not named keep their defaults (YAML map, or JSON in env/flag).",
    )
    max_retries: int = Field(6, ge=0, description="Retries of one ECI call on Throttling or 5xx.")
    backoff_base_seconds: float = Field(0.5, gt=0, description="First retry delay; doubles each retry.")
    backoff_max_seconds: float = Field(30.0, gt=0, description="Cap on one retry delay.")
    connect_timeout_seconds: float = Field(5.0, gt=0, description="SDK connect timeout.")
    read_timeout_seconds: float = Field(10.0, gt=0, description="SDK read timeout.")
    spot_notice_poll_interval_seconds: float = Field(
        10.0,
        ge=0,
        description="How often DescribeContainerGroupEvents is asked for new spot release notices "
        "(SpotToBeReleased, about 3 minutes ahead) while the node has spot groups, rounded to status poll ticks "
        "(10 s: every other 6 s tick); the check takes that tick's sweep page, so the poller's budget holds; "
        "0 leaves them to the status poll.",
    )
    status_poll_interval_seconds: float = Field(
        6.0,
        gt=0,
        description="Poller tick while no group is in transition: each tick makes one incremental status poll "
        "(DescribeContainerGroupStatus + SinceSecond) and advances the presence check or full resync under way by "
        "at most one page (about 20 ECI calls/min at any pod count).",
    )
    status_poll_fast_interval_seconds: float = Field(
        0.5,
        gt=0,
        description="Poller tick while groups are in transition (created and not yet Running, being deleted): a "
        "group turning Running shows on its pod within about this much.",
    )
    status_poll_fast_window_seconds: float = Field(
        300.0,
        gt=0,
        description="How long after its create a group still Scheduling or Pending keeps the poller fast.",
    )
    presence_check_interval_seconds: float = Field(
        300.0,
        gt=0,
        description="How long after the last presence check completed the next one starts: the list of existing "
        "group ids (DescribeContainerGroupStatus, 200 per call, one call per tick) that notices groups deleted "
        "outside Kubernetes. At 10,000 pods it is 50 calls over 300 s (600 s while a resync shares the slow ticks).",
    )
    full_resync_interval_seconds: float = Field(
        3600.0,
        gt=0,
        description="How long after the last full resync completed the next one starts: DescribeContainerGroups "
        "by tag, 20 groups per call, one call per slow tick (500 calls over 50-75 min at 10,000 pods). It only "
        "re-reads every group's details in case an incremental poll missed a change: the polls see status changes "
        "and the presence checks see deletions and unknown groups, so once an hour is enough. backend_pods answers "
        "from the index while a resync is that recent or under way.",
    )

    @field_validator("rate_limits_per_minute")
    @classmethod
    def _positive_quotas(cls, v: dict[str, int]) -> dict[str, int]:
        bad = sorted(action for action, quota in v.items() if quota < 1)
        if bad:
            raise ValueError(f"quotas per minute must be >= 1 (not for {', '.join(bad)})")
        return {**DEFAULT_PER_MINUTE, **v}  # an action not named keeps its default

    @field_validator("vswitch_ids", "cluster_dns", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v


class PodsSettings(_Section):
    """The pod controller."""

    workers: int = Field(16, ge=1, le=512, description="Concurrent reconcile workers.")
    retry_base_seconds: float = Field(1.0, gt=0, description="First requeue delay after a failure.")
    retry_max_seconds: float = Field(300.0, gt=0, description="Cap on the requeue delay.")
    max_retries: int = Field(
        15, ge=1, description="Failures of one pod before a Warning event says we keep retrying slowly."
    )
    gc_interval_seconds: float = Field(120.0, gt=0, description="Period of the orphan group GC.")
    gc_min_age_seconds: float = Field(300.0, ge=0, description="GC never touches groups younger than this.")
    shutdown_timeout_seconds: float = Field(
        20.0, ge=0, description="On SIGTERM, how long in-flight reconciles may run before they are cancelled."
    )
    spot_interruption: Literal["evict", "report"] = Field(
        "evict",
        description="At a spot release notice: evict the pod (Eviction API) or only report it; a pod's "
        "vk-eci.io/spot-interruption annotation overrides this.",
    )
    eviction_retry_seconds: float = Field(
        2.0, gt=0, le=60, description="Retry period of an eviction a PodDisruptionBudget refuses (429)."
    )
    max_pending_minutes: float = Field(
        240.0,
        gt=0,
        le=1440,
        description="A group not Running after this long is deleted and its pod fails (PendingTimeout); the pod "
        "annotation k8s.aliyun.com/eci-max-pending-minute (10-1440) overrides it. Below 10 only for tests.",
    )
    pending_check_interval_seconds: float = Field(
        30.0, gt=0, description="How often pending groups are checked against their deadline."
    )


class KubeletSettings(_Section):
    """The kubelet HTTPS API."""

    port: int = Field(10250, ge=0, le=65535, description="Kubelet API port (0 picks a free one).")
    bind_address: str = Field("0.0.0.0", description="Kubelet API bind address.")
    tls_mode: Literal["files", "csr", "self-signed"] = Field(
        "csr", description="Where the serving certificate comes from."
    )
    cert_file: Path | None = Field(None, description="Serving certificate (tls_mode=files).")
    key_file: Path | None = Field(None, description="Serving key (tls_mode=files).")
    cert_dir: Path = Field(Path("/tmp/vk-eci-certs"), description="Where CSR-issued certificates are kept.")
    client_ca_file: Path | None = Field(
        None,
        description="CA for client certificates. Default: the service account's ca.crt or the kubeconfig's CA.",
    )
    anonymous_auth: bool = Field(False, description="Let unauthenticated requests through as system:anonymous.")
    authn_cache_ttl_seconds: float = Field(120.0, ge=0, description="TokenReview result cache.")
    authz_allow_ttl_seconds: float = Field(300.0, ge=0, description="SubjectAccessReview allow cache.")
    authz_deny_ttl_seconds: float = Field(30.0, ge=0, description="SubjectAccessReview deny cache.")
    stats_cache_seconds: float = Field(15.0, ge=0, description="Metrics cache for one scrape interval.")
    log_poll_interval_seconds: float = Field(1.0, gt=0, description="Poll period of `logs -f`.")
    csr_poll_seconds: float = Field(
        5.0, gt=0, description="How often a pending serving-certificate CSR is checked for approval (tls_mode=csr)."
    )
    stream_creation_timeout_seconds: float = Field(
        30.0, gt=0, description="How long exec/attach waits for the client to open its SPDY streams."
    )
    shutdown_timeout_seconds: float = Field(
        5.0, ge=0, description="On stop, how long open requests get before their connections are cut."
    )


class MetricsSettings(_Section):
    """Prometheus metrics and health, plain HTTP."""

    port: int = Field(10255, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    bind_address: str = Field("0.0.0.0", description="Bind address of the metrics port.")


class LabelSelectorRequirement(BaseModel):
    """One matchExpressions entry of a Kubernetes label selector."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.operator} takes no values")
        return self


class LabelSelector(BaseModel):
    """A Kubernetes label selector: every matchLabels pair and every matchExpressions entry must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, alias="matchExpressions")


class ElasticLimits(BaseModel):
    """At most this much of a burst rule's pods on the virtual node at once (like ResourcePolicy's ``max``)."""

    model_config = ConfigDict(extra="forbid")

    pods: int | None = Field(None, ge=0, description="Pods of the rule on the virtual node.")
    cpu: float | None = Field(None, ge=0, description="vCPU requested by the rule's pods on the virtual node.")


class ElasticRule(BaseModel):
    """One rule of the elastic profile (docs/elastic.md); the first rule that matches a pod decides."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
    namespace_selector: LabelSelector | None = Field(None, alias="namespaceSelector")
    selector: LabelSelector | None = None
    mode: Literal["serverless", "burst"]
    max: ElasticLimits | None = None
    burst_after_seconds: float = Field(0.0, ge=0, alias="burstAfterSeconds")

    @model_validator(mode="after")
    def _shape(self) -> ElasticRule:
        if self.namespace_selector is None and self.selector is None:
            raise ValueError(f"rule {self.name}: needs a namespaceSelector and/or a selector")
        if self.mode == "serverless" and (self.max is not None or self.burst_after_seconds):
            raise ValueError(f"rule {self.name}: max and burstAfterSeconds apply to burst rules only")
        return self


def _default_elastic_rules() -> list[ElasticRule]:
    return [
        ElasticRule.model_validate(
            {
                "name": "burst-namespaces",
                "mode": "burst",
                "namespaceSelector": {"matchLabels": {"vk-eci.io/mode": "burst"}},
            }
        ),
        ElasticRule.model_validate(
            {
                "name": "serverless-namespaces",
                "mode": "serverless",
                "namespaceSelector": {"matchLabels": {"vk-eci.io/mode": "serverless"}},
            }
        ),
    ]


class ElasticSettings(_Section):
    """Elastic scheduling: the profile, its admission webhook and the burst controller (docs/elastic.md)."""

    enabled: bool = Field(True, description="Run the webhook and the burst controller.")
    rules: list[ElasticRule] = Field(
        default_factory=_default_elastic_rules,
        description="The profile: ordered rules (namespaceSelector and/or selector, mode serverless|burst, max, "
        "burstAfterSeconds). Re-read from the YAML file when it changes. Default: namespaces labelled "
        "vk-eci.io/mode=burst burst, vk-eci.io/mode=serverless go serverless.",
    )
    reload_interval_seconds: float = Field(
        2.0, gt=0, description="How often the YAML file is checked for a changed profile."
    )
    webhook_port: int = Field(9443, ge=0, le=65535, description="HTTPS port of the admission webhook (0 = any).")
    webhook_bind_address: str = Field("0.0.0.0", description="Bind address of the admission webhook.")
    namespace: str = Field("vk-eci", description="The daemon's namespace: its webhook Service and Secret live here.")
    service_name: str = Field("vk-eci-webhook", description="The webhook's Service (its DNS names are in the cert).")
    secret_name: str = Field("vk-eci-webhook-tls", description="Secret holding the webhook's CA and serving cert.")
    webhook_configuration: str = Field(
        "vk-eci", description="MutatingWebhookConfiguration whose caBundle the daemon writes at start."
    )
    cert_file: Path | None = Field(None, description="Serving certificate file (then no Secret, no caBundle write).")
    key_file: Path | None = Field(None, description="Serving key file (with cert_file).")
    deletion_cost: int = Field(
        -1000,
        ge=-(2**31),
        le=2**31 - 1,
        description="controller.kubernetes.io/pod-deletion-cost set on burst pods, so ReplicaSets remove them first.",
    )

    @model_validator(mode="after")
    def _cert_pair(self) -> ElasticSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, v: list[ElasticRule]) -> list[ElasticRule]:
        names = [r.name for r in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return v


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["auto", "json", "console"] = Field("auto", description="auto = JSON unless stderr is a TTY.")


class HASettings(_Section):
    """High availability: leader election among the replicas serving one virtual node (docs/operations.md)."""

    enabled: bool = Field(
        True,
        description="Elect a leader on a coordination.k8s.io Lease; only the leader writes. With one replica "
        "it simply leads. false: no Lease, this process always writes (never run two replicas so).",
    )
    namespace: str | None = Field(
        None,
        description="Namespace of the election Lease (default: $POD_NAMESPACE, else the service account's "
        "namespace, else default).",
    )
    lease_name: str | None = Field(None, description="Name of the election Lease (default: vk-eci-<node name>).")
    identity: str | None = Field(
        None, description="This replica's holderIdentity (default: $POD_NAME or the host name, plus a random suffix)."
    )
    lease_duration_seconds: int = Field(
        15, ge=1, description="How long a standby waits after the Lease last changed before taking it over."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="A leader that has not renewed for this long stops every write and exits (code 3)."
    )
    retry_period_seconds: float = Field(
        2.0, gt=0, description="Renew period of the leader; a standby reads the Lease twice as often."
    )
    standby_poll_interval_seconds: float = Field(
        15.0, gt=0, description="A standby's ECI status poll period (keeps its index warm at a small call budget)."
    )

    @model_validator(mode="after")
    def _timings(self) -> HASettings:
        if not self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                "ha timings must satisfy retry_period_seconds < renew_deadline_seconds < lease_duration_seconds"
            )
        return self


class Settings(BaseSettings):
    """The whole settings tree of `vk-provider run`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    config_file: Path | None = Field(
        None, description="Optional YAML settings file.", json_schema_extra=_flag("--config")
    )
    kube: KubeSettings = Field(default_factory=KubeSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    eci: ECISettings = Field(default_factory=ECISettings)
    pods: PodsSettings = Field(default_factory=PodsSettings)
    kubelet: KubeletSettings = Field(default_factory=KubeletSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    elastic: ElasticSettings = Field(default_factory=ElasticSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    ha: HASettings = Field(default_factory=HASettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_path = _yaml_path_hint.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        if yaml_path is not None:
            sources.append(_YamlSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


class _EnvSource(EnvSettingsSource):
    """The env source, except that a list or map value that is not JSON stays a string.

    A list then takes the documented comma form (``VK_ECI__VSWITCH_IDS=vsw-a,vsw-b``), and anything else
    fails validation naming its setting, instead of pydantic-settings' "error parsing value for field eci".
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


class _YamlSource(YamlConfigSettingsSource):
    """The YAML file source, whose unreadable or malformed file is a one-line SettingsError."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        import yaml

        how = f"set --config or {FIELDS['config_file'].env}"
        try:
            data = super()._read_file(file_path)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise SettingsError(f"config_file: {file_path} is not valid YAML{where}: {problem} ({how})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config_file: cannot read {file_path}: {type(exc).__name__} ({how})") from None
        if not isinstance(data, dict):
            raise SettingsError(
                f"config_file: {file_path} must be a mapping of sections (kube, node, eci, ...), "
                f"not a {type(data).__name__} ({how})"
            )
        return data


# The YAML path is itself a setting (flag or env), so it is found before the model is built.
_yaml_path_hint: dict[str, Path | None] = {"path": None}


@dataclass(frozen=True)
class SettingField:
    """One leaf of the settings tree, as the CLI and the docs generator see it."""

    path: str  # "eci.rate_limit_qps"
    info: FieldInfo

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.path.upper().replace(".", ENV_DELIMITER)

    @property
    def flag(self) -> str:
        return "--" + self.path.replace(".", "-").replace("_", "-")

    @property
    def short_flag(self) -> str | None:
        extra = self.info.json_schema_extra
        if isinstance(extra, dict):
            flag = extra.get("flag")
            return str(flag) if flag else None
        return None

    @property
    def dest(self) -> str:
        return "setting__" + self.path.replace(".", "__")


def iter_fields(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[SettingField]:
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, _Section):
            yield from iter_fields(ann, f"{prefix}{name}.")
        else:
            yield SettingField(prefix + name, info)


FIELDS: dict[str, SettingField] = {f.path: f for f in iter_fields()}


class SettingsError(Exception):
    """A bad setting. str() is a one-line message naming the setting and how to set it."""


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _read_credentials_file(path: Path) -> dict[str, str]:
    import yaml

    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        data = {}
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                data[k.strip()] = v.strip()
    norm = {str(k).lower().replace("-", "_"): str(v) for k, v in data.items()}
    out: dict[str, str] = {}
    for key in ("access_key_id", "alibaba_cloud_access_key_id"):
        if key in norm:
            out["access_key_id"] = norm[key]
    for key in ("access_key_secret", "alibaba_cloud_access_key_secret"):
        if key in norm:
            out["access_key_secret"] = norm[key]
    for key in ("security_token", "alibaba_cloud_security_token"):
        if key in norm:
            out["security_token"] = norm[key]
    return out


# The SDK's own variables (aliyunsdkcore's SignerFactory): when both are set it signs with them, whatever
# credential it is given, so they would silently replace a RAM role or an STS token.
_SDK_ENV_PAIR = ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET")


def _how(path: str) -> str:
    """'--flag or ENV', as the one-line errors say how to set a setting."""
    return f"{FIELDS[path].flag} or {FIELDS[path].env}"


_PAIR_HOW = (
    "--eci-access-key-id and --eci-access-key-secret, VK_ECI__ACCESS_KEY_ID and VK_ECI__ACCESS_KEY_SECRET, "
    "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET"
)


def check_credentials(eci: ECISettings, env: Mapping[str, str] | None = None) -> None:
    """ECI needs exactly one way to sign: an AccessKey pair (optionally with an STS token) or an ECS RAM role.

    Raises SettingsError with a one-line message naming what to set; never a value.
    """
    env = os.environ if env is None else env
    key_id = bool(eci.access_key_id)
    secret = bool(eci.access_key_secret and eci.access_key_secret.get_secret_value())
    token = bool(eci.security_token and eci.security_token.get_secret_value())
    role = bool(eci.ram_role_name)
    if key_id and not secret:
        raise SettingsError(
            "eci.access_key_secret: not set, but eci.access_key_id is "
            f"(set {_how('eci.access_key_secret')} or ALIBABA_CLOUD_ACCESS_KEY_SECRET, or eci.credentials_file)"
        )
    if secret and not key_id:
        raise SettingsError(
            "eci.access_key_id: not set, but eci.access_key_secret is "
            f"(set {_how('eci.access_key_id')} or ALIBABA_CLOUD_ACCESS_KEY_ID, or eci.credentials_file)"
        )
    if token and not key_id:
        raise SettingsError(
            f"eci.security_token: an STS token needs its STS AccessKey pair ({_PAIR_HOW}, or eci.credentials_file)"
        )
    if role and key_id:
        raise SettingsError(
            "eci.ram_role_name: set together with an AccessKey pair; use one of them (unset "
            f"{_how('eci.ram_role_name')}, or remove the AccessKey, e.g. the vk-eci-accesskey Secret)"
        )
    if not role and not key_id:
        raise SettingsError(
            f"eci: no credentials for ECI: set an AccessKey pair ({_PAIR_HOW}, or eci.credentials_file) "
            f"or an ECS RAM role ({_how('eci.ram_role_name')})"
        )
    if (role or token) and all(v in env for v in _SDK_ENV_PAIR):
        raise SettingsError(
            f"eci.{'ram_role_name' if role else 'security_token'}: {' and '.join(_SDK_ENV_PAIR)} are set in "
            "the environment, and the SDK would sign with them instead (unset them)"
        )


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from flags (dotted path -> value) over env over YAML over defaults.

    Raises SettingsError with a one-line message on any bad value.
    """
    env = os.environ
    flat = {k: v for k, v in (flags or {}).items() if v is not None}
    # The SDK's standard credential variables, below our own VK_ ones.
    for var, path in (
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "eci.access_key_id"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "eci.access_key_secret"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "eci.security_token"),
    ):
        if env.get(var) and path not in flat and FIELDS[path].env not in env:
            flat[path] = env[var]
    yaml_path = flat.get("config_file") or env.get(FIELDS["config_file"].env)
    _yaml_path_hint["path"] = Path(yaml_path) if yaml_path else None
    if yaml_path and not Path(yaml_path).is_file():
        raise SettingsError(f"config_file: {yaml_path} does not exist (set --config or {FIELDS['config_file'].env})")
    try:
        settings = Settings(**_nest(flat))
        cred_file = settings.eci.credentials_file
        if cred_file is not None:
            if not cred_file.is_file():
                raise SettingsError(
                    f"eci.credentials_file: {cred_file} does not exist "
                    f"(set --eci-credentials-file or {FIELDS['eci.credentials_file'].env})"
                )
            creds = _read_credentials_file(cred_file)
            update: dict[str, Any] = {}
            if settings.eci.access_key_id is None and "access_key_id" in creds:
                update["access_key_id"] = creds["access_key_id"]
            if settings.eci.access_key_secret is None and "access_key_secret" in creds:
                update["access_key_secret"] = SecretStr(creds["access_key_secret"])
            if settings.eci.security_token is None and "security_token" in creds:
                update["security_token"] = SecretStr(creds["security_token"])
            if update:
                settings.eci = settings.eci.model_copy(update=update)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    finally:
        _yaml_path_hint["path"] = None
    # `vk-provider run` always runs the ECI provider: refuse to start without a way to sign its calls.
    check_credentials(settings.eci, env)
    return settings


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    field = FIELDS.get(path)
    how = f" (set {field.short_flag or field.flag} or {field.env})" if field else ""
    # Never echo the value: it may be a secret.
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}: {err['msg']}{how}{more}"


def render_markdown() -> str:
    """docs/configuration.md, generated from the model."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `vk-provider config-docs` from vk_provider/settings.py. Do not edit. -->",
        "",
        "Sources, later winning: defaults, the YAML file (`--config`), `VK_*` environment variables,",
        "then flags. YAML nests by section (`eci: {region: cn-beijing}`). Lists and maps in env or",
        'flags are JSON (`\'["a","b"]\'`); list settings also take a comma-separated string.',
        "`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and `ALIBABA_CLOUD_SECURITY_TOKEN`",
        "are read too, below `VK_ECI__ACCESS_KEY_ID` / `VK_ECI__ACCESS_KEY_SECRET` / `VK_ECI__SECURITY_TOKEN`.",
        "`vk-provider run` needs ECI credentials: an AccessKey pair (with `eci.security_token` for an STS",
        "pair) or `eci.ram_role_name`, exactly one of the two; otherwise it exits with code 2.",
        "",
        "| Setting | Flag | Environment | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for f in FIELDS.values():
        default = f.info.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = str(default)
        if isinstance(default, list) and default and isinstance(default[0], BaseModel):
            default = "see docs/elastic.md"
        shown = "" if default is None else f"`{default}`"
        flags = f"`{f.flag}`" + (f", `{f.short_flag}`" if f.short_flag else "")
        desc = (f.info.description or "").replace("|", "\\|")
        lines.append(f"| `{f.path}` | {flags} | `{f.env}` | {shown} | {desc} |")
    return "\n".join(lines) + "\n"
