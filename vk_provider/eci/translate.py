"""Pod -> CreateContainerGroup: every field the service supports, or a clear refusal.

``translate_pod`` builds a typed ``CreateRequest``; ``CreateRequest.to_params`` flattens it into the
service's wire names (``Container.1.Arg.2``, ``Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode``
...), which ``apply_to_sdk_request`` or ``ECIClient.call`` send with ``add_query_param``. We do not
use the SDK's list setters: they only cover part of the fields (no FieldRef, SizeLimit or per-file
Mode in 1.3.3), and a flat mapping is one wire form we can test without the SDK.

Where the kubelet's behaviour is followed (env expansion, service links, missing references,
resourceFieldRef rounding), the comment says so.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from vk_provider.eci import limits, names
from vk_provider.eci.annotations import PodAnnotations, parse_annotations
from vk_provider.eci.specs import SizeChoice, ceil_div, container_size, parse_quantity, size_for_pod
from vk_provider.errors import InvalidInput, NotSupported, TransientError
from vk_provider.provider import Pod, PodResources
from vk_provider.settings import ECISettings

MAX_CONTAINERS = 20
MAX_TAGS = 20
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvVar(_M):
    key: str
    value: str | None = None
    field_path: str | None = None  # resolved by the service (status.podIP)


class PortSpec(_M):
    port: int
    protocol: str = "TCP"


class MountSpec(_M):
    name: str
    mount_path: str
    sub_path: str | None = None
    read_only: bool = False


class ProbeSpec(_M):
    exec_command: list[str] | None = None
    http_path: str | None = None
    http_port: int | None = None
    http_scheme: str | None = None
    tcp_port: int | None = None
    initial_delay_seconds: int | None = None
    period_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None


class HandlerSpec(_M):
    exec_command: list[str] | None = None
    http_host: str | None = None
    http_port: int | None = None
    http_path: str | None = None
    http_scheme: str | None = None
    tcp_host: str | None = None
    tcp_port: int | None = None


class ContainerSpec(_M):
    name: str
    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    working_dir: str | None = None
    image_pull_policy: str | None = None
    cpu: float | None = None
    memory: float | None = None
    ports: list[PortSpec] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    mounts: list[MountSpec] = Field(default_factory=list)
    readiness: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    post_start: HandlerSpec | None = None
    pre_stop: HandlerSpec | None = None
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    run_as_user: int | None = None
    capabilities_add: list[str] = Field(default_factory=list)
    read_only_root_filesystem: bool | None = None
    gpu: int | None = None


class ConfigFile(_M):
    path: str
    content: str  # base64
    mode: int | None = None


class VolumeSpec(_M):
    name: str
    type: str  # ConfigFileVolume | EmptyDirVolume | NFSVolume
    files: list[ConfigFile] = Field(default_factory=list)
    default_mode: int | None = None
    medium: str | None = None
    size_limit: str | None = None
    nfs_server: str | None = None
    nfs_path: str | None = None
    nfs_read_only: bool | None = None


class RegistryCredential(_M):
    server: str
    username: str
    password: SecretStr


class CreateRequest(_M):
    """Everything CreateContainerGroup will be sent, typed. ``sizes`` are tried in order on NoStock."""

    name: str
    client_token: str
    sizes: list[SizeChoice]
    vswitch_ids: list[str] = Field(default_factory=list)
    schedule_strategy: str | None = None
    security_group_id: str | None = None
    restart_policy: str = "Always"
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    containers: list[ContainerSpec]
    init_containers: list[ContainerSpec] = Field(default_factory=list)
    volumes: list[VolumeSpec] = Field(default_factory=list)
    credentials: list[RegistryCredential] = Field(default_factory=list)
    dns_nameservers: list[str] = Field(default_factory=list)
    dns_searches: list[str] = Field(default_factory=list)
    dns_options: list[tuple[str, str | None]] = Field(default_factory=list)
    host_aliases: list[tuple[str, list[str]]] = Field(default_factory=list)
    hostname: str | None = None
    sysctls: list[tuple[str, str]] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    spot_strategy: str | None = None
    spot_price_limit: float | None = None
    image_snapshot_id: str | None = None
    auto_match_image_cache: bool | None = None
    auto_create_eip: bool | None = None
    eip_bandwidth: int | None = None
    ram_role_name: str | None = None
    ephemeral_storage: int | None = None
    resource_group_id: str | None = None

    def to_params(self, *, size: SizeChoice | None = None, vswitch_ids: list[str] | None = None) -> dict[str, Any]:
        """The flat wire parameters; ``size``/``vswitch_ids`` override the first choice (NoStock retries)."""
        p: dict[str, Any] = {"ContainerGroupName": self.name, "ClientToken": self.client_token}
        chosen = size or self.sizes[0]
        if chosen.instance_type:
            p["InstanceType"] = chosen.instance_type
        else:
            p["Cpu"] = chosen.cpu
            p["Memory"] = chosen.memory
        vsw = self.vswitch_ids if vswitch_ids is None else vswitch_ids
        if vsw:
            p["VSwitchId"] = ",".join(vsw)
        _put(p, "ScheduleStrategy", self.schedule_strategy)
        _put(p, "SecurityGroupId", self.security_group_id)
        p["RestartPolicy"] = self.restart_policy
        _put(p, "TerminationGracePeriodSeconds", self.termination_grace_period_seconds)
        _put(p, "ActiveDeadlineSeconds", self.active_deadline_seconds)
        for i, c in enumerate(self.containers, 1):
            _container_params(p, f"Container.{i}.", c, probes=True)
        for i, c in enumerate(self.init_containers, 1):
            _container_params(p, f"InitContainer.{i}.", c, probes=False)
        for i, v in enumerate(self.volumes, 1):
            pre = f"Volume.{i}."
            p[pre + "Name"] = v.name
            p[pre + "Type"] = v.type
            if v.type == "ConfigFileVolume":
                for j, f in enumerate(v.files, 1):
                    fp = f"{pre}ConfigFileVolume.ConfigFileToPath.{j}."
                    p[fp + "Path"] = f.path
                    p[fp + "Content"] = f.content
                    _put(p, fp + "Mode", f.mode)
                _put(p, pre + "ConfigFileVolume.DefaultModel", v.default_mode)
            elif v.type == "EmptyDirVolume":
                _put(p, pre + "EmptyDirVolume.Medium", v.medium)
                _put(p, pre + "EmptyDirVolume.SizeLimit", v.size_limit)
            elif v.type == "NFSVolume":
                p[pre + "NFSVolume.Server"] = v.nfs_server
                p[pre + "NFSVolume.Path"] = v.nfs_path
                _put(p, pre + "NFSVolume.ReadOnly", v.nfs_read_only)
        for i, cred in enumerate(self.credentials, 1):
            pre = f"ImageRegistryCredential.{i}."
            p[pre + "Server"] = cred.server
            p[pre + "UserName"] = cred.username
            p[pre + "Password"] = cred.password.get_secret_value()
        for i, ns in enumerate(self.dns_nameservers, 1):
            p[f"DnsConfig.NameServer.{i}"] = ns
        for i, s in enumerate(self.dns_searches, 1):
            p[f"DnsConfig.Search.{i}"] = s
        for i, (name, value) in enumerate(self.dns_options, 1):
            p[f"DnsConfig.Option.{i}.Name"] = name
            _put(p, f"DnsConfig.Option.{i}.Value", value)
        for i, (ip, hostnames) in enumerate(self.host_aliases, 1):
            p[f"HostAliase.{i}.Ip"] = ip
            for j, h in enumerate(hostnames, 1):
                p[f"HostAliase.{i}.Hostname.{j}"] = h
        _put(p, "HostName", self.hostname)
        for i, (name, value) in enumerate(self.sysctls, 1):
            p[f"SecurityContext.Sysctl.{i}.Name"] = name
            p[f"SecurityContext.Sysctl.{i}.Value"] = value
        for i, (tag_key, tag_value) in enumerate(self.tags.items(), 1):
            p[f"Tag.{i}.Key"] = tag_key
            p[f"Tag.{i}.Value"] = tag_value
        _put(p, "SpotStrategy", self.spot_strategy)
        _put(p, "SpotPriceLimit", self.spot_price_limit)
        _put(p, "ImageSnapshotId", self.image_snapshot_id)
        _put(p, "AutoMatchImageCache", self.auto_match_image_cache)
        _put(p, "AutoCreateEip", self.auto_create_eip)
        _put(p, "EipBandwidth", self.eip_bandwidth)
        _put(p, "RamRoleName", self.ram_role_name)
        _put(p, "EphemeralStorage", self.ephemeral_storage)
        _put(p, "ResourceGroupId", self.resource_group_id)
        return p

    def container_params(self) -> dict[str, Any]:
        """Only the container and volume parts (UpdateContainerGroup replaces these lists)."""
        full = self.to_params()
        keep = ("Container.", "InitContainer.", "Volume.", "RestartPolicy")
        return {k: v for k, v in full.items() if k.startswith(keep)}


def _put(p: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        p[key] = value


def _container_params(p: dict[str, Any], pre: str, c: ContainerSpec, *, probes: bool) -> None:
    p[pre + "Name"] = c.name
    p[pre + "Image"] = c.image
    for j, s in enumerate(c.command, 1):
        p[f"{pre}Command.{j}"] = s
    for j, s in enumerate(c.args, 1):
        p[f"{pre}Arg.{j}"] = s
    _put(p, pre + "WorkingDir", c.working_dir)
    _put(p, pre + "ImagePullPolicy", c.image_pull_policy)
    _put(p, pre + "Cpu", c.cpu)
    _put(p, pre + "Memory", c.memory)
    for j, port in enumerate(c.ports, 1):
        p[f"{pre}Port.{j}.Port"] = port.port
        p[f"{pre}Port.{j}.Protocol"] = port.protocol
    for j, e in enumerate(c.env, 1):
        p[f"{pre}EnvironmentVar.{j}.Key"] = e.key
        if e.field_path is not None:
            p[f"{pre}EnvironmentVar.{j}.FieldRef.FieldPath"] = e.field_path
        else:
            p[f"{pre}EnvironmentVar.{j}.Value"] = e.value or ""
    for j, m in enumerate(c.mounts, 1):
        p[f"{pre}VolumeMount.{j}.Name"] = m.name
        p[f"{pre}VolumeMount.{j}.MountPath"] = m.mount_path
        _put(p, f"{pre}VolumeMount.{j}.SubPath", m.sub_path)
        p[f"{pre}VolumeMount.{j}.ReadOnly"] = m.read_only
    if probes:
        for kind, probe in (("ReadinessProbe", c.readiness), ("LivenessProbe", c.liveness)):
            if probe is None:
                continue
            pp = f"{pre}{kind}."
            for j, s in enumerate(probe.exec_command or [], 1):
                p[f"{pp}Exec.Command.{j}"] = s
            _put(p, pp + "HttpGet.Path", probe.http_path)
            _put(p, pp + "HttpGet.Port", probe.http_port)
            _put(p, pp + "HttpGet.Scheme", probe.http_scheme)
            _put(p, pp + "TcpSocket.Port", probe.tcp_port)
            _put(p, pp + "InitialDelaySeconds", probe.initial_delay_seconds)
            _put(p, pp + "PeriodSeconds", probe.period_seconds)
            _put(p, pp + "TimeoutSeconds", probe.timeout_seconds)
            _put(p, pp + "SuccessThreshold", probe.success_threshold)
            _put(p, pp + "FailureThreshold", probe.failure_threshold)
        for kind, h in (("LifecyclePostStartHandler", c.post_start), ("LifecyclePreStopHandler", c.pre_stop)):
            if h is None:
                continue
            for j, s in enumerate(h.exec_command or [], 1):
                p[f"{pre}{kind}Exec.{j}"] = s
            _put(p, f"{pre}{kind}HttpGetHost", h.http_host)
            _put(p, f"{pre}{kind}HttpGetPort", h.http_port)
            _put(p, f"{pre}{kind}HttpGetPath", h.http_path)
            _put(p, f"{pre}{kind}HttpGetScheme", h.http_scheme)
            _put(p, f"{pre}{kind}TcpSocketHost", h.tcp_host)
            _put(p, f"{pre}{kind}TcpSocketPort", h.tcp_port)
    if c.stdin:
        p[pre + "Stdin"] = True
        p[pre + "StdinOnce"] = c.stdin_once
    if c.tty:
        p[pre + "Tty"] = True
    _put(p, pre + "Gpu", c.gpu)
    _put(p, pre + "SecurityContext.RunAsUser", c.run_as_user)
    _put(p, pre + "SecurityContext.ReadOnlyRootFilesystem", c.read_only_root_filesystem)
    for j, cap in enumerate(c.capabilities_add, 1):
        p[f"{pre}SecurityContext.Capability.Add.{j}"] = cap


def apply_to_sdk_request(request: Any, params: Mapping[str, Any]) -> None:
    """Put flat wire parameters on an SDK request (CreateContainerGroupRequest or any other)."""
    from vk_provider.eci.client import encode_value

    for key, value in params.items():
        if value is not None:
            request.add_query_param(key, encode_value(value))


@dataclass
class TranslateResult:
    request: CreateRequest
    warnings: list[str] = field(default_factory=list)
    """Things the service cannot do that do not stop the pod (startupProbe ...): Warning events."""


# ---------------------------------------------------------------------------------------------
# The translation itself


class _Ctx:
    def __init__(self, pod: Pod, resources: PodResources, settings: ECISettings, node_name: str) -> None:
        self.pod = pod
        self.meta: dict[str, Any] = pod.get("metadata") or {}
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.resources = resources
        self.settings = settings
        self.node_name = node_name
        self.warnings: list[str] = []
        self.group_size: SizeChoice | None = None
        self.sizes: list[SizeChoice] = []


def translate_pod(pod: Pod, resources: PodResources, settings: ECISettings, node_name: str) -> TranslateResult:
    """Translate a pod into a CreateRequest, or raise InvalidInput / NotSupported / TransientError.

    TransientError (reason Mandatory*NotFound / FailedMount) means a referenced ConfigMap or Secret is
    missing: the kubelet keeps retrying those, and so should the controller.
    """
    ctx = _Ctx(pod, resources, settings, node_name)
    meta, spec = ctx.meta, ctx.spec
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "DaemonSet":
            raise NotSupported(
                f"pod is owned by DaemonSet {owner.get('name')}: DaemonSets are not run on the virtual node "
                "(every ECI group is its own host); add a nodeAffinity that excludes type=virtual-kubelet",
                reason="DaemonSetNotSupported",
            )
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        raise NotSupported("hostNetwork, hostPID and hostIPC are not available on ECI", reason="HostNamespaces")
    ann = parse_annotations(meta.get("annotations"))
    ctx.warnings.extend(ann.warnings)
    pod_sc = spec.get("securityContext") or {}
    dropped = [k for k in ("fsGroup", "runAsGroup", "supplementalGroups", "runAsNonRoot") if pod_sc.get(k)]
    if dropped:
        ctx.warnings.append(f"pod securityContext {', '.join(dropped)} not supported by ECI and ignored")
    if spec.get("shareProcessNamespace"):
        ctx.warnings.append("shareProcessNamespace is not supported by ECI and ignored")
    if spec.get("subdomain"):
        ctx.warnings.append("subdomain: the pod's FQDN is not written to /etc/hosts on ECI")
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    if not containers:
        raise InvalidInput("the pod has no containers")
    if len(containers) + len(inits) > MAX_CONTAINERS:
        raise InvalidInput(
            f"ECI runs at most {MAX_CONTAINERS} containers per group, the pod has {len(containers) + len(inits)}"
        )
    sizes = ann.sizes or [size_for_pod(spec)]
    ctx.group_size = sizes[0]
    ctx.sizes = sizes
    volumes = _volumes(ctx)
    volume_names = {v.name for v in volumes}
    out_containers = [_container(ctx, c, volume_names, init=False) for c in containers]
    out_inits = [_container(ctx, c, volume_names, init=True) for c in inits]

    uid = str(meta.get("uid") or "")
    if not uid:
        raise InvalidInput("the pod has no metadata.uid")
    tags = names.identity_tags(pod, cluster=settings.cluster_name, node=node_name)
    security_groups = ann.security_group_ids or ([settings.security_group_id] if settings.security_group_id else [])
    req = CreateRequest(
        name=names.group_name(str(meta.get("namespace") or "default"), str(meta.get("name") or "")),
        client_token=names.client_token(uid),
        sizes=sizes,
        vswitch_ids=ann.vswitch_ids or list(settings.vswitch_ids),
        schedule_strategy=ann.schedule_strategy,
        security_group_id=",".join(security_groups) or None,
        restart_policy=_restart_policy(spec),
        termination_grace_period_seconds=_opt_int(spec, "terminationGracePeriodSeconds"),
        active_deadline_seconds=_opt_int(spec, "activeDeadlineSeconds"),
        containers=out_containers,
        init_containers=out_inits,
        volumes=volumes,
        credentials=_credentials(ctx),
        hostname=_hostname(ctx),
        sysctls=_sysctls(ctx),
        tags=tags,
        spot_strategy=ann.spot_strategy,
        spot_price_limit=ann.spot_price_limit,
        image_snapshot_id=ann.image_snapshot_id,
        auto_match_image_cache=ann.auto_match_image_cache,
        auto_create_eip=ann.with_eip,
        eip_bandwidth=ann.eip_bandwidth,
        ram_role_name=ann.ram_role_name,
        ephemeral_storage=ann.extra_ephemeral_storage_gib,
        resource_group_id=ann.resource_group_id,
    )
    _dns(ctx, req)
    req.host_aliases = [
        (str(a.get("ip")), [str(h) for h in a.get("hostnames") or []]) for a in spec.get("hostAliases") or []
    ]
    limits.check_request(req, spec)
    return TranslateResult(request=req, warnings=ctx.warnings)


def annotations_of(pod: Pod) -> PodAnnotations:
    return parse_annotations((pod.get("metadata") or {}).get("annotations"))


def _opt_int(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    return None if v is None else int(v)


def _restart_policy(spec: Mapping[str, Any]) -> str:
    policy = spec.get("restartPolicy") or "Always"
    if policy not in ("Always", "OnFailure", "Never"):
        raise InvalidInput(f"restartPolicy {policy!r} must be Always, OnFailure or Never")
    return str(policy)


def _hostname(ctx: _Ctx) -> str:
    # The kubelet uses spec.hostname, else the pod name, truncated to 63 characters.
    # A subdomain only changes the FQDN in /etc/hosts, which ECI does not let us write.
    hostname = str(ctx.spec.get("hostname") or ctx.meta.get("name") or "pod")
    return hostname[:63].rstrip("-.")


def _sysctls(ctx: _Ctx) -> list[tuple[str, str]]:
    sc = ctx.spec.get("securityContext") or {}
    return [(str(s["name"]), str(s.get("value", ""))) for s in sc.get("sysctls") or []]


def _dns(ctx: _Ctx, req: CreateRequest) -> None:
    policy = ctx.spec.get("dnsPolicy") or "ClusterFirst"
    ns = str(ctx.meta.get("namespace") or "default")
    domain = ctx.settings.cluster_domain
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        if ctx.settings.cluster_dns:
            # The kubelet's ClusterFirst resolv.conf: the cluster DNS, the namespace's search
            # path, and ndots:5.
            req.dns_nameservers = list(ctx.settings.cluster_dns)
            req.dns_searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
            req.dns_options = [("ndots", "5")]
        else:
            ctx.warnings.append("dnsPolicy ClusterFirst but no eci.cluster_dns is configured: the pod uses VPC DNS")
    elif policy not in ("Default", "None"):
        raise InvalidInput(f"dnsPolicy {policy!r} is not one of ClusterFirst, ClusterFirstWithHostNet, Default, None")
    cfg = ctx.spec.get("dnsConfig") or {}
    req.dns_nameservers += [str(x) for x in cfg.get("nameservers") or [] if str(x) not in req.dns_nameservers]
    req.dns_searches += [str(x) for x in cfg.get("searches") or [] if str(x) not in req.dns_searches]
    for opt in cfg.get("options") or []:
        name = str(opt.get("name"))
        req.dns_options = [o for o in req.dns_options if o[0] != name]
        value = opt.get("value")
        req.dns_options.append((name, None if value is None else str(value)))
    if policy == "None" and not req.dns_nameservers:
        raise InvalidInput("dnsPolicy None needs dnsConfig.nameservers")


# --- containers ---------------------------------------------------------------------------------


def _container(ctx: _Ctx, c: Mapping[str, Any], volume_names: set[str], *, init: bool) -> ContainerSpec:
    name = str(c.get("name") or "")
    what = f"{'init container' if init else 'container'} {name}"
    image = c.get("image")
    if not image:
        raise InvalidInput(f"{what} has no image")
    if init and c.get("restartPolicy") == "Always":
        raise NotSupported(
            f"{what}: sidecar init containers (restartPolicy: Always) are not supported on ECI; "
            "make it a regular container",
            reason="SidecarNotSupported",
        )
    gpu_raw = ((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
    gpu: int | None = None
    if gpu_raw is not None:
        try:
            gpu = int(str(gpu_raw))
        except ValueError:
            raise InvalidInput(f"{what}: nvidia.com/gpu limit {gpu_raw!r} must be a whole number") from None
        if not any(size.instance_type for size in ctx.sizes):
            ctx.warnings.append(
                f"{what}: asks for GPUs but no GPU instance type is set; add k8s.aliyun.com/eci-use-specs "
                "with an ecs.gn* type"
            )
    env = _env(ctx, c, what)
    # The kubelet expands $(VAR) in command and args with the container's environment.
    values = {e.key: e.value for e in env if e.value is not None}
    cpu, mem = container_size(dict(c))
    sc = c.get("securityContext") or {}
    pod_sc = ctx.spec.get("securityContext") or {}
    if sc.get("privileged"):
        raise NotSupported(f"{what}: privileged containers are not available on ECI", reason="Privileged")
    if c.get("startupProbe"):
        ctx.warnings.append(f"{what}: startupProbe is not supported by ECI and was dropped; the pod still runs")
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    dropped = [k for k in ("runAsGroup", "runAsNonRoot", "seLinuxOptions", "seccompProfile") if sc.get(k) is not None]
    if (sc.get("capabilities") or {}).get("drop"):
        dropped.append("capabilities.drop")
    if dropped:
        ctx.warnings.append(f"{what}: securityContext {', '.join(dropped)} not supported by ECI and ignored")
    if any(p.get("hostPort") for p in c.get("ports") or []):
        ctx.warnings.append(f"{what}: hostPort is ignored (each ECI group has its own IP)")
    ports = []
    for port in c.get("ports") or []:
        proto = str(port.get("protocol") or "TCP")
        if proto not in ("TCP", "UDP"):
            raise InvalidInput(f"{what}: port {port.get('containerPort')} protocol {proto} is not supported (TCP, UDP)")
        ports.append(PortSpec(port=int(port["containerPort"]), protocol=proto))
    mounts = []
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in volume_names:
            raise InvalidInput(f"{what}: volumeMount {m.get('name')!r} names no volume of the pod")
        if m.get("subPathExpr"):
            raise NotSupported(
                f"{what}: volumeMount {m.get('name')}: subPathExpr is not supported", reason="SubPathExpr"
            )
        mounts.append(
            MountSpec(
                name=str(m["name"]),
                mount_path=str(m["mountPath"]),
                sub_path=m.get("subPath") or None,
                read_only=bool(m.get("readOnly", False)),
            )
        )
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        raise InvalidInput(f"{what}: imagePullPolicy {policy!r} must be Always, IfNotPresent or Never")
    return ContainerSpec(
        name=name,
        image=str(image),
        command=[_expand(str(s), values) for s in c.get("command") or []],
        args=[_expand(str(s), values) for s in c.get("args") or []],
        working_dir=c.get("workingDir") or None,
        image_pull_policy=policy,
        cpu=round(cpu, 3) if cpu > 0 else None,
        memory=round(mem, 3) if mem > 0 else None,
        ports=ports,
        env=env,
        mounts=mounts,
        readiness=None if init else _probe(c.get("readinessProbe"), c, what, "readinessProbe"),
        liveness=None if init else _probe(c.get("livenessProbe"), c, what, "livenessProbe"),
        post_start=None if init else _handler((c.get("lifecycle") or {}).get("postStart"), c, what, "postStart"),
        pre_stop=None if init else _handler((c.get("lifecycle") or {}).get("preStop"), c, what, "preStop"),
        stdin=bool(c.get("stdin", False)),
        stdin_once=bool(c.get("stdinOnce", False)),
        tty=bool(c.get("tty", False)),
        run_as_user=None if run_as_user is None else int(run_as_user),
        capabilities_add=[str(x) for x in (sc.get("capabilities") or {}).get("add") or []],
        read_only_root_filesystem=sc.get("readOnlyRootFilesystem"),
        gpu=gpu or None,
    )


def _resolve_port(port: Any, c: Mapping[str, Any], what: str, where: str) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise InvalidInput(f"{what}: {where} names port {port!r}, which the container does not declare")


def _probe(probe: Mapping[str, Any] | None, c: Mapping[str, Any], what: str, where: str) -> ProbeSpec | None:
    if not probe:
        return None
    out = ProbeSpec(
        initial_delay_seconds=probe.get("initialDelaySeconds"),
        period_seconds=probe.get("periodSeconds"),
        timeout_seconds=probe.get("timeoutSeconds"),
        success_threshold=probe.get("successThreshold"),
        failure_threshold=probe.get("failureThreshold"),
    )
    if probe.get("exec"):
        out.exec_command = [str(s) for s in probe["exec"].get("command") or []]
    elif probe.get("httpGet"):
        hg = probe["httpGet"]
        out.http_path = str(hg.get("path") or "/")
        out.http_port = _resolve_port(hg.get("port"), c, what, where)
        out.http_scheme = str(hg.get("scheme") or "HTTP")
    elif probe.get("tcpSocket"):
        out.tcp_port = _resolve_port(probe["tcpSocket"].get("port"), c, what, where)
    else:
        raise NotSupported(
            f"{what}: {where} uses a handler ECI does not support (exec, httpGet, tcpSocket only)",
            reason="ProbeNotSupported",
        )
    return out


def _handler(h: Mapping[str, Any] | None, c: Mapping[str, Any], what: str, where: str) -> HandlerSpec | None:
    if not h:
        return None
    if h.get("exec"):
        return HandlerSpec(exec_command=[str(s) for s in h["exec"].get("command") or []])
    if h.get("httpGet"):
        hg = h["httpGet"]
        return HandlerSpec(
            http_host=hg.get("host") or None,
            http_port=_resolve_port(hg.get("port"), c, what, f"lifecycle.{where}"),
            http_path=str(hg.get("path") or "/"),
            http_scheme=str(hg.get("scheme") or "HTTP"),
        )
    if h.get("tcpSocket"):
        ts = h["tcpSocket"]
        return HandlerSpec(
            tcp_host=ts.get("host") or None, tcp_port=_resolve_port(ts.get("port"), c, what, f"lifecycle.{where}")
        )
    raise NotSupported(
        f"{what}: lifecycle.{where} uses a handler ECI does not support (exec, httpGet, tcpSocket)",
        reason="LifecycleNotSupported",
    )


# --- environment ----------------------------------------------------------------------------------

_EXPAND = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def _expand(text: str, values: Mapping[str, str | None]) -> str:
    """The kubelet's $(VAR) expansion: known names are replaced, $$ escapes, unknown stay as they are."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        v = values.get(m.group(1))
        return m.group(0) if v is None else v

    return _EXPAND.sub(sub, text)


