"""The "process" runtime: each container is a real local process group.

- Init containers run in order, then the containers run concurrently, each under its restart policy.
- Volumes live under ``<dir>/groups/<id>/volumes/<name>``. With mount namespaces (``unshare --mount``, as
  root) each container sees them bind-mounted at their mount paths and nobody else does. Without
  namespaces the fallback is a symlink at the mount path when that path is free (see docs/sandbox-eci.md).
- stdout/stderr go, line by line with a timestamp, to ``logs/<container>/<instance>.log``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import pty
import shlex
import shutil
import signal
import struct
import sys
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from vk_provider.aio import create_guarded_task
from vk_sandbox.eci.engine import Engine, should_restart
from vk_sandbox.eci.model import ContainerSpec, ContainerStatus, Group, Probe, State

log = structlog.get_logger("vk_sandbox.eci.process")

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LINE_LIMIT = 1 << 20
_SETPRIV = shutil.which("setpriv")


def _die_with_simulator(argv: list[str]) -> list[str]:
    """Have the kernel kill the process if the simulator dies (even by SIGKILL), so none is left behind."""
    if _SETPRIV is None or sys.platform != "linux":
        return argv
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def image_entrypoint(spec: ContainerSpec, www: Path) -> tuple[list[str], list[str]] | None:
    """(entrypoint, default args) of the few images we know; None for an image we cannot "pull"."""
    base = spec.image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    port = next((p for proto, p in spec.ports if proto == "TCP"), 8080 if base == "nginx-unprivileged" else 80)
    if base in ("busybox", "alpine", "ubuntu", "debian"):
        return [], ["sh"]
    if base in ("nginx", "nginx-unprivileged", "httpd"):
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(www)], []
    if base in ("python", "python3"):
        return [], [sys.executable]
    return None


@dataclass
class _Instance:
    proc: asyncio.subprocess.Process
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    killed_by_us: bool = False


@dataclass
class _GroupRun:
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    instances: dict[str, _Instance] = field(default_factory=dict)
    created_paths: list[Path] = field(default_factory=list)


class ProcessRuntime:
    def __init__(self, directory: Path) -> None:
        self.root = directory / "groups"
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine: Engine | None = None
        self._runs: dict[str, _GroupRun] = {}
        self._namespaces: bool | None = None
        self._samples: dict[str, tuple[float, int]] = {}
        self._children: set[asyncio.subprocess.Process] = set()

    # ---- plumbing -----------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def _eng(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def keeps_running_across_restart(self) -> bool:
        return False

    async def _spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """Start a child; every child is remembered until :meth:`_reap` has waited for it."""
        proc = await asyncio.create_subprocess_exec(*argv, **kwargs)
        self._children.add(proc)
        return proc

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        """Kill the child's process group if it still runs and wait for it. The wait is shielded, so a
        second cancellation cannot drop a running child (asyncio would warn about it when collected)."""
        if proc.returncode is None:
            self._signal(proc.pid, signal.SIGKILL)
        try:
            await asyncio.shield(proc.wait())
        finally:
            self._children.discard(proc)

    def group_dir(self, group: Group) -> Path:
        return self.root / group.id

    async def namespaces_available(self) -> bool:
        """Whether ``unshare --mount`` works here (root, no seccomp block). Checked once."""
        if self._namespaces is None:
            if os.geteuid() != 0 or shutil.which("unshare") is None:
                self._namespaces = False
            else:
                try:
                    proc = await self._spawn(
                        "unshare", "--mount", "--propagation", "private", "true",
                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                    )  # fmt: skip
                    await self._reap(proc)
                    self._namespaces = proc.returncode == 0
                except OSError:
                    self._namespaces = False
        return self._namespaces

    # ---- start --------------------------------------------------------------------------------

    def start(self, group: Group) -> None:
        run = self._runs.setdefault(group.id, _GroupRun())
        run.stopping = False
        run.instances.clear()
        run.task = create_guarded_task(self._run_group(group, run), name=f"eci-sim-group-{group.id}")

    def _prepare_volumes(self, group: Group) -> Path:
        gdir = self.group_dir(group)
        vdir = gdir / "volumes"
        for vol in group.volumes:
            target = vdir / vol.name
            if vol.type == "HostPathVolume":
                continue
            if vol.type == "ConfigFileVolume":
                # Re-materialise every start so an update's new content shows.
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True, exist_ok=True)
                for f in vol.config_files:
                    path = target / f.path
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(base64.b64decode(f.content))
                    mode = f.mode if f.mode is not None else vol.default_mode
                    path.chmod(mode if mode is not None else 0o644)
            else:
                target.mkdir(parents=True, exist_ok=True)
        www = gdir / "www"
        www.mkdir(parents=True, exist_ok=True)
        (www / "index.html").write_text(f"<h1>Welcome ({group.name}, simulated)</h1>\n")
        return gdir

    def _source(self, group: Group, name: str, sub_path: str) -> Path:
        vol = next(v for v in group.volumes if v.name == name)
        base = Path(vol.host_path) if vol.type == "HostPathVolume" else self.group_dir(group) / "volumes" / name
        return base / sub_path if sub_path else base

    async def _run_group(self, group: Group, run: _GroupRun) -> None:
        eng = self._eng()
        await asyncio.sleep(eng.latency.jittered(eng.latency.pull))
        await asyncio.to_thread(self._prepare_volumes, group)
        for spec, cs in zip(group.init_containers, group.init_statuses, strict=True):
            while True:
                code = await self._run_instance(group, run, spec, cs, init=True)
                if code == 0 or run.stopping:
                    break
                if code is None or group.restart_policy == "Never":
                    eng.init_failed(group, spec.name)
                    return
                cs.restart_count += 1
                await asyncio.sleep(eng.latency.backoff(cs.restart_count))
            if run.stopping:
                return
        loops = [
            asyncio.create_task(self._container_loop(group, run, spec, cs), name=f"eci-sim-{group.id}-{spec.name}")
            for spec, cs in zip(group.containers, group.statuses, strict=True)
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        if not run.stopping:
            eng.containers_finished(group)

    async def _container_loop(self, group: Group, run: _GroupRun, spec: ContainerSpec, cs: ContainerStatus) -> None:
        eng = self._eng()
        while not run.stopping:
            code = await self._run_instance(group, run, spec, cs, init=False)
            if code is None:  # cannot start at all (image not pullable): stays Waiting
                await asyncio.Event().wait()
            if run.stopping or not should_restart(group.restart_policy, code or 0):
                return
            cs.restart_count += 1
            delay = eng.latency.backoff(cs.restart_count)
            cs.previous = cs.current
            cs.current = State(state="Waiting", reason="CrashLoopBackOff", message=f"back-off {delay:g}s restarting")
            group.add_event("BackOff", f"Back-off restarting failed container {spec.name}", warning=True)
            eng.save(group)
            await asyncio.sleep(delay)

    def _argv(self, group: Group, spec: ContainerSpec, env: dict[str, str]) -> list[str] | None:
        if spec.command:
            argv = [*spec.command, *spec.args]
        else:
            known = image_entrypoint(spec, self.group_dir(group) / "www")
            if known is None:
                return None
            entry, default = known
            argv = [*entry, *(spec.args or default)]
        if argv and not os.path.isabs(argv[0]):
            found = shutil.which(argv[0], path=env["PATH"])
            if found is None:
                return []
            argv[0] = found
        return argv

    def env_for(self, group: Group, spec: ContainerSpec) -> dict[str, str]:
        env = {
            "PATH": f"{os.path.dirname(sys.executable)}:{BASE_PATH}",
            "HOME": "/root",
            "HOSTNAME": group.host_name or group.name,
        }
        env.update(dict(spec.env))
        return env

    def _workdir(self, group: Group, run: _GroupRun, spec: ContainerSpec) -> str:
        if not spec.working_dir:
            return str(self.group_dir(group))
        wd = Path(spec.working_dir)
        if not wd.exists():
            self._make_path(run, wd, directory=True)
        return str(wd)

    def _make_path(self, run: _GroupRun, path: Path, *, directory: bool) -> None:
        """Create a mount point or working dir on the host, remembering it so forget() removes it."""
        missing = []
        p = path if directory else path.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        p = path if directory else path.parent
        p.mkdir(parents=True, exist_ok=True)
        run.created_paths.extend(reversed(missing))
        if not directory and not path.exists():
            path.touch()
            run.created_paths.append(path)

    async def _wrap_mounts(self, group: Group, run: _GroupRun, spec: ContainerSpec, argv: list[str]) -> list[str]:
        if not spec.mounts:
            return argv
        namespaces = await self.namespaces_available()
        return await asyncio.to_thread(self._mount_argv, group, run, spec, argv, namespaces)

    def _mount_argv(
        self, group: Group, run: _GroupRun, spec: ContainerSpec, argv: list[str], namespaces: bool
    ) -> list[str]:
        if namespaces:
            lines = ["set -e"]
            for m in spec.mounts:
                src = self._source(group, m.name, m.sub_path)
                target = Path(m.mount_path)
                if not target.exists():
                    self._make_path(run, target, directory=not src.is_file())
                # Again just before mounting: another group that created the same host path may have removed it
                # meanwhile (every pod mounts /var/run/secrets/kubernetes.io/serviceaccount).
                quoted = shlex.quote(str(target))
                if src.is_file():
                    lines.append(f"mkdir -p {shlex.quote(str(target.parent))}; [ -e {quoted} ] || : > {quoted}")
                else:
                    lines.append(f"mkdir -p {quoted}")
                lines.append(f"mount --bind {shlex.quote(str(src))} {quoted}")
                if m.read_only:
                    lines.append(f"mount -o remount,bind,ro {quoted}")
            lines.append('exec "$@"')
            script = self.group_dir(group) / f"mounts-{spec.name}.sh"
            script.write_text("\n".join(lines) + "\n")
            return ["unshare", "--mount", "--propagation", "private", "/bin/sh", str(script), *argv]
        # Fallback without namespaces: a symlink where the mount path is free (documented limitation).
        for m in spec.mounts:
            src = self._source(group, m.name, m.sub_path)
            target = Path(m.mount_path)
            if target.is_symlink() and target.resolve() == src.resolve():
                continue
            if target.exists() or target.is_symlink():
                group.add_event(
                    "FailedMount",
                    f"{m.mount_path} exists and mount namespaces are unavailable; volume {m.name} is not visible there",
                    warning=True,
                )
                continue
            self._make_path(run, target.parent, directory=True)
            target.symlink_to(src)
            run.created_paths.append(target)
        return argv

    def _log_path(self, group: Group, name: str, instance: int) -> Path:
        return self.group_dir(group) / "logs" / name / f"{instance}.log"

    def _instances(self, group: Group, name: str) -> list[Path]:
        d = self.group_dir(group) / "logs" / name
        if not d.is_dir():
            return []
        return sorted(d.glob("*.log"), key=lambda p: int(p.stem))

    async def _run_instance(
        self, group: Group, run: _GroupRun, spec: ContainerSpec, cs: ContainerStatus, *, init: bool
    ) -> int | None:
        """Run one instance to its end; the exit code, or None when it cannot start at all."""
        eng = self._eng()
        env = self.env_for(group, spec)
        argv = self._argv(group, spec, env)
        if argv is None:
            cs.current = State(
                state="Waiting",
                reason="ErrImagePull",
                message=f"Failed to pull image {spec.image}: not found in the simulator's image table",
            )
            group.add_event("Failed", f"Failed to pull image {spec.image}: image not found", warning=True)
            eng.save(group)
            return None
        group.add_event("Pulled", f"Container image {spec.image} present on machine")
        now = time.time()
        if not argv:
            cs.previous = cs.current if cs.current.state == "Terminated" else cs.previous
            cs.current = State(
                state="Terminated",
                reason="StartError",
                message="executable file not found in $PATH",
                exit_code=128,
                start_time=now,
                finish_time=now,
            )
            group.add_event("Failed", f"Error: container {spec.name}: executable file not found", warning=True)
            eng.save(group)
            return 128
        cwd = await asyncio.to_thread(self._workdir, group, run, spec)
        argv = _die_with_simulator(await self._wrap_mounts(group, run, spec, argv))
        logfile = self._log_path(group, spec.name, len(self._instances(group, spec.name)))
        logfile.parent.mkdir(parents=True, exist_ok=True)
        proc = await self._spawn(
            *argv,
            stdin=asyncio.subprocess.PIPE if spec.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        inst = _Instance(proc)
        run.instances[spec.name] = inst
        if cs.current.state == "Terminated":
            cs.previous = cs.current
        elif cs.current.state == "Waiting" and cs.previous is None and cs.restart_count:
            pass
        cs.current = State(state="Running", start_time=now)
        cs.started = True
        cs.ready = not init and spec.readiness is None
        group.add_event("Started", f"Started container {spec.name}")
        if not init and all(s.started for s in group.statuses):
            eng.containers_started(group)
        eng.save(group)
        probes = [] if init else self._start_probes(group, run, spec, cs, inst)
        if spec.post_start and not init:
            probes.append(asyncio.create_task(self._post_start(group, spec)))
        with logfile.open("ab") as out:
            pumps = [
                asyncio.create_task(self._pump(proc.stdout, out, b"stdout")),
                asyncio.create_task(self._pump(proc.stderr, out, b"stderr")),
            ]
            try:
                rc = await proc.wait()
                await asyncio.gather(*pumps)
            finally:
                for t in probes:
                    t.cancel()
                await self._reap(proc)  # cancelled (simulator stopping): never leave a process behind
                for t in pumps:
                    t.cancel()
                await asyncio.gather(*pumps, *probes, return_exceptions=True)
                inst.exited.set()
        sig = -rc if rc < 0 else 0
        code = 128 + sig if sig else rc
        cs.current = State(
            state="Terminated",
            reason="Completed" if code == 0 else "Error",
            exit_code=code,
            signal=sig or None,
            start_time=now,
            finish_time=time.time(),
        )
        cs.ready = False
        eng.save(group)
        return code

    async def _pump(self, stream: asyncio.StreamReader | None, out: Any, name: bytes) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: take what is buffered
                line = await stream.read(_LINE_LIMIT)
            if not line:
                return
            if not line.endswith(b"\n"):
                line += b"\n"
            out.write(f"{time.time():.6f} ".encode() + name + b" " + line)
            out.flush()

    async def _post_start(self, group: Group, spec: ContainerSpec) -> None:
        output, code = await self.exec_sync(group, spec.name, spec.post_start, 30)
        if code != 0:
            group.add_event(
                "FailedPostStartHook",
                f"PostStart hook of {spec.name} exited {code}: {output.strip()[:200]}",
                warning=True,
            )
            self._eng().save(group)

    # ---- probes -------------------------------------------------------------------------------

    def _start_probes(
        self, group: Group, run: _GroupRun, spec: ContainerSpec, cs: ContainerStatus, inst: _Instance
    ) -> list[asyncio.Task[None]]:
        tasks = []
        if spec.readiness is not None:
            tasks.append(asyncio.create_task(self._probe_loop(group, run, spec, cs, inst, spec.readiness, False)))
        if spec.liveness is not None:
            tasks.append(asyncio.create_task(self._probe_loop(group, run, spec, cs, inst, spec.liveness, True)))
        return tasks

    async def _probe_once(self, group: Group, spec: ContainerSpec, probe: Probe) -> str | None:
        """None on success, else why it failed."""
        try:
            if probe.kind == "exec":
                out, code = await self.exec_sync(group, spec.name, probe.command, probe.timeout)
                return None if code == 0 else f"command exited {code}: {out.strip()[:200]}"
            if probe.kind == "tcpSocket":
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", probe.port), probe.timeout)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return None
            scheme = "https" if probe.scheme == "HTTPS" else "http"
            url = f"{scheme}://127.0.0.1:{probe.port}{probe.path}"
            timeout = aiohttp.ClientTimeout(total=probe.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
                session.get(url, ssl=False) as resp,
            ):
                return None if 200 <= resp.status < 400 else f"HTTP probe failed with statuscode: {resp.status}"
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            return f"{type(exc).__name__}: {exc}"[:200]

    async def _probe_loop(
        self,
        group: Group,
        run: _GroupRun,
        spec: ContainerSpec,
        cs: ContainerStatus,
        inst: _Instance,
        probe: Probe,
        liveness: bool,
    ) -> None:
        eng = self._eng()
        await asyncio.sleep(probe.initial_delay)
        ok = fail = 0
        kind = "Liveness" if liveness else "Readiness"
        while not inst.exited.is_set() and not run.stopping:
            why = await self._probe_once(group, spec, probe)
            if why is None:
                ok, fail = ok + 1, 0
                if not liveness and not cs.ready and ok >= probe.success_threshold:
                    cs.ready = True
                    eng.save(group)
            else:
                ok, fail = 0, fail + 1
                group.add_event("Unhealthy", f"{kind} probe failed: {why}", warning=True)
                if fail >= probe.failure_threshold:
                    if liveness:
                        group.add_event(
                            "Killing", f"Container {spec.name} failed liveness probe, will be restarted", warning=False
                        )
                        eng.save(group)
                        await self._terminate(inst, group.grace, group, spec)
                        return
                    if cs.ready:
                        cs.ready = False
                eng.save(group)
            await asyncio.sleep(probe.period)

    # ---- stop ---------------------------------------------------------------------------------

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    async def _terminate(
        self, inst: _Instance, grace: float, group: Group | None = None, spec: ContainerSpec | None = None
    ) -> None:
        """Run the preStop hook (within the grace period), SIGTERM the instance's whole process group,
        then SIGKILL when ``grace`` seconds have passed since the start."""
        if inst.exited.is_set():
            return
        inst.killed_by_us = True
        started = time.monotonic()
        if group is not None and spec is not None and spec.pre_stop and grace > 0:
            _, code = await self.exec_sync(group, spec.name, spec.pre_stop, grace)
            if code != 0:
                group.add_event("FailedPreStopHook", f"PreStop hook of {spec.name} exited {code}", warning=True)
            grace = max(0.0, grace - (time.monotonic() - started))
        if grace > 0:
            self._signal(inst.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(inst.exited.wait(), grace)
                return
            except TimeoutError:
                pass
        self._signal(inst.proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inst.exited.wait(), 10)

    async def stop(self, group: Group, grace: float) -> None:
        run = self._runs.get(group.id)
        if run is None:
            return
        run.stopping = True
        if grace > 0:
            group.add_event("Killing", f"Stopping containers (grace period {grace:g}s)")
        await asyncio.gather(
            *(self._terminate(i, grace, group, group.spec_of(name)) for name, i in list(run.instances.items()))
        )
        if run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task
        for cs in [*group.statuses, *group.init_statuses]:
            cs.ready = False
            if cs.current.state == "Waiting" and cs.started:
                cs.current = State(
                    state="Terminated", reason="Completed", exit_code=0, finish_time=time.time(), start_time=None
                )
        self._eng().save(group)

    def forget(self, group: Group) -> None:
        run = self._runs.pop(group.id, None)
        if run is not None:
            self._remove_created(run)
        shutil.rmtree(self.group_dir(group), ignore_errors=True)

    def crash(self, group: Group, container: str, exit_code: int) -> None:
        run = self._runs.get(group.id)
        inst = run.instances.get(container) if run else None
        if inst is not None and not inst.exited.is_set():
            self._signal(inst.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        runs = list(self._runs.values())
        for run in runs:
            run.stopping = True
            for inst in run.instances.values():
                if not inst.exited.is_set():
                    self._signal(inst.proc.pid, signal.SIGKILL)
        for run in runs:
            if run.task is not None and not run.task.done():
                run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
            # Mount points we made on the host are empty outside the namespaces: remove them.
            self._remove_created(run)
        # Exec sessions and hooks still in flight: none may outlive the simulator.
        for proc in list(self._children):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reap(proc), 10)

    @staticmethod
    def _remove_created(run: _GroupRun) -> None:
        for path in reversed(run.created_paths):
            with contextlib.suppress(OSError):
                if path.is_symlink() or path.is_file():
                    path.unlink()
                else:
                    path.rmdir()
        run.created_paths.clear()

    # ---- logs, metrics ------------------------------------------------------------------------

    def logs(self, group: Group, container: str, previous: bool) -> list[tuple[float, str, str]]:
        files = self._instances(group, container)
        index = -2 if previous else -1
        if len(files) < -index:
            return []
        out = []
        for raw in files[index].read_text(errors="replace").splitlines():
            stamp, _, rest = raw.partition(" ")
            stream, _, line = rest.partition(" ")
            try:
                ts = float(stamp)
            except ValueError:
                continue
            out.append((ts, stream, line))
        return out

    @staticmethod
    def _proc_usage(pgid: int) -> tuple[int, int]:
        """(cpu nanoseconds, rss bytes) of every process in the process group ``pgid``."""
        ticks = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        cpu = rss = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            cpu += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // ticks
            rss += int(fields[21]) * page
        return cpu, rss

    def metrics_sample(self, group: Group) -> dict[str, Any]:
        now = time.time()
        run = self._runs.get(group.id)
        containers = []
        for cs in group.statuses:
            inst = run.instances.get(cs.name) if run else None
            if inst is None or inst.exited.is_set():
                containers.append((cs.name, 0, 0, 0))
                continue
            cpu_ns, rss = self._proc_usage(inst.proc.pid)
            key = f"{group.id}/{cs.name}/{inst.proc.pid}"
            prev = self._samples.get(key)
            if prev is not None and now > prev[0]:
                nano = int(max(0, cpu_ns - prev[1]) / (now - prev[0]))
            else:
                age = max(1e-3, now - (cs.current.start_time or now))
                nano = int(cpu_ns / age)
            self._samples[key] = (now, cpu_ns)
            containers.append((cs.name, nano, cpu_ns, rss))
        return {"timestamp": now, "containers": containers}

    # ---- exec ---------------------------------------------------------------------------------

    async def _exec_argv(
        self, group: Group, container: str, command: list[str]
    ) -> tuple[list[str], dict[str, str], str]:
        spec = group.spec_of(container)
        assert spec is not None
        env = self.env_for(group, spec)
        argv = list(command)
        found = shutil.which(argv[0], path=env["PATH"]) if not os.path.isabs(argv[0]) else argv[0]
        if found is None:
            raise FileNotFoundError(f"executable file not found in $PATH: {argv[0]}")
        argv[0] = found
        run = self._runs.get(group.id)
        inst = run.instances.get(container) if run else None
        if inst is not None and not inst.exited.is_set() and spec.mounts and await self.namespaces_available():
            # Join the container's mount namespace so exec sees its volumes too.
            argv = ["nsenter", f"--mount=/proc/{inst.proc.pid}/ns/mnt", "--", *argv]
        wd = spec.working_dir
        is_dir: bool = bool(wd) and await asyncio.to_thread(Path(wd).is_dir)
        cwd = wd if is_dir else str(self.group_dir(group))
        return _die_with_simulator(argv), env, cwd

    async def exec_sync(self, group: Group, container: str, command: list[str], timeout: float) -> tuple[str, int]:
        try:
            argv, env, cwd = await self._exec_argv(group, container, command)
        except FileNotFoundError as exc:
            return str(exc), 127
        proc = await self._spawn(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            return f"command timed out after {timeout:g}s", 124
        finally:
            await self._reap(proc)
        rc = proc.returncode or 0
        return out.decode(errors="replace"), 128 - rc if rc < 0 else rc

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
        argv, env, cwd = await self._exec_argv(group, container, command)
        if tty:
            return await self._exec_tty(argv, env, cwd, recv, send)
        proc = await self._spawn(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

        async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
            assert stream is not None
            while chunk := await stream.read(65536):
                await send(channel, chunk)

        async def feed() -> bool:
            """False when the client went away."""
            assert proc.stdin is not None
            while True:
                msg = await recv()
                if msg is None:
                    return False
                channel, data = msg
                if channel == 0 and not proc.stdin.is_closing():
                    with contextlib.suppress(ConnectionError):
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                elif channel == 255 and not proc.stdin.is_closing():
                    proc.stdin.close()

        pumps = asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
        if not stdin:
            assert proc.stdin is not None
            proc.stdin.close()  # Stdin=false: the command sees EOF at once
        feeder = asyncio.create_task(feed())
        waiter = asyncio.create_task(proc.wait())
        try:
            done, _ = await asyncio.wait({feeder, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if feeder in done and feeder.result() is False:
                self._signal(proc.pid, signal.SIGKILL)
            await waiter
            await pumps
        finally:
            feeder.cancel()
            await self._reap(proc)
            pumps.cancel()
            await asyncio.gather(feeder, pumps, return_exceptions=True)
        rc = proc.returncode or 0
        return 128 - rc if rc < 0 else rc

    async def _exec_tty(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        recv: Callable[[], Awaitable[tuple[int, bytes] | None]],
        send: Callable[[int, bytes], Awaitable[None]],
    ) -> int:
        import json

        master, slave = pty.openpty()
        env = {**env, "TERM": env.get("TERM", "xterm")}
        try:
            proc = await self._spawn(
                *argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
            )
        finally:
            os.close(slave)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(master)
            out.put_nowait(data)

        loop.add_reader(master, readable)

        async def pump() -> None:
            while data := await out.get():
                await send(1, data)

        async def feed() -> bool:
            while True:
                msg = await recv()
                if msg is None:
                    return False
                channel, data = msg
                if channel == 0:
                    os.write(master, data)
                elif channel == 4:
                    with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                        size = json.loads(data)
                        winsize = struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0)
                        fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
                elif channel == 255:
                    os.write(master, b"\x04")  # EOF on a terminal is ^D

        pumper = asyncio.create_task(pump())
        feeder = asyncio.create_task(feed())
        waiter = asyncio.create_task(proc.wait())
        try:
            done, _ = await asyncio.wait({feeder, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if feeder in done and feeder.result() is False:
                self._signal(proc.pid, signal.SIGKILL)
            await waiter
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pumper, 2)
        finally:
            loop.remove_reader(master)
            os.close(master)
            for t in (pumper, feeder):
                t.cancel()
            await self._reap(proc)
            await asyncio.gather(pumper, feeder, return_exceptions=True)
        rc = proc.returncode or 0
        return 128 - rc if rc < 0 else rc
