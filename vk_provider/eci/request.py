"""The CreateContainerGroup request: its typed model and its wire form.

``CreateRequest`` (built by ``translate.translate_pod``) holds everything the service will be sent;
``CreateRequest.to_params`` flattens it into the service's wire names (``Container.1.Arg.2``,
``Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode`` ...), which ``ECIClient.call`` sends. We do not
use the SDK's list setters: they only cover part of the fields (no FieldRef, SizeLimit or per-file
Mode in 1.3.3), and a flat mapping is one wire form we can test without the SDK.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from vk_provider.eci.specs import SizeChoice


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
    spot_duration: int | None = None
    spot_fallback: bool = False  # NoStock: after the spot attempts, the same ones as pay-as-you-go
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
        if not chosen.pay_as_you_go:
            _put(p, "SpotStrategy", self.spot_strategy)
            _put(p, "SpotPriceLimit", self.spot_price_limit)
            _put(p, "SpotDuration", self.spot_duration)
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


__all__ = [
    "ConfigFile",
    "ContainerSpec",
    "CreateRequest",
    "EnvVar",
    "HandlerSpec",
    "MountSpec",
    "PortSpec",
    "ProbeSpec",
    "RegistryCredential",
    "VolumeSpec",
]