def _config_map(ctx: _Ctx, name: str, optional: bool, what: str) -> dict[str, str] | None:
    data = ctx.resources.config_maps.get(name)
    if data is None and not optional:
        raise TransientError(f"{what}: configmap {name!r} not found", reason="MandatoryConfigMapNotFound")
    return data


def _secret(ctx: _Ctx, name: str, optional: bool, what: str) -> dict[str, bytes] | None:
    data = ctx.resources.secrets.get(name)
    if data is None and not optional:
        raise TransientError(f"{what}: secret {name!r} not found", reason="MandatorySecretNotFound")
    return data


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _env(ctx: _Ctx, c: Mapping[str, Any], what: str) -> list[EnvVar]:
    # The kubelet's order: envFrom first, then env (later wins), then service links for names not set.
    out: dict[str, EnvVar] = {}
    for src in c.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        items: dict[str, str] = {}
        if src.get("configMapRef"):
            ref = src["configMapRef"]
            items = dict(_config_map(ctx, str(ref.get("name")), bool(ref.get("optional")), what) or {})
        elif src.get("secretRef"):
            ref = src["secretRef"]
            items = {
                k: _text(v)
                for k, v in (_secret(ctx, str(ref.get("name")), bool(ref.get("optional")), what) or {}).items()
            }
        bad = []
        for k, v in items.items():
            key = prefix + k
            if not _ENV_NAME.match(key):
                bad.append(key)
                continue
            out[key] = EnvVar(key=key, value=v)
        if bad:
            ctx.warnings.append(
                f"{what}: skipped invalid environment variable names from envFrom: {', '.join(sorted(bad))}"
            )
    values: dict[str, str | None] = {k: v.value for k, v in out.items()}
    for e in c.get("env") or []:
        key = str(e.get("name"))
        if "value" in e or not e.get("valueFrom"):
            var = EnvVar(key=key, value=_expand(str(e.get("value") or ""), {**ctx.resources.service_env, **values}))
        else:
            resolved = _value_from(ctx, c, e["valueFrom"], what, key)
            if resolved is None:
                continue
            var = resolved
        out[key] = var
        values[key] = var.value
    for k, v in ctx.resources.service_env.items():
        if k not in out:
            out[k] = EnvVar(key=k, value=v)
    return list(out.values())


