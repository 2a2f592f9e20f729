"""Worker nodes run by a "hollow kubelet" (the idea of kubemark and kwok): ordinary nodes with real capacity whose
pods go through a kubelet's status changes without running anything.

``WorkerSpec`` says how many nodes (``sandbox-worker-1`` ...) and what each offers. ``hollow_kubelets`` registers
them (Ready, no taints, capacity = allocatable), renews their Leases in kube-node-lease, and drives every pod bound
to one of them:

- a new pod is ``ContainerCreating`` (phase Pending, its pod IP from the node's ``10.244.<i>.0/24``) for
  ``startup`` seconds; then its init containers are Completed, its containers Running with ``startedAt`` and Ready;
- a container whose command (``command`` + ``args``) is a known short one ends by itself: ``true`` (exit 0),
  ``false`` (exit 1), ``sleep N`` (exit 0 after N seconds), also wrapped as ``sh -c "<one of them>"`` or
  ``sh -c "exit N"``; any other command runs until the pod is deleted. An init container always completes (after
  N seconds for ``sleep N``). With ``restartPolicy: Never`` the pod ends Succeeded (every exit 0) or Failed; with
  ``OnFailure`` a failed container and with ``Always`` any ended container is restarted after ``restart_delay``
  seconds (restartCount counts them);
- a pod being deleted is removed when its containers have stopped: at once when the grace period is 0, otherwise
  after ``min(grace, stop_seconds)`` (hollow containers honour SIGTERM promptly, never later than the grace period).

There is no kubelet API behind a worker: ``kubectl logs/exec`` against its pods get an error from the proxy.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from vk_sandbox.apiserver.controllers._common import watch_forever
from vk_sandbox.apiserver.controllers.capacity import parse_quantity
from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.store import Store, now_rfc3339

JSON = dict[str, Any]
Key = tuple[str, str]
log = structlog.get_logger("vk_sandbox.apiserver.workers")

WORKER_PREFIX = "sandbox-worker-"
HOLLOW_ANNOTATION = "sandbox.vk-eci.io/hollow-kubelet"
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v1.32.3-hollow"
EPHEMERAL_STORAGE = "20Gi"


@dataclass(frozen=True)
class WorkerSpec:
    """How many worker nodes and the capacity of each; ``count`` 0 means none (only nodes others register)."""

    count: int = 0
    cpu: str = "2"
    memory: str = "4Gi"
    pods: int = 20

    def __post_init__(self) -> None:
        if self.count < 0 or self.count > 250:
            raise ValueError(f"workers must be between 0 and 250, not {self.count}")
        if self.pods < 1 or self.pods > 250:
            raise ValueError(f"worker-pods must be between 1 and 250, not {self.pods}")
        for name, value in (("worker-cpu", self.cpu), ("worker-memory", self.memory)):
            try:
                ok = parse_quantity(value) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{name} must be a positive quantity such as 2 or 4Gi, not {value!r}")

    def names(self) -> list[str]:
        return [f"{WORKER_PREFIX}{i}" for i in range(1, self.count + 1)]


def worker_node(spec: WorkerSpec, index: int) -> JSON:
    """The Node object of worker ``index`` (1-based)."""
    name = f"{WORKER_PREFIX}{index}"
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods), "ephemeral-storage": EPHEMERAL_STORAGE}
    now = now_rfc3339()

    def cond(ctype: str, status: str, reason: str, message: str) -> JSON:
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "sandbox-worker",
            },
            "annotations": {HOLLOW_ANNOTATION: "true"},
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                cond(
                    "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
                ),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            # A loopback address nothing listens on; the proxy answers for hollow nodes without dialling it.
            "addresses": [{"type": "InternalIP", "address": f"127.0.1.{index}"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"hollow-{index}",
                "systemUUID": f"hollow-{index}",
                "bootID": f"hollow-{index}",
                "kernelVersion": "hollow",
                "osImage": "Hollow kubelet (vk-eci sandbox)",
                "containerRuntimeVersion": "hollow://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def is_hollow(node: Mapping[str, Any]) -> bool:
    return ((node.get("metadata") or {}).get("annotations") or {}).get(HOLLOW_ANNOTATION) == "true"


def exit_plan(container: Mapping[str, Any]) -> tuple[float, int] | None:
    """(seconds until it exits, exit code) for a known short command, None for one that runs until stopped."""
    words = [str(w) for w in list(container.get("command") or []) + list(container.get("args") or [])]
    if len(words) >= 3 and words[0].rsplit("/", 1)[-1] in ("sh", "bash", "ash") and words[1] == "-c":
        try:
            words = shlex.split(words[2])
        except ValueError:
            return None
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "true" and len(words) == 1:
        return 0.0, 0
    if program == "false" and len(words) == 1:
        return 0.0, 1
    if program == "exit" and len(words) == 2 and words[1].isdigit():
        return 0.0, int(words[1]) % 256
    if program == "sleep" and len(words) == 2:
        try:
            seconds = float(words[1])
        except ValueError:
            return None
        return (max(0.0, seconds), 0) if seconds < 1e9 else None
    return None


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Run:
    uid: str
    node: str
    ip: str
    containers: dict[str, JSON] = field(default_factory=dict)  # name -> container spec
    removing: bool = False


class HollowKubelets:
    """The kubelets of every worker node, in one loop: node registration, Leases, and the pods bound to them."""

    def __init__(
        self,
        store: Store,
        spec: WorkerSpec,
        *,
        lease_renew_seconds: float = 10.0,
        startup: float = 0.2,
        stop_seconds: float = 1.0,
        restart_delay: float = 10.0,
    ) -> None:
        self.store = store
        self.spec = spec
        self.names = set(spec.names())
        self.lease_renew_seconds = lease_renew_seconds
        self.startup = startup
        self.stop_seconds = stop_seconds
        self.restart_delay = restart_delay
        self._runs: dict[Key, _Run] = {}
        self._ips: dict[str, set[int]] = {name: set() for name in self.names}
        self._timers: list[tuple[float, int, Key, str, str]] = []  # (due, seq, pod, action, container)
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    # ---- nodes and leases

    def register(self) -> None:
        for i in range(1, self.spec.count + 1):
            node = worker_node(self.spec, i)
            if self.store.get("nodes", None, node["metadata"]["name"]) is None:
                self.store.create_now("nodes", node)
        self.renew_leases()

    def renew_leases(self) -> None:
        for name in sorted(self.names):
            node = self.store.get("nodes", None, name)
            if node is None:
                continue
            lease = self.store.get("leases.coordination.k8s.io", LEASE_NAMESPACE, name)
            try:
                if lease is None:
                    self.store.create_now(
                        "leases.coordination.k8s.io",
                        {
                            "metadata": {
                                "name": name,
                                "namespace": LEASE_NAMESPACE,
                                "ownerReferences": [
                                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
                                ],
                            },
                            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro_now()},
                        },
                    )
                else:
                    self.store.mutate_now(
                        "leases.coordination.k8s.io",
                        LEASE_NAMESPACE,
                        name,
                        lambda lease: {**lease, "spec": {**(lease.get("spec") or {}), "renewTime": _micro_now()}},
                    )
            except ApiError as exc:
                log.debug("lease not renewed", node=name, error=exc.message)

    # ---- timers

    def _after(self, seconds: float, key: Key, action: str, container: str = "") -> None:
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._seq), key, action, container))
        self._wake.set()

    # ---- pods

    def on_pod(self, etype: str, pod: JSON) -> None:
        meta = pod.get("metadata") or {}
        key: Key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        node = (pod.get("spec") or {}).get("nodeName")
        run = self._runs.get(key)
        if run is not None and run.uid != meta.get("uid"):
            self._forget(key)
            run = None
        if etype == "DELETED" or node not in self.names:
            if run is not None:
                self._forget(key)
            return
        status = pod.get("status") or {}
        if run is None:
            if status.get("phase") in ("Succeeded", "Failed"):
                return  # finished: the store removes it at once when it is deleted
            if status.get("startTime"):
                run = self._runs[key] = _Run(str(meta.get("uid")), str(node), "")  # started before: only stop it
            else:
                run = self._admit(key, pod, str(node))
        if run is not None and meta.get("deletionTimestamp") and not run.removing:
            run.removing = True
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            self._after(min(grace, self.stop_seconds), key, "remove")

    def _forget(self, key: Key) -> None:
        run = self._runs.pop(key, None)
        if run is not None and run.ip:
            self._ips[run.node].discard(int(run.ip.rsplit(".", 1)[1]))

    def _admit(self, key: Key, pod: JSON, node: str) -> _Run | None:
        index = int(node.removeprefix(WORKER_PREFIX))
        used = self._ips[node]
        host = next((n for n in range(2, 255) if n not in used), None)
        if host is None:
            log.warning("hollow kubelet has no pod IP left", node=node, pod=f"{key[0]}/{key[1]}")
            return None
        used.add(host)
        spec = pod.get("spec") or {}
        run = _Run(str(pod["metadata"]["uid"]), node, f"10.244.{index}.{host}")
        run.containers = {str(c.get("name")): c for c in spec.get("containers") or []}
        self._runs[key] = run
        init_seconds = 0.0
        for c in spec.get("initContainers") or []:
            plan = exit_plan(c)
            init_seconds += plan[0] if plan is not None else 0.0
        self._write(key, lambda p: _creating(p, node, run.ip))
        self._after(self.startup + init_seconds, key, "start")
        return run

    def _write(self, key: Key, fn: Any) -> None:
        run = self._runs.get(key)
        if run is None:
            return

        def guarded(p: JSON) -> JSON | None:
            if p["metadata"].get("uid") != run.uid:
                return None
            return fn(p)  # type: ignore[no-any-return]

        try:
            self.store.mutate_now("pods", key[0], key[1], guarded, subresource="status")
        except ApiError as exc:
            log.debug("hollow kubelet status write skipped", pod=f"{key[0]}/{key[1]}", error=exc.message)

    def _fire(self, key: Key, action: str, container: str) -> None:
        run = self._runs.get(key)
        if run is None:
            return
        if action == "remove":
            try:
                self.store.delete_now("pods", key[0], key[1], grace_period_seconds=0, uid_precondition=run.uid)
            except ApiError as exc:
                log.debug("hollow kubelet removal skipped", pod=f"{key[0]}/{key[1]}", error=exc.message)
            return
        if run.removing:
            return
        if action == "start":
            self._write(key, _running)
            for name, c in run.containers.items():
                self._plan_exit(key, name, c)
        elif action == "exit":
            self._write(key, lambda p: _exited(p, container, exit_plan(run.containers[container]) or (0, 0)))
            pod = self.store.get("pods", key[0], key[1])
            if pod is not None and _restarts(pod, container):
                self._after(self.restart_delay, key, "restart", container)
        elif action == "restart":
            self._write(key, lambda p: _restarted(p, container))
            self._plan_exit(key, container, run.containers[container])

    def _plan_exit(self, key: Key, name: str, container: JSON) -> None:
        plan = exit_plan(container)
        if plan is not None:
            self._after(plan[0], key, "exit", name)

    async def run(self) -> None:
        """Register the nodes, then renew Leases and drive pods until cancelled."""
        self.register()
        next_renew = time.monotonic() + self.lease_renew_seconds
        feeder = asyncio.create_task(watch_forever(self.store, "pods", self.on_pod), name="hollow-kubelet-pods")
        try:
            while True:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, key, action, container = heapq.heappop(self._timers)
                    try:
                        self._fire(key, action, container)
                    except Exception:
                        log.exception("hollow kubelet step failed", pod=f"{key[0]}/{key[1]}", action=action)
                if now >= next_renew:
                    self.renew_leases()
                    next_renew = now + self.lease_renew_seconds
                due = min(next_renew, self._timers[0][0]) if self._timers else next_renew
                self._wake.clear()
                if feeder.done():
                    feeder.result()  # the watch ended: let the supervisor restart us
                    return
                try:
                    async with asyncio.timeout(max(0.0, due - time.monotonic())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)


# ---- pod status changes (each takes the stored pod, returns it changed, or None for no change)


def _set_condition(status: JSON, ctype: str, value: str, reason: str = "") -> None:
    now = now_rfc3339()
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)
    cond: JSON = {"type": ctype, "status": value, "lastProbeTime": None}
    cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == value else now
    if reason:
        cond["reason"] = reason
    conditions.append(cond)
    order = {"PodReadyToStartContainers": 0, "Initialized": 1, "Ready": 2, "ContainersReady": 3, "PodScheduled": 4}
    status["conditions"] = sorted(conditions, key=lambda c: order.get(str(c.get("type")), 9))


def _image_of(c: Mapping[str, Any]) -> str:
    image = str(c.get("image") or "")
    return image if "/" in image.split(":", 1)[0] or "." in image.split("/", 1)[0] else f"docker.io/library/{image}"


def _status_of(c: Mapping[str, Any], state: JSON, *, ready: bool, restarts: int = 0, last: JSON | None = None) -> JSON:
    out: JSON = {
        "name": c.get("name"),
        "image": _image_of(c),
        "imageID": "",
        "containerID": "",
        "ready": ready,
        "restartCount": restarts,
        "started": "running" in state,
        "state": state,
        "lastState": last or {},
    }
    if "waiting" not in state:
        out["containerID"] = f"hollow://{c.get('name')}-{restarts}"
        out["imageID"] = out["image"]
    return out


def _creating(pod: JSON, node: str, ip: str) -> JSON:
    spec = pod.get("spec") or {}
    status = pod.setdefault("status", {})
    status.update(
        {
            "phase": "Pending",
            "hostIP": f"127.0.1.{node.removeprefix(WORKER_PREFIX)}",
            "hostIPs": [{"ip": f"127.0.1.{node.removeprefix(WORKER_PREFIX)}"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now_rfc3339(),
            "qosClass": status.get("qosClass") or "BestEffort",
        }
    )
    inits = spec.get("initContainers") or []
    _set_condition(status, "PodReadyToStartContainers", "True")
    _set_condition(status, "Initialized", "False" if inits else "True", "ContainersNotInitialized" if inits else "")
    _set_condition(status, "Ready", "False", "ContainersNotReady")
    _set_condition(status, "ContainersReady", "False", "ContainersNotReady")
    if inits:
        status["initContainerStatuses"] = [
            _status_of(c, {"waiting": {"reason": "PodInitializing"}}, ready=False) for c in inits
        ]
    reason = "PodInitializing" if inits else "ContainerCreating"
    status["containerStatuses"] = [
        _status_of(c, {"waiting": {"reason": reason}}, ready=False) for c in spec.get("containers") or []
    ]
    return pod


def _running(pod: JSON) -> JSON:
    spec = pod.get("spec") or {}
    status = pod.setdefault("status", {})
    now = now_rfc3339()
    status["phase"] = "Running"
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            _status_of(
                c,
                {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
                ready=False,
            )
            for c in spec["initContainers"]
        ]
    status["containerStatuses"] = [
        _status_of(c, {"running": {"startedAt": now}}, ready=True) for c in spec.get("containers") or []
    ]
    for ctype in ("Initialized", "Ready", "ContainersReady"):
        _set_condition(status, ctype, "True")
    return pod


def _find(status: JSON, name: str) -> JSON | None:
    return next((s for s in status.get("containerStatuses") or [] if s.get("name") == name), None)


def _exited(pod: JSON, name: str, plan: tuple[float, int]) -> JSON | None:
    status = pod.setdefault("status", {})
    cs = _find(status, name)
    if cs is None or "running" not in (cs.get("state") or {}):
        return None
    code = plan[1]
    cs["state"] = {
        "terminated": {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": cs["state"]["running"].get("startedAt"),
            "finishedAt": now_rfc3339(),
            "containerID": cs.get("containerID"),
        }
    }
    cs["ready"] = False
    cs["started"] = False
    _set_condition(status, "Ready", "False", "ContainersNotReady")
    _set_condition(status, "ContainersReady", "False", "ContainersNotReady")
    statuses = status.get("containerStatuses") or []
    restart_policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    if restart_policy != "Always" and all("terminated" in (s.get("state") or {}) for s in statuses):
        codes = [s["state"]["terminated"].get("exitCode", 0) for s in statuses]
        if restart_policy == "Never" or all(c == 0 for c in codes):
            status["phase"] = "Succeeded" if all(c == 0 for c in codes) else "Failed"
            reason = "PodCompleted"
            _set_condition(status, "Ready", "False", reason)
            _set_condition(status, "ContainersReady", "False", reason)
    return pod


def _restarts(pod: JSON, name: str) -> bool:
    """Does the kubelet start this ended container again (restartPolicy and its exit code)?"""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    cs = _find(status, name)
    terminated = ((cs or {}).get("state") or {}).get("terminated")
    if terminated is None:
        return False
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    return policy == "Always" or (policy == "OnFailure" and terminated.get("exitCode") != 0)


def _restarted(pod: JSON, name: str) -> JSON | None:
    status = pod.setdefault("status", {})
    cs = _find(status, name)
    if cs is None or "terminated" not in (cs.get("state") or {}):
        return None
    cs["lastState"] = cs["state"]
    cs["restartCount"] = int(cs.get("restartCount") or 0) + 1
    cs["state"] = {"running": {"startedAt": now_rfc3339()}}
    cs["ready"] = cs["started"] = True
    cs["containerID"] = f"hollow://{name}-{cs['restartCount']}"
    statuses = status.get("containerStatuses") or []
    if all(s.get("ready") for s in statuses):
        _set_condition(status, "Ready", "True")
        _set_condition(status, "ContainersReady", "True")
    return pod
