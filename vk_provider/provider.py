"""The contract between the controllers / kubelet API and a backend (today: ECI).

Kept close to virtual-kubelet's provider interface, which its users know. Pods cross this boundary
as raw JSON dicts in the API server's camelCase form (what a watch delivers), because at 10k pods
dicts are far cheaper than generated client models.

A backend that cannot do something raises ``vk_provider.errors.NotSupported`` with the reason: the
kubelet API answers 501 with it, the controllers turn it into a Warning event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

Pod = dict[str, Any]
"""A Pod in the API server's JSON form (camelCase keys)."""


@dataclass(frozen=True)
class LogOptions:
    """Parsed, validated query of /containerLogs (see the kubelet API for the 400 rules)."""

    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time: datetime | None = None
    timestamps: bool = False
    previous: bool = False
    follow: bool = False


@runtime_checkable
class ExecSession(Protocol):
    """One running exec (or attach) in a container, as a bidirectional byte pump.

    ``output()`` yields (stream, data) with stream 1 = stdout, 2 = stderr, and ends when the process
    has exited and all output is delivered. ``exit_code()`` then returns the exit status. ``close()``
    releases everything held on the backend and is safe to call twice.
    """

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None: ...

    def output(self) -> AsyncIterator[tuple[int, bytes]]: ...

    async def exit_code(self) -> int: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ContainerUsage:
    name: str
    start_time: datetime | None
    timestamp: datetime
    cpu_usage_nano_cores: int | None
    cpu_usage_core_nano_seconds: int | None
    memory_working_set_bytes: int | None
    memory_usage_bytes: int | None = None
    memory_rss_bytes: int | None = None
    memory_available_bytes: int | None = None


@dataclass(frozen=True)
class PodUsage:
    namespace: str
    name: str
    uid: str
    start_time: datetime | None
    timestamp: datetime
    containers: list[ContainerUsage] = field(default_factory=list)


@dataclass
class PodResources:
    """Everything outside the Pod object that translation needs, fetched by the pod controller.

    A name mapped to None was looked up and does not exist (the controller has already decided,
    from ``optional``, whether the pod may still start, and emitted the kubelet's events).
    """

    config_maps: dict[str, dict[str, str] | None] = field(default_factory=dict)
    """ConfigMap name -> data (binaryData entries base64-decoded to str where valid UTF-8)."""
    secrets: dict[str, dict[str, bytes] | None] = field(default_factory=dict)
    """Secret name -> decoded data. Never logged."""
    service_env: dict[str, str] = field(default_factory=dict)
    """Service-link variables (FOO_SERVICE_HOST ...): the namespace's if enableServiceLinks; ``kubernetes`` always."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Projected serviceAccountToken contents keyed by "<volume name>/<path>"."""


@dataclass(frozen=True)
class BackendEvent:
    """An event the backend reports on a pod's group, to be mirrored as a Kubernetes Event."""

    type: str  # Normal | Warning
    reason: str
    message: str
    count: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None