def _value_from(ctx: _Ctx, c: Mapping[str, Any], vf: Mapping[str, Any], what: str, key: str) -> EnvVar | None:
    if vf.get("configMapKeyRef"):
        ref = vf["configMapKeyRef"]
        optional = bool(ref.get("optional"))
        data = _config_map(ctx, str(ref.get("name")), optional, what)
        if data is None or ref.get("key") not in data:
            if optional:
                return None
            raise TransientError(
                f"{what}: env {key}: key {ref.get('key')!r} not found in configmap {ref.get('name')!r}",
                reason="MandatoryConfigMapNotFound",
            )
        return EnvVar(key=key, value=data[str(ref["key"])])
    if vf.get("secretKeyRef"):
        ref = vf["secretKeyRef"]
        optional = bool(ref.get("optional"))
        sdata = _secret(ctx, str(ref.get("name")), optional, what)
        if sdata is None or ref.get("key") not in sdata:
            if optional:
                return None
            raise TransientError(
                f"{what}: env {key}: key {ref.get('key')!r} not found in secret {ref.get('name')!r}",
                reason="MandatorySecretNotFound",
            )
        return EnvVar(key=key, value=_text(sdata[str(ref["key"])]))
    if vf.get("fieldRef"):
        path = str(vf["fieldRef"].get("fieldPath"))
        if path in ("status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs"):
            # Known only once the group runs: ECI resolves it. Each group is its own host, so the
            # host IP is the pod IP.
            return EnvVar(key=key, field_path="status.podIP")
        return EnvVar(key=key, value=_field_value(ctx, path, f"{what}: env {key}"))
    if vf.get("resourceFieldRef"):
        return EnvVar(key=key, value=_resource_value(ctx, c, vf["resourceFieldRef"], f"{what}: env {key}"))
    raise InvalidInput(f"{what}: env {key}: unsupported valueFrom")


