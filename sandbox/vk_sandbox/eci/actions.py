"""The ECI actions: parameter handling, validation and responses. The state machine is in engine.py."""

from __future__ import annotations

import bisect
import hashlib
import json
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vk_sandbox.eci import translate
from vk_sandbox.eci.engine import Engine
from vk_sandbox.eci.model import TERMINAL, ContainerSpec, Group
from vk_sandbox.eci.specs import round_spec, spec_key
from vk_sandbox.eci.views import event_view, group_view, metric_record, pod_status_view
from vk_sandbox.eci.wire import ApiError, Params, invalid, missing, nest, not_found, parse_time, rfc3339nano

Handler = Callable[[Params], Awaitable[dict[str, Any]]]
_SIGNING_KEYS = {
    "Signature",
    "SignatureNonce",
    "Timestamp",
    "AccessKeyId",
    "SignatureType",
    "SignatureMethod",
    "SecurityToken",
    "SignatureVersion",
}
EXEC_TOKEN_TTL = 60.0
MAX_LOG_BYTES = 1 << 20


@dataclass
class ExecTicket:
    group_id: str
    container: str
    command: list[str]
    tty: bool
    stdin: bool
    expires: float


class Actions:
    def __init__(self, engine: Engine, region: str, endpoint: Callable[[], str]) -> None:
        self.engine = engine
        self.region = region
        self.endpoint = endpoint
        self.exec_tickets: dict[str, ExecTicket] = {}
        self.metrics: dict[str, list[dict[str, Any]]] = {}
        self.handlers: dict[str, Handler] = {
            "CreateContainerGroup": self.create,
            "DescribeContainerGroups": self.describe,
            "DescribeContainerGroupStatus": self.describe_status,
            "DeleteContainerGroup": self.delete,
            "RestartContainerGroup": self.restart,
            "UpdateContainerGroup": self.update,
            "DescribeContainerLog": self.logs,
            "ExecContainerCommand": self.exec,
            "DescribeContainerGroupMetric": self.metric,
            "DescribeMultiContainerGroupMetric": self.multi_metric,
            "DescribeContainerGroupEvents": self.events,
            "ListUsage": self.usage,
            "DescribeRegions": self.regions,
        }

    # ---- helpers ------------------------------------------------------------------------------

    @property
    def zones(self) -> list[str]:
        return [f"{self.region}-{c}" for c in "hijk"]

    def zone_for(self, vswitch: str) -> str:
        return self.zones[zlib.crc32(vswitch.encode()) % len(self.zones)] if vswitch else self.zones[0]

    def _group(self, p: Params) -> Group:
        gid = p.get_str("ContainerGroupId", required=True)
        group = self.engine.groups.get(gid)
        if group is None:
            raise not_found(gid)
        return group

    def _check_region(self, p: Params) -> None:
        region = p.get_str("RegionId", required=True)
        if region != self.region:
            raise ApiError("InvalidRegionId", f"The specified region {region} is not served here ({self.region}).")

    @staticmethod
    def _page(items: list[Group], p: Params, *, default_limit: int, max_limit: int) -> tuple[list[Group], str]:
        limit = p.get_int("Limit", default=default_limit, lo=1, hi=max_limit) or default_limit
        token = p.get_str("NextToken")
        start = 0
        if token:
            try:
                after = int(token)
            except ValueError:
                raise invalid("NextToken", "not a token this service returned") from None
            start = bisect.bisect_right(items, after, key=lambda g: g.seq)  # items are in creation (seq) order
        page = items[start : start + limit]
        more = start + limit < len(items)
        return page, str(page[-1].seq) if more and page else ""

    def _filter(self, p: Params) -> list[Group]:
        ids = p.json_list("ContainerGroupIds", max_items=20)
        tags = p.tags()
        name = p.get_str("ContainerGroupName")
        status = p.get_str("Status")
        zone = p.get_str("ZoneId")
        vswitch = p.get_str("VSwitchId")
        if ids is not None:
            groups = [self.engine.groups[i] for i in dict.fromkeys(ids) if i in self.engine.groups]
            groups.sort(key=lambda g: g.seq)
        else:
            groups = list(self.engine.groups.values())  # insertion order is creation order
        if tags:
            index = self.engine.tag_index
            matching = set.intersection(*(index.get(t, set()) for t in tags))
            groups = [g for g in groups if g.id in matching]
        if name:
            groups = [g for g in groups if g.name == name]
        if status:
            groups = [g for g in groups if g.status == status]
        if zone:
            groups = [g for g in groups if g.zone == zone]
        if vswitch:
            groups = [g for g in groups if g.vswitch == vswitch]
        return groups

    # ---- create / update ----------------------------------------------------------------------

    def _size(self, p: Params, containers: list[ContainerSpec], init: list[ContainerSpec]) -> tuple[float, float]:
        cpu = p.get_float("Cpu", default=0.0) or 0.0
        mem = p.get_float("Memory", default=0.0) or 0.0
        if not cpu and not mem:
            cpu = max(sum(c.cpu for c in containers), max((c.cpu for c in init), default=0))
            mem = max(sum(c.memory for c in containers), max((c.memory for c in init), default=0))
        return round_spec(cpu, mem)

    async def create(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        token = p.get_str("ClientToken")
        if len(token) > 64 or not token.isascii():
            raise invalid("ClientToken", "at most 64 ASCII characters")
        digest = hashlib.sha256(
            json.dumps(sorted((k, v) for k, v in p.raw.items() if k not in _SIGNING_KEYS)).encode()
        ).hexdigest()
        if token and token in self.engine.by_token:
            existing = self.engine.groups[self.engine.by_token[token]]
            if existing.token_digest != digest:
                raise ApiError(
                    "IdempotentParameterMismatch", "The ClientToken was used before with different parameters."
                )
            return {"ContainerGroupId": existing.id}
        name = p.get_str("ContainerGroupName", required=True)
        translate.check_group_name(name)
        tree = nest(p.raw)
        containers = translate.parse_containers(tree.get("Container"), "Container", init=False)
        init = translate.parse_containers(tree.get("InitContainer"), "InitContainer", init=True)
        volumes = translate.parse_volumes(tree.get("Volume"))
        translate.check_group(containers, init, volumes)
        tags = p.tags()
        translate.check_tags(tags)
        cpu, mem = self._size(p, containers, init)
        restart_policy = translate.check_restart_policy(p.get_str("RestartPolicy", default="Always"))
        spot = translate.check_spot(p.get_str("SpotStrategy", default="NoSpot"))
        price = p.get_float("SpotPriceLimit")
        if spot == "SpotWithPriceLimit" and not price:
            raise missing("SpotPriceLimit")
        grace = p.get_int("TerminationGracePeriodSeconds", default=30, lo=0, hi=3600)
        deadline = p.get_int("ActiveDeadlineSeconds", default=None, lo=1)
        strategy = p.get_str("ScheduleStrategy", default="VSwitchOrdered")
        if strategy not in ("VSwitchOrdered", "VSwitchRandom"):
            raise invalid("ScheduleStrategy", "VSwitchOrdered or VSwitchRandom")
        vswitch = p.get_str("VSwitchId")
        if len([v for v in vswitch.split(",") if v]) > 10:
            raise ApiError("InvalidParameter.ValueExceeded", "At most 10 vSwitches may be given.")
        zone = p.get_str("ZoneId")
        if zone and zone not in self.zones:
            raise invalid("ZoneId", f"zone {zone} is not in region {self.region}")
        self.engine.faults.check_network([v for v in vswitch.split(",") if v], p.get_str("SecurityGroupId"))
        if p.get_bool("DryRun"):
            self._dry_run_stock(vswitch, zone, spec_key(cpu, mem), spot=spot != "NoSpot")
            raise ApiError("DryRunOperation", "Request validation has been passed with DryRun flag set.")
        dns: dict[str, list[str]] = {}
        dns_tree = tree.get("DnsConfig")
        if isinstance(dns_tree, dict):
            dns["NameServers"] = [str(x) for x in dns_tree.get("NameServer") or []]
            dns["Searches"] = [str(x) for x in dns_tree.get("Search") or []]
        group = Group(
            id="eci-" + secrets.token_hex(10),
            seq=0,
            name=name,
            region=self.region,
            zone=zone,
            vswitch=vswitch,
            security_group=p.get_str("SecurityGroupId"),
            cpu=cpu,
            memory=mem,
            instance_type=p.get_str("InstanceType"),
            host_name=p.get_str("HostName"),
            restart_policy=restart_policy,
            spot_strategy=spot,
            spot_price_limit=price,
            tags=tags,
            containers=containers,
            init_containers=init,
            volumes=volumes,
            grace=float(grace if grace is not None else 30),
            active_deadline=float(deadline) if deadline else None,
            client_token=token,
            token_digest=digest,
            dns=dns,
        )
        self.engine.create(group, self.zone_for, random_order=strategy == "VSwitchRandom")
        return {"ContainerGroupId": group.id}

    def _dry_run_stock(self, vswitch: str, zone: str, spec: str, *, spot: bool) -> None:
        """A DryRun create checks stock: refused when no listed vSwitch (or zone) has any for the size."""
        no_stock = self.engine.faults.no_stock
        reasons = [no_stock(zone or self.zone_for(v), v, spec, spot=spot) for v in vswitch.split(",") if v]
        reasons = reasons or [no_stock(zone or self.zone_for(""), "", spec, spot=spot)]
        if all(reasons):
            raise ApiError("NoStock", f"The resource is out of stock in the specified zone ({reasons[-1]}).", 403)

    async def update(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        group = self._group(p)
        kind = p.get_str("UpdateType", default="RenewUpdate")
        if kind not in ("RenewUpdate", "IncrementalUpdate"):
            raise invalid("UpdateType", "RenewUpdate or IncrementalUpdate")
        if group.status in ("Scheduling", "ScheduleFailed", "Terminating", "Restarting", "Updating", "Expired"):
            raise ApiError("IncorrectStatus", f"The container group is {group.status} and cannot be updated.", 403)
        tree = nest(p.raw)
        incremental = kind == "IncrementalUpdate"
        new_containers = translate.parse_containers(tree.get("Container"), "Container", init=False)
        new_init = translate.parse_containers(tree.get("InitContainer"), "InitContainer", init=True)
        new_volumes = translate.parse_volumes(tree.get("Volume"))
        containers = _merge_containers(group.containers, new_containers, tree.get("Container"), incremental)
        init = _merge_containers(group.init_containers, new_init, tree.get("InitContainer"), incremental)
        volumes = group.volumes
        if new_volumes:
            if incremental:
                by_name = {v.name: v for v in group.volumes}
                by_name.update({v.name: v for v in new_volumes})
                volumes = list(by_name.values())
            else:
                volumes = new_volumes
        translate.check_group(containers, init, volumes)
        tags = group.tags
        sent_tags = p.tags()
        if sent_tags:
            if incremental:
                merged = dict(group.tags)
                merged.update(dict(sent_tags))
                tags = list(merged.items())
            else:
                tags = sent_tags
        translate.check_tags(tags)
        restart_policy = group.restart_policy
        if p.has("RestartPolicy"):
            restart_policy = translate.check_restart_policy(p.get_str("RestartPolicy"))
        cpu, mem = group.cpu, group.memory
        if p.has("Cpu") or p.has("Memory"):
            cpu, mem = round_spec(p.get_float("Cpu", default=group.cpu) or 0, p.get_float("Memory", default=0) or 0)

        def apply(g: Group) -> None:
            g.containers, g.init_containers, g.volumes = containers, init, volumes
            g.tags, g.restart_policy, g.cpu, g.memory = tags, restart_policy, cpu, mem

        self.engine.update(group, apply)
        return {}

    # ---- describe -----------------------------------------------------------------------------

    async def describe(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        groups = self._filter(p)
        page, token = self._page(groups, p, default_limit=20, max_limit=20)
        return {"TotalCount": len(groups), "NextToken": token, "ContainerGroups": [group_view(g) for g in page]}

    async def describe_status(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        groups = self._filter(p)
        since = p.get_int("SinceSecond", default=None, lo=1)
        if since is not None:
            cutoff = time.time() - since
            groups = [g for g in groups if g.changed >= cutoff]
        page, token = self._page(groups, p, default_limit=200, max_limit=200)
        return {"NextToken": token, "TotalCount": len(groups), "Data": [pod_status_view(g) for g in page]}

    async def events(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        groups = self._filter(p)
        since = p.get_int("SinceSecond", default=None, lo=1)
        cutoff = time.time() - since if since is not None else None
        if cutoff is not None:
            groups = [g for g in groups if any(e.last >= cutoff for e in g.events)]
        # ECI documents a default of 200 groups per answer, and no maximum (200 assumed).
        page, token = self._page(groups, p, default_limit=200, max_limit=200)
        data = [
            {
                "ContainerGroupId": g.id,
                "Events": [event_view(e) for e in g.events if cutoff is None or e.last >= cutoff],
            }
            for g in page
        ]
        return {"NextToken": token, "TotalCount": len(groups), "Data": data}

    # ---- operations ---------------------------------------------------------------------------

    async def delete(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        self.engine.delete(self._group(p))
        return {}

    async def restart(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        group = self._group(p)
        if group.status != "Running":
            raise ApiError("IncorrectStatus", f"The container group is {group.status}; only Running can restart.", 403)
        self.engine.restart(group)
        return {}

    # ---- logs ---------------------------------------------------------------------------------

    async def logs(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        group = self._group(p)
        name = p.get_str("ContainerName", required=True)
        if group.status_of(name) is None:
            raise invalid("ContainerName", f"the group has no container {name}")
        tail = p.get_int("Tail", default=500, lo=0, hi=2000)
        since = p.get_int("SinceSeconds", default=None, lo=1)
        limit = p.get_int("LimitBytes", default=None, lo=1, hi=MAX_LOG_BYTES)
        start = parse_time("StartTime", p.get_str("StartTime")) if p.has("StartTime") else None
        stamps = p.get_bool("Timestamps")
        lines = self.engine.runtime.logs(group, name, p.get_bool("LastTime"))
        if since is not None:
            start = max(start or 0.0, time.time() - since)
        if start is not None:
            lines = [ln for ln in lines if ln[0] >= start]
        if tail is not None:
            lines = lines[-tail:] if tail else []
        text = "".join(f"{rfc3339nano(ts)} {line}\n" if stamps else f"{line}\n" for ts, _, line in lines)
        data = text.encode()[: limit or MAX_LOG_BYTES]
        return {"ContainerName": name, "Content": data.decode(errors="ignore")}

    # ---- exec ---------------------------------------------------------------------------------

    async def exec(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        group = self._group(p)
        name = p.get_str("ContainerName", required=True)
        command = p.json_list("Command", max_items=20)
        if not command:
            raise missing("Command")
        if any(len(c) > 256 for c in command):
            raise ApiError("InvalidParameter.ValueExceeded", "Each Command item holds at most 256 characters.")
        tty = p.get_bool("TTY")
        stdin = p.get_bool("Stdin", default=True)
        sync = p.get_bool("Sync")
        if sync and tty:
            raise invalid("Sync", "Sync needs TTY false")
        cs = group.status_of(name)
        if cs is None or group.spec_of(name) in group.init_containers:
            raise invalid("ContainerName", f"the group has no container {name}")
        if group.status != "Running" or cs.current.state != "Running":
            raise ApiError("IncorrectStatus", f"Container {name} is not running (group {group.status}).", 403)
        if sync:
            output, _code = await self.engine.runtime.exec_sync(group, name, command, 30)
            return {"SyncResponse": output, "WebSocketUri": "", "HttpUrl": ""}
        now = time.time()
        self.exec_tickets = {t: x for t, x in self.exec_tickets.items() if x.expires > now}
        token = secrets.token_urlsafe(24)
        self.exec_tickets[token] = ExecTicket(group.id, name, command, tty, stdin, now + EXEC_TOKEN_TTL)
        base = self.endpoint()
        return {
            "WebSocketUri": base.replace("http://", "ws://", 1) + f"/_sim/exec/{token}",
            "HttpUrl": f"{base}/_sim/exec/{token}",
        }

    def take_ticket(self, token: str) -> ExecTicket | None:
        ticket = self.exec_tickets.pop(token, None)
        if ticket is None or ticket.expires < time.time():
            return None
        return ticket

    # ---- metrics ------------------------------------------------------------------------------

    def _sample(self, group: Group) -> list[dict[str, Any]]:
        history = self.metrics.setdefault(group.id, [])
        if group.status not in TERMINAL:
            history.append(metric_record(group, self.engine.runtime.metrics_sample(group)))
            del history[:-50]
        return history

    async def metric(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        group = self._group(p)
        period = p.get_int("Period", default=15)
        if period not in (15, 30, 60, 600):
            raise invalid("Period", "15, 30, 60 or 600")
        now = time.time()
        start = parse_time("StartTime", p.get_str("StartTime")) if p.has("StartTime") else now - 300
        end = parse_time("EndTime", p.get_str("EndTime")) if p.has("EndTime") else now + 1
        if end < start or end - start > 30 * 86400:
            raise invalid("EndTime", "EndTime must follow StartTime, within 30 days")
        history = self._sample(group)
        records = [r for r in history if start <= parse_time("Timestamp", r["Timestamp"]) <= end]
        return {"ContainerGroupId": group.id, "Records": records[-50:]}

    async def multi_metric(self, p: Params) -> dict[str, Any]:
        self._check_region(p)
        ids = p.json_list("ContainerGroupIds", max_items=20)
        if not ids:
            raise missing("ContainerGroupIds")
        out = []
        for gid in ids:
            group = self.engine.groups.get(gid)
            if group is None:
                continue
            history = self._sample(group)
            out.append({"ContainerGroupId": gid, "Records": history[-1:]})
        return {"MonitorDatas": out}

    # ---- account ------------------------------------------------------------------------------

    async def usage(self, p: Params) -> dict[str, Any]:
        live = [g for g in self.engine.groups.values() if g.status not in TERMINAL]
        return {
            # The documented answer: quota names to numbers.
            "Attributes": {
                "UsedCpu": sum(g.cpu for g in live),
                "MaxCpu": 100000,
                "UsedImageCacheCount": 0,
                "MaxImageCacheCount": 500,
                "UsedAutoImageCacheCount": 0,
                "MaxAutoImageCacheCount": 25,
                "UsedDataCacheCount": 0,
                "MaxDataCacheCount": 100,
            },
        }

    async def regions(self, p: Params) -> dict[str, Any]:
        return {
            "Regions": [
                {
                    "RegionId": self.region,
                    "RegionEndpoint": f"eci.{self.region}.aliyuncs.com",
                    "Zones": self.zones,
                    "RecommendZones": self.zones[:2],
                }
            ]
        }


_FIELD_FOR = {
    "Image": "image",
    "Command": "command",
    "Arg": "args",
    "WorkingDir": "working_dir",
    "Port": "ports",
    "VolumeMount": "mounts",
    "ReadinessProbe": "readiness",
    "LivenessProbe": "liveness",
    "Cpu": "cpu",
    "Memory": "memory",
    "Stdin": "stdin",
    "Tty": "tty",
    "ImagePullPolicy": "image_pull_policy",
}


def _merge_containers(
    old: list[ContainerSpec], new: list[ContainerSpec], raw: Any, incremental: bool
) -> list[ContainerSpec]:
    """RenewUpdate: a sent list replaces the old one. IncrementalUpdate: containers merge by name, and
    only the fields that were sent change (environment variables merge by key)."""
    if not new:
        return old
    if not incremental:
        return new
    merged = {c.name: c.model_copy(deep=True) for c in old}
    for spec, sent in zip(new, raw if isinstance(raw, list) else [], strict=False):
        base = merged.get(spec.name)
        if base is None:
            merged[spec.name] = spec
            continue
        for key, field in _FIELD_FOR.items():
            if isinstance(sent, dict) and key in sent:
                setattr(base, field, getattr(spec, field))
        if isinstance(sent, dict) and "EnvironmentVar" in sent:
            env = dict(base.env)
            env.update(dict(spec.env))
            base.env = list(env.items())
    return list(merged.values())