@dataclass(frozen=True)
class Interruption:
    """The backend announced it will take the pod's capacity away (ECI: a spot group's
    ``SpotToBeReleased`` event): at ``release_at`` the group is released, whatever the pod does."""

    reason: str  # the backend's event reason, e.g. SpotToBeReleased
    message: str  # the backend's own words
    release_at: datetime  # UTC

    def released_message(self, group_id: str, released: datetime | None = None) -> str:
        """The message of a pod failed by the release (reason ``BidFailed``): the group and the time."""
        when = (released or self.release_at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"the spot container group {group_id or '(unknown id)'} was reclaimed at {when} ({self.message})"


@dataclass
class BackendPod:
    """The backend's view of one pod: identity from the group's tags, status mapped to Kubernetes."""

    namespace: str
    name: str
    uid: str
    group_id: str
    group_status: str  # the backend's own status word (ECI: Pending, Running, Terminating ...)
    status: dict[str, Any]  # a PodStatus in JSON form; phase/conditions/containerStatuses/podIP ...
    created: datetime | None = None
    events: list[BackendEvent] = field(default_factory=list)
    interruption: Interruption | None = None  # a release is announced (spot reclamation)
    zone: str = ""  # where the backend placed the group, once known
    size: str = ""  # what is billed, e.g. "2-4Gi" or an instance type, once known


@dataclass(frozen=True, slots=True)
class BackendGroup:
    """A group's identity and age without its status: what the GC sweep reads of every group, so that a
    sweep over 10,000 groups maps none of them to a ``BackendPod``."""

    namespace: str
    name: str
    uid: str
    group_id: str
    created: datetime | None = None


class PodLifecycle(Protocol):
    """What the pod controller asks of a backend. Every call is idempotent."""

    async def create_pod(self, pod: Pod, resources: PodResources) -> None: ...

    async def update_pod(self, pod: Pod, resources: PodResources) -> None: ...

    async def delete_pod(self, pod: Pod) -> None:
        """Start deleting the pod's group (asynchronous on ECI). No group is not an error."""
        ...

    async def backend_pod(self, pod: Pod) -> BackendPod | None:
        """The pod's group as the backend sees it now (may call the backend), or None when it has none."""
        ...

    async def backend_pods(self) -> list[BackendPod]:
        """Every group of this cluster and node (by tag), with its status, for adoption."""
        ...

    async def backend_groups(self) -> list[BackendGroup]:
        """Every group of this cluster and node (by tag), identity and age only, for garbage collection."""
        ...

    def status_changes(self) -> AsyncIterator[BackendPod]:
        """Groups whose status changed, from incremental polling plus a slow full resync."""
        ...

    async def delete_group(self, group_id: str) -> None:
        """Delete a group by id (garbage collection of groups whose pod is gone)."""
        ...

    async def ping(self) -> None:
        """A cheap backend call; raises when the backend is unreachable."""
        ...


class PodStreams(Protocol):
    """What the kubelet API asks of a backend."""

    def container_logs(self, pod: Pod, container: str, opts: LogOptions) -> AsyncIterator[bytes]:
        """Log bytes; with opts.follow keeps yielding until the container terminates or the caller stops."""
        ...

    async def exec(self, pod: Pod, container: str, command: list[str], *, stdin: bool, tty: bool) -> ExecSession: ...

    async def attach(self, pod: Pod, container: str, *, stdin: bool, tty: bool) -> ExecSession: ...

    async def port_forward(self, pod: Pod, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...

    async def pod_usage(self) -> list[PodUsage]:
        """Usage of every running pod on the node, batched and cached for one scrape interval."""
        ...


class PodLookup(Protocol):
    """The controller's view of the pods bound to this node: its watch cache, never the backend."""

    def cached_pod(self, namespace: str, name: str) -> Pod | None: ...

    def cached_pods(self) -> Iterable[Pod]:
        """Every cached pod, decoded one at a time as the result is iterated (the cache holds them as JSON)."""
        ...


class Backend(PodLifecycle, PodStreams, Protocol):
    """Everything the daemon asks of a backend: the lifecycle, the streams, its own start and stop, and
    the capacity it allows. The daemon builds the pod controller first and hands its watch cache to
    ``start``, so no second construction step is needed."""

    async def start(self, pods: PodLookup) -> None:
        """Open connections and start background work; ``pods`` is the watch cache the backend may read."""
        ...

    async def close(self) -> None:
        """Stop background work and close connections. Never deletes anything."""
        ...

    async def quota(self) -> dict[str, str]:
        """Node capacity the account allows (``cpu``, ``pods``; absent when unknown)."""
        ...

    def validate(self, pod: Pod) -> str | None:
        """Why the backend would refuse to run this pod (its create-time checks as a dry run, no backend call),
        or None when it would run it. The burst controller asks before it moves a pod to the virtual node."""
        ...