def _field_value(ctx: _Ctx, path: str, what: str) -> str:
    meta = ctx.meta
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": ctx.node_name,
        "spec.serviceAccountName": ctx.spec.get("serviceAccountName") or "default",
    }
    if path in simple:
        return str(simple[path] or "")
    m = _LABEL_REF.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise InvalidInput(f"{what}: fieldRef {path!r} is not supported")


def _resource_value(ctx: _Ctx, c: Mapping[str, Any], ref: Mapping[str, Any], what: str) -> str:
    container_name = ref.get("containerName") or c.get("name")
    target = c
    for other in (ctx.spec.get("containers") or []) + (ctx.spec.get("initContainers") or []):
        if other.get("name") == container_name:
            target = other
    resource = str(ref.get("resource"))
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise InvalidInput(f"{what}: resourceFieldRef {resource!r} is not supported")
    resources = target.get("resources") or {}
    raw = (resources.get(kind) or {}).get(res)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(res)
    if raw is None:
        # The kubelet falls back to the node's allocatable; ours is the group's size.
        size = ctx.group_size or SizeChoice()
        if res == "cpu":
            raw = str(size.cpu or 0)
        elif res == "memory":
            raw = f"{size.memory or 0}Gi"
        else:
            raw = "30Gi"
    try:
        value = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except ValueError:
        raise InvalidInput(f"{what}: resourceFieldRef has a bad quantity") from None
    if divisor <= 0:
        raise InvalidInput(f"{what}: resourceFieldRef divisor must be positive")
    # The kubelet rounds up to whole divisors (a 250m CPU limit with divisor 1 reads as 1).
    return str(ceil_div(value, divisor) if value > 0 else 0)


