"""The simulator's state: container group specs and their observed status, persisted as JSON."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

GroupStatus = Literal[
    "Pending",
    "Scheduling",
    "ScheduleFailed",
    "Running",
    "Succeeded",
    "Failed",
    "Restarting",
    "Updating",
    "Terminating",
    "Expired",
]
TERMINAL: frozenset[str] = frozenset({"Succeeded", "Failed", "Expired", "ScheduleFailed"})
MAX_EVENTS = 50


class Probe(BaseModel):
    kind: Literal["exec", "httpGet", "tcpSocket"]
    command: list[str] = []
    path: str = "/"
    port: int = 0
    scheme: str = "HTTP"
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3


class Mount(BaseModel):
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


class ContainerSpec(BaseModel):
    name: str
    image: str
    command: list[str] = []
    args: list[str] = []
    env: list[tuple[str, str]] = []
    working_dir: str = ""
    ports: list[tuple[str, int]] = []
    mounts: list[Mount] = []
    readiness: Probe | None = None
    liveness: Probe | None = None
    cpu: float = 0
    memory: float = 0
    stdin: bool = False
    tty: bool = False
    image_pull_policy: str = "IfNotPresent"
    post_start: list[str] = []  # lifecycle exec handlers
    pre_stop: list[str] = []


class ConfigFile(BaseModel):
    path: str
    content: str  # base64, as sent
    mode: int | None = None


class Volume(BaseModel):
    name: str
    type: str
    config_files: list[ConfigFile] = []
    default_mode: int | None = None
    medium: str = ""
    host_path: str = ""
    nfs_server: str = ""
    nfs_path: str = ""


class State(BaseModel):
    state: Literal["Waiting", "Running", "Terminated"] = "Waiting"
    reason: str = ""
    message: str = ""
    detail_status: str = ""
    exit_code: int | None = None
    signal: int | None = None
    start_time: float | None = None
    finish_time: float | None = None


class ContainerStatus(BaseModel):
    name: str
    image: str
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    current: State = Field(default_factory=State)
    previous: State | None = None


class Event(BaseModel):
    count: int = 1
    type: Literal["Normal", "Warning"] = "Normal"
    name: str = ""
    reason: str
    message: str
    first: float
    last: float


class Group(BaseModel):
    id: str
    seq: int
    name: str
    region: str
    zone: str
    vswitch: str = ""
    security_group: str = ""
    cpu: float
    memory: float
    instance_type: str = ""
    host_name: str = ""
    restart_policy: str = "Always"
    spot_strategy: str = "NoSpot"
    spot_price_limit: float | None = None
    tags: list[tuple[str, str]] = []
    containers: list[ContainerSpec] = []
    init_containers: list[ContainerSpec] = []
    volumes: list[Volume] = []
    grace: float = 30
    active_deadline: float | None = None
    client_token: str = ""
    token_digest: str = ""
    dns: dict[str, list[str]] = {}
    status: str = "Scheduling"
    reason: str = ""
    message: str = ""
    created: float = Field(default_factory=time.time)
    started: float | None = None
    succeeded_time: float | None = None
    failed_time: float | None = None
    expired_time: float | None = None
    changed: float = Field(default_factory=time.time)
    events: list[Event] = []
    statuses: list[ContainerStatus] = []
    init_statuses: list[ContainerStatus] = []
    intranet_ip: str = "127.0.0.1"
    generation: int = 0
    restarts_requested: int = 0

    def status_of(self, name: str) -> ContainerStatus | None:
        for cs in [*self.statuses, *self.init_statuses]:
            if cs.name == name:
                return cs
        return None

    def spec_of(self, name: str) -> ContainerSpec | None:
        for spec in [*self.containers, *self.init_containers]:
            if spec.name == name:
                return spec
        return None

    def add_event(self, reason: str, message: str, *, warning: bool = False, now: float | None = None) -> None:
        """Record an event; a repeat of the last same (type, reason, message) bumps Count like Kubernetes."""
        now = time.time() if now is None else now
        kind: Literal["Normal", "Warning"] = "Warning" if warning else "Normal"
        for ev in self.events:
            if ev.type == kind and ev.reason == reason and ev.message == message:
                ev.count += 1
                ev.last = now
                self.changed = now
                return
        self.events.append(Event(type=kind, name=self.name, reason=reason, message=message, first=now, last=now))
        if len(self.events) > MAX_EVENTS:
            del self.events[: len(self.events) - MAX_EVENTS]
        self.changed = now
