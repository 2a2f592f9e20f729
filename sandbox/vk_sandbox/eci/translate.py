"""Turn CreateContainerGroup / UpdateContainerGroup parameters into specs, validating as the service does."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from vk_sandbox.eci.model import ConfigFile, ContainerSpec, Mount, Probe, Volume
from vk_sandbox.eci.wire import ApiError, as_list, invalid, parse_bool

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])$")
CONTAINER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
MAX_CONTAINERS = 20
MAX_TAGS = 20
MAX_VOLUMES = 20  # "Limits": volumes per instance
# "Mount a ConfigFile volume": one file at most 32 KB, all files of the volume at most 60 KB (read as KiB).
MAX_CONFIG_FILE_BYTES = 32 * 1024
MAX_CONFIG_VOLUME_BYTES = 60 * 1024
RESTART_POLICIES = ("Always", "OnFailure", "Never")
SPOT_STRATEGIES = ("NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo")
VOLUME_TYPES = ("EmptyDirVolume", "ConfigFileVolume", "NFSVolume", "DiskVolume", "FlexVolume", "HostPathVolume")


def check_group_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ApiError(
            "InvalidParameter.ContainerGroupName",
            "ContainerGroupName must be 2-128 characters of lowercase letters, digits and '-', "
            "and must not start or end with '-'.",
        )


def _unset(value: Any) -> bool:
    # SDK 1.3.3 sends str(None) = "None" for an unset ReadOnly (VolumeMounts) or Protocol (Ports).
    return value in (None, "", "None")


def _num(value: Any, name: str) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise invalid(name, f"{value!r} is not a number") from None
    if number < 0:
        raise invalid(name, "must not be negative")
    return number


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise invalid(name, f"{value!r} is not an integer") from None


def _strs(value: Any, name: str) -> list[str]:
    return [str(v) for v in as_list(value, name)]


def _probe(raw: Any, where: str) -> Probe | None:
    if not isinstance(raw, dict) or not raw:
        return None
    exec_cmd = _strs((raw.get("Exec") or {}).get("Command") if isinstance(raw.get("Exec"), dict) else None, where)
    http = raw.get("HttpGet") if isinstance(raw.get("HttpGet"), dict) else None
    tcp = raw.get("TcpSocket") if isinstance(raw.get("TcpSocket"), dict) else None
    kinds = [k for k, v in (("exec", exec_cmd), ("httpGet", http), ("tcpSocket", tcp)) if v]
    if len(kinds) != 1:
        raise invalid(where, "a probe needs exactly one of Exec.Command, HttpGet or TcpSocket")
    probe = Probe(kind=kinds[0])
    probe.command = exec_cmd
    if http:
        probe.port = _int(http.get("Port", 0), f"{where}.HttpGet.Port")
        probe.path = str(http.get("Path") or "/")
        probe.scheme = str(http.get("Scheme") or "HTTP").upper()
    if tcp:
        probe.port = _int(tcp.get("Port", 0), f"{where}.TcpSocket.Port")
    if probe.kind != "exec" and not 0 < probe.port < 65536:
        raise invalid(where, "the probe port must be between 1 and 65535")
    for field, key, lo in (
        ("initial_delay", "InitialDelaySeconds", 0),
        ("period", "PeriodSeconds", 1),
        ("timeout", "TimeoutSeconds", 1),
        ("success_threshold", "SuccessThreshold", 1),
        ("failure_threshold", "FailureThreshold", 1),
    ):
        if raw.get(key) not in (None, ""):
            value = _int(raw[key], f"{where}.{key}")
            if value < lo:
                raise invalid(f"{where}.{key}", f"must be at least {lo}")
            setattr(probe, field, value)
    return probe


def parse_containers(raw: Any, prefix: str, *, init: bool) -> list[ContainerSpec]:
    out: list[ContainerSpec] = []
    for i, c in enumerate(as_list(raw, prefix), start=1):
        where = f"{prefix}.{i}"
        if not isinstance(c, dict):
            raise invalid(where, "expected a structure")
        name = str(c.get("Name", ""))
        image = str(c.get("Image", ""))
        if not name:
            raise ApiError("MissingParameter", f'The input parameter "{where}.Name" is not supplied.')
        if not image:
            raise ApiError("MissingParameter", f'The input parameter "{where}.Image" is not supplied.')
        if not CONTAINER_NAME_RE.match(name):
            raise invalid(f"{where}.Name", "lowercase letters, digits and '-', at most 64 characters")
        env = []
        for j, e in enumerate(as_list(c.get("EnvironmentVar"), f"{where}.EnvironmentVar"), start=1):
            if not isinstance(e, dict) or not e.get("Key"):
                raise invalid(f"{where}.EnvironmentVar.{j}.Key", "every variable needs a Key")
            field_ref = e.get("FieldRef") if isinstance(e.get("FieldRef"), dict) else None
            if field_ref and field_ref.get("FieldPath"):
                # ECI resolves only status.podIP; the simulator's pod IP is 127.0.0.1.
                if field_ref["FieldPath"] != "status.podIP":
                    raise invalid(f"{where}.EnvironmentVar.{j}.FieldRef.FieldPath", "only status.podIP is supported")
                env.append((str(e["Key"]), "127.0.0.1"))
                continue
            env.append((str(e["Key"]), str(e.get("Value", ""))))
        ports = []
        for j, p in enumerate(as_list(c.get("Port"), f"{where}.Port"), start=1):
            if not isinstance(p, dict):
                raise invalid(f"{where}.Port.{j}", "expected Port and Protocol")
            port = _int(p.get("Port", 0), f"{where}.Port.{j}.Port")
            proto = "TCP" if _unset(p.get("Protocol")) else str(p["Protocol"]).upper()
            if not 0 < port < 65536 or proto not in ("TCP", "UDP"):
                raise invalid(f"{where}.Port.{j}", "port 1-65535 and protocol TCP or UDP")
            ports.append((proto, port))
        mounts = []
        for j, m in enumerate(as_list(c.get("VolumeMount"), f"{where}.VolumeMount"), start=1):
            if not isinstance(m, dict) or not m.get("Name") or not str(m.get("MountPath", "")).startswith("/"):
                raise invalid(f"{where}.VolumeMount.{j}", "needs a Name and an absolute MountPath")
            mounts.append(
                Mount(
                    name=str(m["Name"]),
                    mount_path=str(m["MountPath"]),
                    sub_path=str(m.get("SubPath", "")),
                    read_only=not _unset(m.get("ReadOnly"))
                    and parse_bool(f"{where}.VolumeMount.{j}.ReadOnly", str(m["ReadOnly"])),
                )
            )
        spec = ContainerSpec(
            name=name,
            image=image,
            command=_strs(c.get("Command"), f"{where}.Command"),
            args=_strs(c.get("Arg"), f"{where}.Arg"),
            env=env,
            working_dir=str(c.get("WorkingDir", "")),
            ports=ports,
            mounts=mounts,
            cpu=_num(c.get("Cpu") or 0, f"{where}.Cpu"),
            memory=_num(c.get("Memory") or 0, f"{where}.Memory"),
            stdin=parse_bool(f"{where}.Stdin", str(c.get("Stdin") or "false")),
            tty=parse_bool(f"{where}.Tty", str(c.get("Tty") or "false")),
            image_pull_policy=str(c.get("ImagePullPolicy") or "IfNotPresent"),
            post_start=_strs(c.get("LifecyclePostStartHandlerExec"), f"{where}.LifecyclePostStartHandlerExec"),
            pre_stop=_strs(c.get("LifecyclePreStopHandlerExec"), f"{where}.LifecyclePreStopHandlerExec"),
        )
        if spec.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise invalid(f"{where}.ImagePullPolicy", "Always, IfNotPresent or Never")
        if not init:
            spec.readiness = _probe(c.get("ReadinessProbe"), f"{where}.ReadinessProbe")
            spec.liveness = _probe(c.get("LivenessProbe"), f"{where}.LivenessProbe")
        out.append(spec)
    return out


def config_too_large(name: str, what: str, size: int) -> ApiError:
    """ECI documents the ConfigFile limits but not the error that enforces them: this code is assumed."""
    limit = MAX_CONFIG_FILE_BYTES if what == "a file" else MAX_CONFIG_VOLUME_BYTES
    return ApiError(
        "InvalidParameter.ValueExceeded",
        f"The parameter {name} is too large: {what} of a ConfigFile volume holds at most {limit} bytes, got {size}.",
    )


def parse_volumes(raw: Any) -> list[Volume]:
    out: list[Volume] = []
    for i, v in enumerate(as_list(raw, "Volume"), start=1):
        where = f"Volume.{i}"
        if not isinstance(v, dict) or not v.get("Name"):
            raise ApiError("MissingParameter", f'The input parameter "{where}.Name" is not supplied.')
        vtype = str(v.get("Type", ""))
        if vtype not in VOLUME_TYPES:
            raise invalid(f"{where}.Type", f"{vtype!r} is not one of {', '.join(VOLUME_TYPES)}")
        vol = Volume(name=str(v["Name"]), type=vtype)
        if vtype == "ConfigFileVolume":
            cfg = v.get("ConfigFileVolume") if isinstance(v.get("ConfigFileVolume"), dict) else {}
            assert isinstance(cfg, dict)
            for j, f in enumerate(as_list(cfg.get("ConfigFileToPath"), f"{where}.ConfigFileToPath"), start=1):
                if not isinstance(f, dict) or not f.get("Path"):
                    raise invalid(f"{where}.ConfigFileVolume.ConfigFileToPath.{j}.Path", "a relative path is needed")
                path = str(f["Path"])
                if path.startswith("/") or ".." in path.split("/"):
                    raise invalid(f"{where}.ConfigFileVolume.ConfigFileToPath.{j}.Path", "must be relative")
                content = str(f.get("Content", ""))
                try:
                    size = len(base64.b64decode(content, validate=True))
                except (binascii.Error, ValueError):
                    raise invalid(f"{where}.ConfigFileVolume.ConfigFileToPath.{j}.Content", "not base64") from None
                if size > MAX_CONFIG_FILE_BYTES:
                    raise config_too_large(f"{where}.ConfigFileVolume.ConfigFileToPath.{j}.Content", "a file", size)
                mode = None if _unset(f.get("Mode")) else _int(f["Mode"], f"{where}.ConfigFileToPath.{j}.Mode")
                vol.config_files.append(ConfigFile(path=path, content=content, mode=mode))
            total = sum(len(base64.b64decode(cf.content)) for cf in vol.config_files)
            if total > MAX_CONFIG_VOLUME_BYTES:
                raise config_too_large(f"{where}.ConfigFileVolume", "all files of a volume", total)
            # SDK 1.3.3 sends DefaultModel; the newer SDK DefaultMode. Accept both.
            mode = cfg.get("DefaultMode") or cfg.get("DefaultModel")
            if mode not in (None, ""):
                vol.default_mode = _int(mode, f"{where}.ConfigFileVolume.DefaultMode")
        elif vtype == "EmptyDirVolume":
            ed = v.get("EmptyDirVolume") if isinstance(v.get("EmptyDirVolume"), dict) else {}
            assert isinstance(ed, dict)
            vol.medium = str(ed.get("Medium", ""))
            if vol.medium not in ("", "Memory", "LocalRaid0"):
                raise invalid(f"{where}.EmptyDirVolume.Medium", "empty, Memory or LocalRaid0")
        elif vtype == "HostPathVolume":
            hp = v.get("HostPathVolume") if isinstance(v.get("HostPathVolume"), dict) else {}
            assert isinstance(hp, dict)
            vol.host_path = str(hp.get("Path", ""))
        elif vtype == "NFSVolume":
            nfs = v.get("NFSVolume") if isinstance(v.get("NFSVolume"), dict) else {}
            assert isinstance(nfs, dict)
            vol.nfs_server = str(nfs.get("Server", ""))
            vol.nfs_path = str(nfs.get("Path", ""))
            if not vol.nfs_server or not vol.nfs_path:
                raise invalid(f"{where}.NFSVolume", "Server and Path are required")
        out.append(vol)
    return out


def check_group(containers: list[ContainerSpec], init_containers: list[ContainerSpec], volumes: list[Volume]) -> None:
    """Cross-checks: container count, unique names, mounts naming declared volumes."""
    if not containers:
        raise ApiError("MissingParameter", 'The input parameter "Container.1.Name" is not supplied.')
    if len(containers) > MAX_CONTAINERS or len(init_containers) > MAX_CONTAINERS:
        raise ApiError(
            "InvalidParameter.ValueExceeded", f"A container group holds at most {MAX_CONTAINERS} containers."
        )
    names = [c.name for c in [*containers, *init_containers]]
    if len(set(names)) != len(names):
        raise invalid("Container.N.Name", "container names must be unique in a group")
    if len(volumes) > MAX_VOLUMES:
        raise ApiError("InvalidParameter.ValueExceeded", f"A container group holds at most {MAX_VOLUMES} volumes.")
    vol_names = {v.name for v in volumes}
    if len(vol_names) != len(volumes):
        raise invalid("Volume.N.Name", "volume names must be unique")
    for c in [*containers, *init_containers]:
        for m in c.mounts:
            if m.name not in vol_names:
                raise invalid("VolumeMount.Name", f"container {c.name} mounts unknown volume {m.name}")


def check_restart_policy(value: str) -> str:
    if value not in RESTART_POLICIES:
        raise invalid("RestartPolicy", "Always, OnFailure or Never")
    return value


def check_spot(value: str) -> str:
    if value not in SPOT_STRATEGIES:
        raise invalid("SpotStrategy", "NoSpot, SpotWithPriceLimit or SpotAsPriceGo")
    return value


def check_tags(tags: list[tuple[str, str]]) -> None:
    if len(tags) > MAX_TAGS:
        raise ApiError("InvalidParameter.ValueExceeded", f"At most {MAX_TAGS} tags are allowed.")
    keys = [k for k, _ in tags]
    if len(set(keys)) != len(keys):
        raise invalid("Tag.N.Key", "tag keys must be unique")
    for k, _ in tags:
        if len(k) > 128 or k.startswith(("aliyun", "acs:")):
            raise invalid("Tag.N.Key", "at most 128 characters, not starting with aliyun or acs:")