# --- volumes -----------------------------------------------------------------------------------------


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _mode(value: Any) -> int | None:
    return None if value is None else int(value)


def _keyed_files(
    data: Mapping[str, str | bytes] | None,
    items: list[Mapping[str, Any]] | None,
    default_mode: int | None,
    optional: bool,
    what: str,
    reason: str,
) -> list[ConfigFile]:
    if data is None:
        return []
    files = []
    if items:
        for it in items:
            key = str(it.get("key"))
            if key not in data:
                if optional:
                    continue
                raise TransientError(f"{what}: key {key!r} not found", reason=reason)
            files.append(
                ConfigFile(path=str(it.get("path")), content=_b64(data[key]), mode=_mode(it.get("mode", default_mode)))
            )
    else:
        for key, value in sorted(data.items()):
            files.append(ConfigFile(path=key, content=_b64(value), mode=default_mode))
    return files


def _downward_files(ctx: _Ctx, items: list[Mapping[str, Any]], default_mode: int | None, what: str) -> list[ConfigFile]:
    files = []
    containers = ctx.spec.get("containers") or []
    for it in items:
        if it.get("fieldRef"):
            path = str(it["fieldRef"].get("fieldPath"))
            value = _field_value(ctx, path, f"{what}: {it.get('path')}")
        elif it.get("resourceFieldRef"):
            c = containers[0] if containers else {}
            value = _resource_value(ctx, c, it["resourceFieldRef"], f"{what}: {it.get('path')}")
        else:
            raise InvalidInput(f"{what}: item {it.get('path')!r} needs fieldRef or resourceFieldRef")
        files.append(
            ConfigFile(path=str(it.get("path")), content=_b64(value), mode=_mode(it.get("mode", default_mode)))
        )
    return files


