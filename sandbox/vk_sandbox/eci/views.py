"""Response shapes: container groups as DescribeContainerGroups shows them, and Kubernetes-shaped PodStatus."""

from __future__ import annotations

from typing import Any

from vk_sandbox.eci.model import ContainerSpec, ContainerStatus, Event, Group, Probe, State
from vk_sandbox.eci.wire import rfc3339


def state_view(state: State | None) -> dict[str, Any]:
    if state is None:
        return {}
    return {
        "State": state.state,
        "Reason": state.reason,
        "Message": state.message,
        "DetailStatus": state.detail_status,
        "ExitCode": state.exit_code if state.exit_code is not None else 0,
        "Signal": state.signal or 0,
        "StartTime": rfc3339(state.start_time),
        "FinishTime": rfc3339(state.finish_time),
    }


def _probe_view(probe: Probe | None) -> dict[str, Any]:
    if probe is None:
        return {}
    out: dict[str, Any] = {
        "InitialDelaySeconds": int(probe.initial_delay),
        "PeriodSeconds": int(probe.period),
        "TimeoutSeconds": int(probe.timeout),
        "SuccessThreshold": probe.success_threshold,
        "FailureThreshold": probe.failure_threshold,
    }
    if probe.kind == "exec":
        out["Execs"] = list(probe.command)
    elif probe.kind == "httpGet":
        out["HttpGet"] = {"Path": probe.path, "Port": probe.port, "Scheme": probe.scheme}
    else:
        out["TcpSocket"] = {"Port": probe.port}
    return out


def container_view(spec: ContainerSpec, cs: ContainerStatus) -> dict[str, Any]:
    return {
        "Name": spec.name,
        "Image": spec.image,
        "Cpu": spec.cpu,
        "Memory": spec.memory,
        "WorkingDir": spec.working_dir,
        "ImagePullPolicy": spec.image_pull_policy,
        "Commands": list(spec.command),
        "Args": list(spec.args),
        "EnvironmentVars": [{"Key": k, "Value": v} for k, v in spec.env],
        "Ports": [{"Port": p, "Protocol": proto} for proto, p in spec.ports],
        "VolumeMounts": [
            {"Name": m.name, "MountPath": m.mount_path, "SubPath": m.sub_path, "ReadOnly": m.read_only}
            for m in spec.mounts
        ],
        "ReadinessProbe": _probe_view(spec.readiness),
        "LivenessProbe": _probe_view(spec.liveness),
        "Stdin": spec.stdin,
        "Tty": spec.tty,
        "Ready": cs.ready,
        "RestartCount": cs.restart_count,
        "CurrentState": state_view(cs.current),
        "PreviousState": state_view(cs.previous),
    }


# An init container as DescribeContainerGroups documents it: its command is "Command", and it has no
# probes, Stdin or Tty.
_INIT_ONLY_FIELDS = ("ReadinessProbe", "LivenessProbe", "Stdin", "Tty")


def init_container_view(spec: ContainerSpec, cs: ContainerStatus) -> dict[str, Any]:
    out = container_view(spec, cs)
    out["Command"] = out.pop("Commands")
    for key in _INIT_ONLY_FIELDS:
        del out[key]
    return out


def event_view(ev: Event) -> dict[str, Any]:
    return {
        "Count": ev.count,
        "Type": ev.type,
        "Name": ev.name,
        "Reason": ev.reason,
        "Message": ev.message,
        "FirstTimestamp": rfc3339(ev.first),
        "LastTimestamp": rfc3339(ev.last),
    }


def group_view(g: Group) -> dict[str, Any]:
    volumes = []
    for v in g.volumes:
        vol: dict[str, Any] = {"Name": v.name, "Type": v.type}
        if v.type == "ConfigFileVolume":
            vol["ConfigFileVolumeConfigFileToPaths"] = [{"Path": f.path, "Content": f.content} for f in v.config_files]
        elif v.type == "EmptyDirVolume":
            vol["EmptyDirVolumeMedium"] = v.medium
        elif v.type == "NFSVolume":
            vol["NFSVolumeServer"], vol["NFSVolumePath"] = v.nfs_server, v.nfs_path
        volumes.append(vol)
    return {
        "ContainerGroupId": g.id,
        "ContainerGroupName": g.name,
        "RegionId": g.region,
        "ZoneId": g.zone,
        "VSwitchId": g.vswitch,
        "SecurityGroupId": g.security_group,
        "Status": g.status,
        "Cpu": g.cpu,
        "Memory": g.memory,
        "InstanceType": g.instance_type,
        "IntranetIp": g.intranet_ip if g.status not in ("Scheduling", "ScheduleFailed") else "",
        "InternetIp": "",
        "Ipv6Address": "",
        "RestartPolicy": g.restart_policy,
        "SpotStrategy": g.spot_strategy,
        "SpotPriceLimit": g.spot_price_limit or 0.0,
        "CreationTime": rfc3339(g.created),
        "SucceededTime": rfc3339(g.succeeded_time),
        "FailedTime": rfc3339(g.failed_time),
        "ExpiredTime": rfc3339(g.expired_time),
        "Tags": [{"Key": k, "Value": v} for k, v in g.tags],
        "Events": [event_view(e) for e in g.events],
        "Containers": [container_view(s, c) for s, c in zip(g.containers, g.statuses, strict=False)],
        "InitContainers": [init_container_view(s, c) for s, c in zip(g.init_containers, g.init_statuses, strict=False)],
        "Volumes": volumes,
        "DnsConfig": {
            "NameServers": g.dns.get("NameServers", []),
            "Searches": g.dns.get("Searches", []),
            "Options": [],
        },
    }


