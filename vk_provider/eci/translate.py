"""Pod -> CreateContainerGroup: every field the service supports, or a clear refusal.

``translate_pod`` builds a typed ``CreateRequest`` (``request.py``, which also holds its wire form)
from the pod and the ConfigMaps, Secrets and tokens the controller resolved for it. The pod-level
fields and the containers (image, command, ports, probes, lifecycle handlers, security context) are
translated here; the environment in ``env.py``, volumes in ``volumes.py``, imagePullSecrets in
``pull_secrets.py``, and what their references read in ``references.py``.

Where the kubelet's behaviour is followed (env expansion, service links, missing references,
resourceFieldRef rounding), the comment says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vk_provider.eci import limits, names
from vk_provider.eci.annotations import parse_annotations
from vk_provider.eci.env import container_env, expand
from vk_provider.eci.pull_secrets import registry_credentials
from vk_provider.eci.references import TranslateContext
from vk_provider.eci.request import ContainerSpec, CreateRequest, HandlerSpec, MountSpec, PortSpec, ProbeSpec
from vk_provider.eci.specs import container_size, size_for_pod
from vk_provider.eci.volumes import pod_volumes
from vk_provider.errors import InvalidInput, NotSupported
from vk_provider.provider import Pod, PodResources
from vk_provider.settings import ECISettings

MAX_CONTAINERS = 20


@dataclass
class TranslateResult:
    request: CreateRequest
    warnings: list[str] = field(default_factory=list)
    """Things the service cannot do that do not stop the pod (startupProbe ...): Warning events."""


def translate_pod(pod: Pod, resources: PodResources, settings: ECISettings, node_name: str) -> TranslateResult:
    """Translate a pod into a CreateRequest, or raise InvalidInput / NotSupported / TransientError.

    TransientError (reason Mandatory*NotFound / FailedMount) means a referenced ConfigMap or Secret is
    missing: the kubelet keeps retrying those, and so should the controller.
    """
    ctx = TranslateContext(pod, resources, settings, node_name)
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
    volumes = pod_volumes(ctx)
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
        credentials=registry_credentials(ctx),
        hostname=_hostname(ctx),
        sysctls=_sysctls(ctx),
        tags=tags,
        spot_strategy=ann.spot_strategy,
        spot_price_limit=ann.spot_price_limit,
        spot_duration=ann.spot_duration,
        spot_fallback=ann.spot_fallback,
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


def _opt_int(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    return None if v is None else int(v)


def _restart_policy(spec: Mapping[str, Any]) -> str:
    policy = spec.get("restartPolicy") or "Always"
    if policy not in ("Always", "OnFailure", "Never"):
        raise InvalidInput(f"restartPolicy {policy!r} must be Always, OnFailure or Never")
    return str(policy)


def _hostname(ctx: TranslateContext) -> str:
    # The kubelet uses spec.hostname, else the pod name, truncated to 63 characters.
    # A subdomain only changes the FQDN in /etc/hosts, which ECI does not let us write.
    hostname = str(ctx.spec.get("hostname") or ctx.meta.get("name") or "pod")
    return hostname[:63].rstrip("-.")


def _sysctls(ctx: TranslateContext) -> list[tuple[str, str]]:
    sc = ctx.spec.get("securityContext") or {}
    return [(str(s["name"]), str(s.get("value", ""))) for s in sc.get("sysctls") or []]


def _dns(ctx: TranslateContext, req: CreateRequest) -> None:
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


def _container(ctx: TranslateContext, c: Mapping[str, Any], volume_names: set[str], *, init: bool) -> ContainerSpec:
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
    env = container_env(ctx, c, what)
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
        command=[expand(str(s), values) for s in c.get("command") or []],
        args=[expand(str(s), values) for s in c.get("args") or []],
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