def _volumes(ctx: _Ctx) -> list[VolumeSpec]:
    out = []
    for v in ctx.spec.get("volumes") or []:
        name = str(v.get("name"))
        what = f"volume {name}"
        if "configMap" in v:
            src = v["configMap"]
            optional = bool(src.get("optional"))
            mode = _mode(src.get("defaultMode", 0o644))
            data = ctx.resources.config_maps.get(str(src.get("name")))
            if data is None and not optional:
                raise TransientError(f"{what}: configmap {src.get('name')!r} not found", reason="FailedMount")
            files = _keyed_files(data, src.get("items"), mode, optional, what, "FailedMount")
            out.append(_config_volume(name, files, mode))
        elif "secret" in v:
            src = v["secret"]
            optional = bool(src.get("optional"))
            mode = _mode(src.get("defaultMode", 0o644))
            sdata = ctx.resources.secrets.get(str(src.get("secretName")))
            if sdata is None and not optional:
                raise TransientError(f"{what}: secret {src.get('secretName')!r} not found", reason="FailedMount")
            files = _keyed_files(sdata, src.get("items"), mode, optional, what, "FailedMount")
            out.append(_config_volume(name, files, mode))
        elif "downwardAPI" in v:
            src = v["downwardAPI"]
            mode = _mode(src.get("defaultMode", 0o644))
            out.append(_config_volume(name, _downward_files(ctx, src.get("items") or [], mode, what), mode))
        elif "projected" in v:
            out.append(_projected(ctx, name, v["projected"], what))
        elif "emptyDir" in v:
            src = v["emptyDir"] or {}
            medium = src.get("medium") or None
            if medium not in (None, "Memory"):
                raise NotSupported(
                    f'{what}: emptyDir medium {medium!r} is not supported ("" or Memory)', reason="VolumeNotSupported"
                )
            size = src.get("sizeLimit")
            if size is not None:
                try:
                    parse_quantity(size)
                except ValueError:
                    raise InvalidInput(f"{what}: emptyDir sizeLimit {size!r} is not a quantity") from None
            out.append(
                VolumeSpec(
                    name=name, type="EmptyDirVolume", medium=medium, size_limit=None if size is None else str(size)
                )
            )
        elif "nfs" in v:
            src = v["nfs"]
            out.append(
                VolumeSpec(
                    name=name,
                    type="NFSVolume",
                    nfs_server=str(src.get("server")),
                    nfs_path=str(src.get("path")),
                    nfs_read_only=bool(src.get("readOnly", False)),
                )
            )
        else:
            kind = next((k for k in v if k != "name"), "unknown")
            raise NotSupported(
                f"{what}: {kind} volumes are not supported on ECI "
                "(configMap, secret, downwardAPI, projected, emptyDir and nfs are)",
                reason="VolumeNotSupported",
            )
    return out