def _k8s_state(state: State | None) -> dict[str, Any]:
    if state is None:
        return {}
    if state.state == "Running":
        return {"Running": {"StartedAt": rfc3339(state.start_time)}}
    if state.state == "Waiting":
        return {"Waiting": {"Reason": state.reason, "Message": state.message}}
    return {
        "Terminated": {
            "ExitCode": state.exit_code or 0,
            "Signal": state.signal or 0,
            "Reason": state.reason,
            "Message": state.message,
            "StartedAt": rfc3339(state.start_time),
            "FinishedAt": rfc3339(state.finish_time),
        }
    }


def _k8s_container(g: Group, cs: ContainerStatus) -> dict[str, Any]:
    return {
        "Name": cs.name,
        "Image": cs.image,
        "ImageID": f"sim://{cs.image}",
        "Ready": cs.ready,
        "Started": cs.current.state == "Running",
        "RestartCount": cs.restart_count,
        "State": _k8s_state(cs.current),
        "LastState": _k8s_state(cs.previous),
    }


PHASES = {
    "Scheduling": "Pending",
    "Pending": "Pending",
    "Running": "Running",
    "Restarting": "Running",
    "Updating": "Running",
    "Succeeded": "Succeeded",
    "Failed": "Failed",
    "ScheduleFailed": "Failed",
    "Expired": "Failed",
}


def pod_status_view(g: Group) -> dict[str, Any]:
    phase = PHASES.get(g.status) or ("Running" if g.started else "Pending")
    scheduled = g.status not in ("Scheduling", "ScheduleFailed")
    initialized = all(cs.current.state == "Terminated" and cs.current.exit_code == 0 for cs in g.init_statuses)
    ready = bool(g.statuses) and all(cs.ready for cs in g.statuses) and g.status == "Running"
    stamp = rfc3339(g.changed)

    # The documented casing: type, status and lastTransitionTime lower-case, Reason and Message not.
    def cond(kind: str, ok: bool) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "lastTransitionTime": stamp,
            "Reason": "",
            "Message": "",
        }

    tags = dict(g.tags)
    return {
        "ContainerGroupId": g.id,
        "Name": tags.get("k8s.aliyun.com/pod-name", g.name),
        "Namespace": tags.get("k8s.aliyun.com/pod-namespace", ""),
        "uuid": tags.get("k8s.aliyun.com/pod-uid", g.id),
        "Annotations": "",
        "Status": g.status,
        "PodStatus": {
            "Phase": phase,
            "Conditions": [
                cond("PodScheduled", scheduled),
                cond("Initialized", scheduled and initialized),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            "ContainerStatuses": [_k8s_container(g, cs) for cs in g.statuses],
            "HostIp": g.intranet_ip if scheduled else "",
            "PodIp": g.intranet_ip if scheduled else "",
            "PodIps": [{"Ip": g.intranet_ip}] if scheduled else [],
            "QosClass": "Guaranteed",
            "StartTime": rfc3339(g.started),
        },
    }


def metric_record(g: Group, sample: dict[str, Any]) -> dict[str, Any]:
    total_nano = total_ns = total_mem = 0
    containers = []
    for name, nano, usage_ns, mem in sample["containers"]:
        total_nano += nano
        total_ns += usage_ns
        total_mem += mem
        containers.append(
            {
                "Name": name,
                "CPU": {
                    "Limit": int(g.cpu * 1000),
                    "Load": 0,
                    "UsageCoreNanoSeconds": usage_ns,
                    "UsageNanoCores": nano,
                },
                "Memory": {
                    "AvailableBytes": max(0, int(g.memory * (1 << 30)) - mem),
                    "Cache": 0,
                    "Rss": mem,
                    "UsageBytes": mem,
                    "WorkingSet": mem,
                },
            }
        )
    return {
        "Timestamp": rfc3339(sample["timestamp"]),
        "CPU": {
            "Limit": int(g.cpu * 1000),
            "Load": 0,
            "UsageCoreNanoSeconds": total_ns,
            "UsageNanoCores": total_nano,
        },
        "Memory": {
            "AvailableBytes": max(0, int(g.memory * (1 << 30)) - total_mem),
            "Cache": 0,
            "Rss": total_mem,
            "UsageBytes": total_mem,
            "WorkingSet": total_mem,
        },
        "Network": {
            "Interfaces": [
                {
                    "Name": "eth0",
                    "RxBytes": 0,
                    "RxPackets": 0,
                    "RxErrors": 0,
                    "RxDrops": 0,
                    "TxBytes": 0,
                    "TxPackets": 0,
                    "TxErrors": 0,
                    "TxDrops": 0,
                }
            ]
        },
        "Containers": containers,
        "Filesystem": [],
        "Disk": [],
    }
