"""The "virtual" runtime: the same state machine with no processes, cheap enough for 10,000+ groups.

Per group it keeps only timers on the event loop (no tasks). What a container does is read from its spec:
- Command/Arg ending in ``exit N`` (e.g. ``sh -c "exit 3"``), or the command ``true``/``false``, ends it
  right after start with that code; ``VSIM_EXIT_AFTER`` (seconds) and ``VSIM_EXIT_CODE`` in its env end it
  later. Anything else runs until stopped.
- An image whose name contains ``nonexistent`` cannot be pulled (Waiting/ErrImagePull).
Logs, exec output and metrics are synthetic and deterministic.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from vk_sandbox.eci.engine import Engine, should_restart
from vk_sandbox.eci.model import ContainerSpec, ContainerStatus, Group, State

_EXIT_RE = re.compile(r"(?:^|[;&|\s])exit\s+(\d+)\s*$")


def planned_exit(spec: ContainerSpec) -> tuple[float, int] | None:
    """(seconds after start, exit code) when the spec says the container ends by itself."""
    env = dict(spec.env)
    argv = [*spec.command, *spec.args]
    if "VSIM_EXIT_AFTER" in env:
        try:
            return float(env["VSIM_EXIT_AFTER"]), int(env.get("VSIM_EXIT_CODE", "0"))
        except ValueError:
            return None
    if argv in (["true"], ["/bin/true"]):
        return 0.0, 0
    if argv in (["false"], ["/bin/false"]):
        return 0.0, 1
    if argv:
        m = _EXIT_RE.search(argv[-1])
        if m:
            return 0.0, int(m.group(1)) % 256
    return None


class VirtualRuntime:
    def __init__(self) -> None:
        self.engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def _eng(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def keeps_running_across_restart(self) -> bool:
        return True

    def start(self, group: Group) -> None:
        eng = self._eng()
        generation = group.generation
        restarts = group.restarts_requested

        def pulled() -> None:
            if group.generation != generation or group.restarts_requested != restarts:
                return
            now = time.time()
            for cs, spec in zip(group.init_statuses, group.init_containers, strict=True):
                plan = planned_exit(spec)
                code = plan[1] if plan else 0
                cs.current = State(
                    state="Terminated",
                    reason="Completed" if code == 0 else "Error",
                    exit_code=code,
                    start_time=now,
                    finish_time=now,
                )
                if code != 0 and group.restart_policy == "Never":
                    eng.init_failed(group, spec.name)
                    return
            for cs, spec in zip(group.statuses, group.containers, strict=True):
                if "nonexistent" in spec.image:
                    cs.current = State(state="Waiting", reason="ErrImagePull", message=f"image {spec.image} not found")
                    group.add_event("Failed", f"Failed to pull image {spec.image}: not found", warning=True)
                    continue
                self._run(group, cs, spec, now)
            if all(cs.started for cs in group.statuses):
                eng.containers_started(group)
            eng.save(group)

        eng.after(group, eng.latency.pull, pulled)

    def _run(self, group: Group, cs: ContainerStatus, spec: ContainerSpec, now: float) -> None:
        eng = self._eng()
        cs.current = State(state="Running", start_time=now)
        cs.started = True
        cs.ready = True
        plan = planned_exit(spec)
        if plan is not None:
            delay, code = plan
            eng.after(group, max(delay, 0.001), lambda: self._exit(group, cs, spec, code, 0))

    def _exit(self, group: Group, cs: ContainerStatus, spec: ContainerSpec, code: int, signal: int) -> None:
        eng = self._eng()
        if cs.current.state != "Running":
            return
        now = time.time()
        cs.current = State(
            state="Terminated",
            reason="Completed" if code == 0 else "Error",
            exit_code=code,
            signal=signal or None,
            start_time=cs.current.start_time,
            finish_time=now,
        )
        cs.ready = False
        if should_restart(group.restart_policy, code) and group.status not in ("Terminating",):
            cs.restart_count += 1
            delay = eng.latency.backoff(cs.restart_count)
            group.add_event("BackOff", f"Back-off restarting failed container {cs.name}", warning=code != 0)
            cs.previous = cs.current
            cs.current = State(state="Waiting", reason="CrashLoopBackOff", message=f"back-off {delay:g}s")

            def again() -> None:
                if cs.current.state == "Waiting" and group.status not in ("Terminating",):
                    self._run(group, cs, spec, time.time())
                    eng.save(group)

            eng.after(group, delay, again)
        elif all(s.current.state == "Terminated" for s in group.statuses):
            eng.containers_finished(group)
        eng.save(group)

    async def stop(self, group: Group, grace: float) -> None:
        now = time.time()
        for cs in group.statuses:
            if cs.current.state == "Running":
                cs.previous = cs.current
                cs.current = State(
                    state="Terminated",
                    reason="Completed",
                    exit_code=0,
                    start_time=cs.current.start_time,
                    finish_time=now,
                )
            cs.ready = False
        self._eng().save(group)

    def forget(self, group: Group) -> None:
        return None

    def crash(self, group: Group, container: str, exit_code: int) -> None:
        for cs, spec in zip(group.statuses, group.containers, strict=True):
            if cs.name == container:
                self._exit(group, cs, spec, exit_code, 9 if exit_code == 137 else 0)

    def logs(self, group: Group, container: str, previous: bool) -> list[tuple[float, str, str]]:
        cs = group.status_of(container)
        if cs is None:
            return []
        state = cs.previous if previous else cs.current
        if state is None or state.start_time is None:
            return []
        lines = [(state.start_time, "stdout", f"virtual container {container} started")]
        spec = group.spec_of(container)
        if spec is not None and spec.command[:1] == ["echo"]:
            lines.append((state.start_time, "stdout", " ".join([*spec.command[1:], *spec.args])))
        if state.finish_time is not None:
            lines.append((state.finish_time, "stdout", f"virtual container {container} exited {state.exit_code}"))
        return lines

    def metrics_sample(self, group: Group) -> dict[str, Any]:
        now = time.time()
        containers = []
        for cs in group.statuses:
            running = cs.current.state == "Running"
            seed = zlib.crc32(f"{group.id}/{cs.name}".encode())
            nano = (seed % 50_000_000) + 1_000_000 if running else 0
            mem = (seed % (64 << 20)) + (8 << 20) if running else 0
            age = now - (cs.current.start_time or now)
            containers.append((cs.name, nano, int(age * nano), mem))
        return {"timestamp": now, "containers": containers}

    async def exec_sync(self, group: Group, container: str, command: list[str], timeout: float) -> tuple[str, int]:
        if command[:1] == ["echo"]:
            return " ".join(command[1:]) + "\n", 0
        planned = planned_exit(ContainerSpec(name="x", image="x", command=command))
        return "", planned[1] if planned else 0

    async def exec_stream(
        self,
        group: Group,
        container: str,
        command: list[str],
        tty: bool,
        stdin: bool,
        recv: Callable[[], Awaitable[tuple[int, bytes] | None]],
        send: Callable[[int, bytes], Awaitable[None]],
    ) -> int:
        if command[:1] == ["cat"]:
            # cat echoes stdin until EOF: enough to prove the channels without a process.
            while True:
                msg = await recv()
                if msg is None:
                    return 0
                channel, data = msg
                if channel == 0:
                    await send(1, data)
                elif channel == 255:
                    return 0
        output, code = await self.exec_sync(group, container, command, 10)
        if output:
            await send(1, output.encode())
        return code

    async def close(self) -> None:
        return None