def _config_volume(name: str, files: list[ConfigFile], mode: int | None) -> VolumeSpec:
    if not files:
        # An optional source that is missing or empty mounts an empty directory, as on a kubelet.
        return VolumeSpec(name=name, type="EmptyDirVolume")
    return VolumeSpec(name=name, type="ConfigFileVolume", files=files, default_mode=mode)


def _projected(ctx: _Ctx, name: str, src: Mapping[str, Any], what: str) -> VolumeSpec:
    mode = _mode(src.get("defaultMode", 0o644))
    files: list[ConfigFile] = []
    for s in src.get("sources") or []:
        if s.get("configMap"):
            ref = s["configMap"]
            optional = bool(ref.get("optional"))
            data = _config_map(ctx, str(ref.get("name")), optional, what)
            files += _keyed_files(data, ref.get("items"), mode, optional, what, "FailedMount")
        elif s.get("secret"):
            ref = s["secret"]
            optional = bool(ref.get("optional"))
            sdata = _secret(ctx, str(ref.get("name")), optional, what)
            files += _keyed_files(sdata, ref.get("items"), mode, optional, what, "FailedMount")
        elif s.get("downwardAPI"):
            files += _downward_files(ctx, s["downwardAPI"].get("items") or [], mode, what)
        elif s.get("serviceAccountToken"):
            path = str(s["serviceAccountToken"].get("path"))
            token = ctx.resources.tokens.get(f"{name}/{path}")
            if token is None:
                raise TransientError(
                    f"{what}: service account token for {path!r} is not issued yet", reason="FailedMount"
                )
            files.append(ConfigFile(path=path, content=_b64(token), mode=mode))
        else:
            kind = next(iter(s), "unknown")
            raise NotSupported(f"{what}: projected source {kind} is not supported", reason="VolumeNotSupported")
    return _config_volume(name, files, mode)


