"""The virtual Node: registration, status heartbeats, the kube-node-lease Lease and the backend ping.

Conditions are ours to own only for the five kubelet types; the status PATCH is a strategic merge
on ``conditions`` (merge key ``type``), so conditions other controllers write are kept.

Backend outages (see docs/operations.md, "Backend outages"): the node stays Ready while the ECI API
is unreachable, because NotReady makes the node lifecycle controller taint the node NoExecute and
evict every pod 5 minutes later, which on a serverless node means deleting healthy running groups.
After ``backend_outage_grace_seconds`` of failed pings the node reports ``NetworkUnavailable=True``
(reason ``BackendUnreachable``): the scheduler stops placing new pods here (a NoSchedule taint, no
eviction) and the outage is visible in ``kubectl describe node``.

Readiness needs the pod watch synced and existing groups adopted. The one exception is ECI being
unreachable while the daemon starts: once the first adoption listing has failed, the node turns Ready
anyway (NotReady would evict), while the pod controller keeps retrying the adoption (and holds creates
and deletes until then); the Ready message says so.
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from vk_provider import __version__
from vk_provider.kube.client import JSON, STRATEGIC_MERGE_PATCH, KubeAPI, KubeError, now_micro, now_rfc3339
from vk_provider.metrics import BACKEND_UP, LEASE_RENEWALS, NODE_READY
from vk_provider.settings import NodeSettings

log = structlog.get_logger("vk_provider.node")

LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = f"v1.31.0-vk-eci-{__version__}"
CONDITION_TYPES = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


@dataclass
class Condition:
    type: str
    status: str
    reason: str
    message: str


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine or "amd64")


def parse_taint(spec: str | None) -> dict[str, str] | None:
    """``key=value:Effect`` or ``key:Effect`` -> a Node taint."""
    if not spec:
        return None
    kv, effect = spec.rsplit(":", 1)
    key, _, value = kv.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


class NodeController:
    """Registers the Node and keeps its status, Lease and backend health current."""

    def __init__(
        self,
        api: KubeAPI,
        settings: NodeSettings,
        *,
        region: str,
        kubelet_port: int,
        ping: Callable[[], Any],
        pods_ready: Callable[[], bool],
        adoption_pending: Callable[[], tuple[str, str] | None] | None = None,
        quota: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self.name = settings.name
        self.region = region
        self.kubelet_port = kubelet_port
        self._ping = ping
        self._pods_ready = pods_ready
        self._adoption_pending = adoption_pending or (lambda: None)
        self._quota = quota
        self._clock = clock
        self.uid: str | None = None
        self.backend_ok = True
        self._backend_down_since: float | None = None
        self._last_conditions: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        self.ready_written = asyncio.Event()
        self.status_writes = 0
        self._capacity_override: dict[str, str] = {}
        self._written_sig: tuple[tuple[str, str, str], ...] = ()

    # ---- the Node object -------------------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        labels = {
            "type": "virtual-kubelet",
            "kubernetes.io/role": "agent",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": _arch(),
            "node.kubernetes.io/instance-type": "virtual-node",
            "topology.kubernetes.io/region": self.region,
            "alibabacloud.com/virtual-node": "true",
        }
        if self.settings.zone:
            labels["topology.kubernetes.io/zone"] = self.settings.zone
        labels.update(self.settings.labels)
        return labels

    def capacity(self) -> dict[str, str]:
        cap = {
            "cpu": self.settings.capacity_cpu,
            "memory": self.settings.capacity_memory,
            "pods": self.settings.capacity_pods,
            "ephemeral-storage": self.settings.capacity_ephemeral_storage,
        }
        cap.update(self._capacity_override)
        return cap

    def addresses(self) -> list[dict[str, str]]:
        out = []
        if self.settings.internal_ip:
            out.append({"type": "InternalIP", "address": self.settings.internal_ip})
        hostname = self.settings.hostname_address or self.settings.internal_ip or self.name
        out.append({"type": "Hostname", "address": hostname})
        return out

    def conditions(self) -> list[Condition]:
        pods_ready = self._pods_ready()
        outage = self.outage_seconds()
        long_outage = outage is not None and outage >= self.settings.backend_outage_grace_seconds
        pending = self._adoption_pending()
        if not pods_ready:
            ready = Condition("Ready", "False", "KubeletNotReady", "waiting for the pod watch to sync")
        elif pending is not None and pending[0] == "listing":
            # The first adoption attempt (normally one quick listing): Ready waits for it, as a kubelet
            # waits to know its pods. Only if it fails does the node turn Ready anyway (see below).
            ready = Condition("Ready", "False", "KubeletNotReady", pending[1])
        elif pending is not None:
            prefix = f"ECI API unreachable for {int(outage)}s; " if outage is not None else ""
            ready = Condition(
                "Ready",
                "True",
                "KubeletReady",
                f"{prefix}{pending[1]}; creating and deleting pods waits for it, running pods are left alone",
            )
        elif outage is not None:
            ready = Condition(
                "Ready",
                "True",
                "KubeletReady",
                f"ECI API unreachable for {int(outage)}s; running pods are left alone",
            )
        else:
            ready = Condition("Ready", "True", "KubeletReady", "virtual kubelet is ready; ECI API reachable")
        net = (
            Condition(
                "NetworkUnavailable", "True", "BackendUnreachable", f"ECI API unreachable for {int(outage or 0)}s"
            )
            if long_outage
            else Condition("NetworkUnavailable", "False", "RouteCreated", "ECI networking is managed by the service")
        )
        return [
            ready,
            Condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "serverless: no memory pressure"),
            Condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "serverless: no disk pressure"),
            Condition("PIDPressure", "False", "KubeletHasSufficientPID", "serverless: no PID pressure"),
            net,
        ]

    def condition_dicts(self) -> list[dict[str, Any]]:
        """Conditions to write; lastTransitionTime moves only for a condition whose status moved."""
        now = now_rfc3339()
        out = []
        for cond in self.conditions():
            prev = self._last_conditions.get(cond.type)
            transition = now if prev is None or prev.get("status") != cond.status else prev.get("lastTransitionTime")
            d = {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": transition or now,
            }
            out.append(d)
        return out

    def _signature(self) -> tuple[tuple[str, str, str], ...]:
        # The adoption state and whether ECI answers are written at once too (not their messages: an error
        # text or an outage's length changes on every retry), so the Ready message never lags behind them.
        pending = self._adoption_pending()
        adoption = ("Adoption", pending[0] if pending else "done", "")
        backend = ("Backend", "down" if self._backend_down_since is not None else "up", "")
        return (*((c.type, c.status, c.reason) for c in self.conditions()), adoption, backend)

    def node_status(self) -> dict[str, Any]:
        cap = self.capacity()
        return {
            "capacity": cap,
            "allocatable": dict(cap),
            "addresses": self.addresses(),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
                "containerRuntimeVersion": "eci://2018-08-08",
                "osImage": "Alibaba Cloud ECI (serverless)",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
            "conditions": self.condition_dicts(),
        }

    def node_object(self) -> JSON:
        taint = parse_taint(self.settings.taint)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": [taint] if taint else []},
            "status": self.node_status(),
        }

    async def _load_quota(self) -> None:
        if not (self.settings.capacity_from_quota and self._quota is not None):
            return
        try:
            quota = await self._quota()
        except Exception as exc:
            log.warning("ECI quota not available; using configured capacity", error=repr(exc))
            return
        if isinstance(quota, dict):
            self._capacity_override = {k: str(v) for k, v in quota.items() if k in ("cpu", "memory", "pods")}

    async def register(self) -> JSON:
        """Create the Node, or adopt an existing one (labels and taint merged, our conditions kept)."""
        await self._load_quota()
        path = f"/api/v1/nodes/{self.name}"
        existing = await self.api.get_or_none(path)
        if existing is None:
            try:
                node = await self.api.request("POST", "/api/v1/nodes", body=self.node_object())
                log.info("registered node", node=self.name)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                existing = await self.api.get(path)
        if existing is not None:
            for cond in (existing.get("status") or {}).get("conditions") or []:
                if cond.get("type") in CONDITION_TYPES:
                    self._last_conditions[str(cond["type"])] = cond
            taints = [
                t for t in (existing.get("spec") or {}).get("taints") or [] if not _same_taint(t, self.settings.taint)
            ]
            taint = parse_taint(self.settings.taint)
            if taint:
                taints.append(taint)
            patch = {"metadata": {"labels": self.labels()}, "spec": {"taints": taints}}
            node = await self.api.request("PATCH", path, body=patch, content_type=STRATEGIC_MERGE_PATCH)
            log.info("adopted existing node", node=self.name)
        self.uid = str((node.get("metadata") or {}).get("uid") or "")
        await self.patch_status()
        return node

    async def patch_status(self) -> None:
        sig = self._signature()
        status = self.node_status()
        body = {"status": status}
        await self.api.request(
            "PATCH", f"/api/v1/nodes/{self.name}/status", body=body, content_type=STRATEGIC_MERGE_PATCH
        )
        self.status_writes += 1
        self._written_sig = sig
        for cond in status["conditions"]:
            self._last_conditions[cond["type"]] = cond
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
        NODE_READY.set(1 if ready else 0)
        if ready:
            self.ready_written.set()

    # ---- loops -----------------------------------------------------------------------------------
    def notify(self) -> None:
        """Something that feeds the conditions changed: write the status now if it differs."""
        self.changed.set()

    async def run_status(self) -> None:
        """PATCH the status every status_interval_seconds, and at once when the conditions change."""
        while True:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=self.settings.status_interval_seconds)
            except TimeoutError:
                pass
            if self.changed.is_set() and self._signature() == self._written_sig:
                continue  # a poke that changed nothing; the periodic write keeps the heartbeat
            try:
                await self.patch_status()
            except Exception as exc:
                log.warning("node status update failed", error=repr(exc))

    def lease_object(self, resource_version: str | None = None) -> JSON:
        meta: dict[str, Any] = {"name": self.name, "namespace": LEASE_NAMESPACE}
        if self.uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}]
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": self.settings.lease_duration_seconds,
                "renewTime": now_micro(),
            },
        }

    async def renew_lease(self) -> None:
        """Read the Lease and create or update it. Every attempt counts in ``vk_lease_renewals_total``:
        ``result`` is ``ok``, the HTTP status of a refusal, ``timeout``, or ``error`` (connection
        errors, unreadable answers); a failed read counts as a failed renewal."""
        base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        try:
            current = await self.api.get_or_none(f"{base}/{self.name}")
            if current is None:
                await self.api.request("POST", base, body=self.lease_object())
            else:
                rv = (current.get("metadata") or {}).get("resourceVersion")
                await self.api.request("PUT", f"{base}/{self.name}", body=self.lease_object(rv))
        except KubeError as exc:
            LEASE_RENEWALS.labels(result=str(exc.status)).inc()
            raise
        except TimeoutError:
            LEASE_RENEWALS.labels(result="timeout").inc()
            raise
        except Exception:
            LEASE_RENEWALS.labels(result="error").inc()
            raise
        LEASE_RENEWALS.labels(result="ok").inc()

    async def run_lease(self) -> None:
        while True:
            try:
                await self.renew_lease()
            except Exception as exc:
                log.warning("lease renewal failed", error=repr(exc))
            await asyncio.sleep(self.settings.lease_interval_seconds)

    def outage_seconds(self) -> float | None:
        if self._backend_down_since is None:
            return None
        return self._clock() - self._backend_down_since

    async def ping_once(self) -> bool:
        try:
            await self._ping()
            ok = True
        except Exception as exc:
            ok = False
            log.warning("ECI ping failed", error=repr(exc))
        BACKEND_UP.set(1 if ok else 0)
        if ok:
            self._backend_down_since = None
        elif self._backend_down_since is None:
            self._backend_down_since = self._clock()
        self.backend_ok = ok
        if self._signature() != self._written_sig:
            self.notify()
        return ok

    async def run_ping(self) -> None:
        while True:
            await self.ping_once()
            await asyncio.sleep(self.settings.ping_interval_seconds)


def _unreachable(outage: float | None) -> str:
    return f"ECI API unreachable for {int(outage or 0)}s; new pods are not scheduled here, running ones keep running"


def _same_taint(taint: dict[str, Any], spec: str | None) -> bool:
    mine = parse_taint(spec)
    return mine is not None and taint.get("key") == mine["key"] and taint.get("effect") == mine["effect"]
