"""The container group state machine shared by both runtimes: provisioning, delete, restart, update,
deadlines, spot reclamation and expiry. Runtimes drive the container states and report back here."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from vk_provider.aio import create_guarded_task
from vk_sandbox.eci.faults import Faults
from vk_sandbox.eci.model import TERMINAL, ContainerStatus, Group, State
from vk_sandbox.eci.specs import spec_key
from vk_sandbox.eci.store import Store

log = structlog.get_logger("vk_sandbox.eci")


@dataclass(frozen=True)
class Latency:
    """Delays of the simulated service, in seconds."""

    schedule: float  # Scheduling -> Pending
    pull: float  # Pending (image pull) -> containers start
    delete: float  # Terminating -> gone, after the processes stopped
    backoff_base: float  # container restart back-off: base * 2**n ...
    backoff_cap: float  # ... capped here
    jitter: float = 0.0  # +- this share of each delay

    def jittered(self, value: float) -> float:
        if not self.jitter:
            return value
        return max(0.0, value * (1 + random.uniform(-self.jitter, self.jitter)))

    def backoff(self, restarts: int) -> float:
        return float(min(self.backoff_cap, self.backoff_base * (2 ** max(0, restarts - 1))))


# "fast" keeps tests quick; "realistic" is close to published ECI startup (about 10-30 s with a pull)
# and the Kubernetes crash back-off (10 s doubling to 5 minutes).
LATENCY_PROFILES: dict[str, Latency] = {
    "fast": Latency(schedule=0.02, pull=0.03, delete=0.05, backoff_base=0.2, backoff_cap=1.6),
    "realistic": Latency(schedule=3.0, pull=12.0, delete=5.0, backoff_base=10.0, backoff_cap=300.0, jitter=0.3),
}


class Runtime(Protocol):
    """What runs the containers of a group. It reports container changes back to the engine."""

    def attach(self, engine: Engine) -> None: ...

    def start(self, group: Group) -> None:
        """Start the init containers then the containers; report through the engine. Must not block."""

    async def stop(self, group: Group, grace: float) -> None:
        """Stop every container: SIGTERM, ``grace`` seconds, SIGKILL. Return when all have exited."""

    def forget(self, group: Group) -> None:
        """The group is gone: drop its files and bookkeeping."""

    def crash(self, group: Group, container: str, exit_code: int) -> None: ...

    def logs(self, group: Group, container: str, previous: bool) -> list[tuple[float, str, str]]:
        """(time, stream, line) of the current or previous instance."""

    def metrics_sample(self, group: Group) -> dict[str, Any]: ...

    async def exec_sync(self, group: Group, container: str, command: list[str], timeout: float) -> tuple[str, int]: ...

    async def exec_stream(
        self,
        group: Group,
        container: str,
        command: list[str],
        tty: bool,
        stdin: bool,
        recv: Callable[[], Awaitable[tuple[int, bytes] | None]],
        send: Callable[[int, bytes], Awaitable[None]],
    ) -> int: ...

    def keeps_running_across_restart(self) -> bool:
        """False when a simulator restart loses the running containers (real processes)."""

    async def close(self) -> None: ...


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


class Engine:
    def __init__(self, store: Store, runtime: Runtime, faults: Faults, latency: Latency) -> None:
        self.store = store
        self.runtime = runtime
        self.faults = faults
        self.latency = latency
        self.groups: dict[str, Group] = {}
        self.by_token: dict[str, str] = {}
        self.seq = 0
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self._ops: dict[str, asyncio.Task[None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self.stopping: set[str] = set()
        self.zone_for: Callable[[str], str] = lambda vswitch: ""
        self.tag_index: dict[tuple[str, str], set[str]] = {}
        runtime.attach(self)

    # ---- lifecycle of the engine itself -------------------------------------------------------

    async def open(self) -> None:
        now = time.time()
        for group in self.store.load():
            self.groups[group.id] = group
            self.index_tags(group)
            self.seq = max(self.seq, group.seq)
            if group.client_token:
                self.by_token[group.client_token] = group.id
            self._recover(group, now)
        self._flusher = create_guarded_task(self._flush_loop(), name="eci-sim-store-flush")

    def _recover(self, group: Group, now: float) -> None:
        """Bring a group loaded from disk back to life after a simulator restart."""
        if group.status == "Terminating":
            self._drop(group)
            return
        if group.status in TERMINAL:
            return
        if self.runtime.keeps_running_across_restart():
            if group.status == "Scheduling":
                self._provisioned(group, self.zone_for, False)
            else:
                self.runtime.start(group)
            return
        if group.status == "Scheduling":  # nothing ran yet: just carry on provisioning
            self._provisioned(group, self.zone_for, False)
            return
        # Real processes did not survive the restart: say so, as a node loss would.
        for cs in [*group.statuses, *group.init_statuses]:
            if cs.current.state != "Terminated":
                cs.previous = cs.current
                cs.current = State(
                    state="Terminated",
                    reason="Error",
                    message="the simulator restarted and the process is gone",
                    exit_code=137,
                    start_time=cs.current.start_time,
                    finish_time=now,
                )
                cs.ready = False
        group.add_event(
            "SimulatorRestarted", "The simulator restarted; the group's processes are gone.", warning=True, now=now
        )
        self.set_status(group, "Failed", reason="SimulatorRestarted", message="processes lost in a simulator restart")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            await self.store.flush()

    async def close(self) -> None:
        self._closing = True
        for handles in self._timers.values():
            for h in handles:
                h.cancel()
        self._timers.clear()
        for task in list(self._ops.values()):
            task.cancel()
        for task in list(self._ops.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.runtime.close()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.store.flush()

    # ---- helpers ------------------------------------------------------------------------------

    def index_tags(self, group: Group, *, remove: bool = False) -> None:
        """Keep ``tag_index`` ((key, value) -> group ids) in step, so tag filters need no full scan."""
        for tag in group.tags:
            ids = self.tag_index.setdefault((tag[0], tag[1]), set())
            if remove:
                ids.discard(group.id)
                if not ids:
                    del self.tag_index[(tag[0], tag[1])]
            else:
                ids.add(group.id)

    def save(self, group: Group) -> None:
        group.changed = time.time()
        if group.id in self.groups:
            self.store.save(group)

    def _after(self, group: Group, delay: float, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handles = self._timers.setdefault(group.id, [])
        handles[:] = [h for h in handles if not h.cancelled() and h.when() > loop.time()]

        def fire() -> None:
            if group.id in self.groups and not self._closing:
                fn()

        handles.append(loop.call_later(self.latency.jittered(delay), fire))

    def after(self, group: Group, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` later unless the group is gone or its timers are reset (used by runtimes)."""
        self._after(group, delay, fn)

    def _cancel_timers(self, group: Group) -> None:
        for h in self._timers.pop(group.id, []):
            h.cancel()

    def set_status(self, group: Group, status: str, *, reason: str = "", message: str = "") -> None:
        if group.status == status and not reason:
            return
        now = time.time()
        group.status = status
        group.reason = reason
        group.message = message
        if status == "Succeeded":
            group.succeeded_time = now
        elif status in ("Failed", "ScheduleFailed"):
            group.failed_time = now
        elif status == "Expired":
            group.expired_time = now
        if status in TERMINAL:
            for cs in group.statuses:
                cs.ready = False
            self._cancel_timers(group)
        self.save(group)

    def new_statuses(self, group: Group) -> None:
        group.statuses = [ContainerStatus(name=c.name, image=c.image) for c in group.containers]
        group.init_statuses = [ContainerStatus(name=c.name, image=c.image) for c in group.init_containers]

    # ---- reports from the runtime -------------------------------------------------------------

    def containers_started(self, group: Group) -> None:
        """Every container has started at least once: the group is Running."""
        if group.status in ("Pending", "Scheduling", "Restarting", "Updating"):
            if group.started is None:
                group.started = time.time()
            self.set_status(group, "Running")

    def containers_finished(self, group: Group) -> None:
        """No container runs and none will restart: the group ends by the exit codes."""
        if group.status in TERMINAL or group.status in ("Terminating", "Restarting", "Updating"):
            return
        if group.id in self.stopping:
            return
        codes = [cs.current.exit_code for cs in group.statuses]
        if all(c == 0 for c in codes):
            self.set_status(group, "Succeeded")
        else:
            self.set_status(group, "Failed", reason="Error", message="a container exited with a non-zero code")

    def init_failed(self, group: Group, name: str) -> None:
        self.set_status(group, "Failed", reason="InitContainerFailed", message=f"init container {name} failed")

    # ---- API operations -----------------------------------------------------------------------

    def create(self, group: Group, zone_for: Callable[[str], str], *, random_order: bool = False) -> Group:
        self.seq += 1
        group.seq = self.seq
        self.new_statuses(group)
        self.groups[group.id] = group
        self.index_tags(group)
        if group.client_token:
            self.by_token[group.client_token] = group.id
        group.add_event("Scheduling", "The container group is being scheduled.")
        self.save(group)
        self._after(group, self.latency.schedule, lambda: self._provisioned(group, zone_for, random_order))
        return group

    def _provisioned(self, group: Group, zone_for: Callable[[str], str], random_order: bool) -> None:
        """Place the group: try its vSwitches in order (or shuffled) and take the first with stock."""
        candidates = [v for v in group.vswitch.split(",") if v] or [""]
        if random_order:
            random.shuffle(candidates)
        spec = spec_key(group.cpu, group.memory)
        why = ""
        for vswitch in candidates:
            zone = group.zone or zone_for(vswitch)
            reason = self.faults.no_stock(zone, vswitch, spec, spot=group.spot_strategy != "NoSpot")
            if reason is None:
                group.vswitch, group.zone = vswitch, zone
                group.add_event("Scheduled", f"Successfully assigned the container group to zone {zone}.")
                self.set_status(group, "Pending")
                self._start_runtime(group)
                return
            why = reason
        group.add_event(
            "NoStock", f"Create ECI failed because the specified instance is out of stock ({why}).", warning=True
        )
        group.zone = group.zone or zone_for(candidates[0])
        self.set_status(group, "ScheduleFailed", reason="NoStock", message=f"out of stock: {why}")

    def _start_runtime(self, group: Group) -> None:
        for cs in group.statuses:
            cs.started = False  # Running again only once every container has started again
        if group.active_deadline:
            # Counted from the group's first start, like a pod's activeDeadlineSeconds; restarts do not reset it.
            now = time.time()
            remaining = (group.started or now) + group.active_deadline - now
            self._after(group, max(0.0, remaining), lambda: self._deadline(group))
        self.runtime.start(group)

    def _deadline(self, group: Group) -> None:
        if group.status in TERMINAL or group.status == "Terminating":
            return
        msg = f"The container group was active longer than the specified deadline ({group.active_deadline:g}s)."
        group.add_event("DeadlineExceeded", msg, warning=True)

        async def run() -> None:
            await self.stop_quietly(group, group.grace)
            self.set_status(group, "Failed", reason="DeadlineExceeded", message=msg)

        self._op(group, run())

    async def stop_quietly(self, group: Group, grace: float) -> None:
        """Stop the containers without the exits deciding the group's end (the caller decides)."""
        self.stopping.add(group.id)
        try:
            await self.runtime.stop(group, grace)
        finally:
            self.stopping.discard(group.id)

    def _op(self, group: Group, coro: Any) -> None:
        old = self._ops.get(group.id)
        if old is not None and not old.done():
            old.cancel()
        task = create_guarded_task(coro, name=f"eci-sim-op-{group.id}")
        self._ops[group.id] = task
        task.add_done_callback(lambda t: self._ops.pop(group.id, None) if self._ops.get(group.id) is t else None)

    def delete(self, group: Group) -> None:
        if group.status == "Terminating" and group.id in self._ops:
            return
        self._cancel_timers(group)
        group.add_event("Killing", "The container group is being deleted.")
        prior_terminal = group.status in TERMINAL
        self.set_status(group, "Terminating")

        async def run() -> None:
            if not prior_terminal:
                await self.runtime.stop(group, group.grace)
            await asyncio.sleep(self.latency.jittered(self.latency.delete))
            self._drop(group)

        self._op(group, run())

    def _drop(self, group: Group) -> None:
        self._cancel_timers(group)
        if self.groups.pop(group.id, None) is not None:
            self.index_tags(group, remove=True)
        if group.client_token and self.by_token.get(group.client_token) == group.id:
            del self.by_token[group.client_token]
        self.store.remove(group.id)
        self.runtime.forget(group)

    def restart(self, group: Group) -> None:
        self._cancel_timers(group)
        group.add_event("Restarting", "The container group is restarting.")
        group.restarts_requested += 1
        self.set_status(group, "Restarting")

        async def run() -> None:
            await self.runtime.stop(group, group.grace)
            for cs in group.statuses:
                cs.restart_count += 1
            self._start_runtime(group)

        self._op(group, run())

    def update(self, group: Group, apply: Callable[[Group], None]) -> None:
        self._cancel_timers(group)
        group.add_event("Updating", "The container group is being updated.")
        self.set_status(group, "Updating")

        async def run() -> None:
            await self.runtime.stop(group, group.grace)
            old = {cs.name: cs for cs in group.statuses}
            self.index_tags(group, remove=True)
            apply(group)
            self.index_tags(group)
            group.generation += 1
            self.new_statuses(group)
            for cs in group.statuses:
                if cs.name in old:
                    cs.restart_count = old[cs.name].restart_count
                    cs.previous = old[cs.name].current
            self._start_runtime(group)

        self._op(group, run())

    # ---- one-shot faults ----------------------------------------------------------------------

    def reclaim_spot(self, group: Group, notice: float) -> None:
        """Spot reclamation: a warning event now, then the instance is released (status Expired).

        The real message is "Spot ECI will be released in N minutes."; a notice that is not a whole number of
        minutes (tests use seconds) is said in seconds, which the daemon reads the same way."""
        when = f"{notice / 60:g} minutes" if notice >= 60 and notice % 60 == 0 else f"{notice:g} seconds"
        group.add_event("SpotToBeReleased", f"Spot ECI will be released in {when}.", warning=True, now=time.time())
        self.save(group)

        async def run() -> None:
            await asyncio.sleep(notice)
            await self.stop_quietly(group, min(group.grace, 2.0))
            group.add_event("SpotReleased", "The spot instance was reclaimed and released.", warning=True)
            self.set_status(group, "Expired", reason="SpotReclaimed", message="the spot instance was reclaimed")

        self._op(group, run())

    def expire(self, group: Group) -> None:
        group.add_event("Expired", "The container group expired.", warning=True)

        async def run() -> None:
            await self.stop_quietly(group, 0)
            self.set_status(group, "Expired", reason="Expired", message="the container group expired")

        self._op(group, run())