# --- image pull secrets ----------------------------------------------------------------------------


def _registry_server(raw: str) -> str:
    server = re.sub(r"^[a-z]+://", "", raw.strip())
    server = server.split("/", 1)[0]
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io") else server


def _credentials(ctx: _Ctx) -> list[RegistryCredential]:
    out: list[RegistryCredential] = []
    seen: set[str] = set()
    for ref in ctx.spec.get("imagePullSecrets") or []:
        name = str(ref.get("name"))
        data = ctx.resources.secrets.get(name)
        if data is None:
            # The kubelet only warns and tries an anonymous pull.
            ctx.warnings.append(f"imagePullSecret {name!r} not found; pulling without it")
            continue
        auths: Mapping[str, Any] = {}
        try:
            if ".dockerconfigjson" in data:
                auths = json.loads(data[".dockerconfigjson"]).get("auths") or {}
            elif ".dockercfg" in data:
                auths = json.loads(data[".dockercfg"])
            else:
                ctx.warnings.append(f"imagePullSecret {name!r} has neither .dockerconfigjson nor .dockercfg")
                continue
        except (ValueError, AttributeError):
            # Never echo the content: it holds passwords.
            ctx.warnings.append(f"imagePullSecret {name!r} is not valid docker config JSON; ignored")
            continue
        for server, entry in auths.items():
            if not isinstance(entry, Mapping):
                continue
            user, password = entry.get("username"), entry.get("password")
            if (user is None or password is None) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
                except ValueError:
                    ctx.warnings.append(f"imagePullSecret {name!r}: an auth entry is not base64; ignored")
                    continue
            host = _registry_server(str(server))
            if not user or password is None or host in seen:
                continue
            seen.add(host)
            out.append(RegistryCredential(server=host, username=str(user), password=SecretStr(str(password))))
    return out


__all__ = [
    "ConfigFile",
    "ContainerSpec",
    "CreateRequest",
    "EnvVar",
    "RegistryCredential",
    "TranslateResult",
    "VolumeSpec",
    "apply_to_sdk_request",
    "translate_pod",
]
