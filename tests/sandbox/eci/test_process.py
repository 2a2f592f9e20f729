"""The process runtime through the SDK: real processes, volumes, restarts, grace, probes, logs, exec, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
from aliyunsdkeci.request.v20180808.DeleteContainerGroupRequest import DeleteContainerGroupRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupMetricRequest import DescribeContainerGroupMetricRequest
from aliyunsdkeci.request.v20180808.DescribeContainerLogRequest import DescribeContainerLogRequest
from aliyunsdkeci.request.v20180808.ExecContainerCommandRequest import ExecContainerCommandRequest
from aliyunsdkeci.request.v20180808.RestartContainerGroupRequest import RestartContainerGroupRequest

from tests.sandbox.eci.conftest import call, call_error, create_request, describe, exec_command, status_is, wait_for
from tests.waiting import eventually
from vk_sandbox.eci.server import ECISimulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _create(sim: ECISimulator, containers: list[dict[str, Any]], **extra: Any) -> str:
    req = create_request(f"g{secrets.token_hex(3)}", containers=containers, **extra)
    return str((await call(sim, req))["ContainerGroupId"])


async def _log(sim: ECISimulator, gid: str, container: str = "main", **opts: Any) -> str:
    req = DescribeContainerLogRequest()
    req.set_ContainerGroupId(gid)
    req.set_ContainerName(container)
    for key, value in opts.items():
        req.add_query_param(key, value)
    return str((await call(sim, req))["Content"])


async def _wait_log(sim: ECISimulator, gid: str, text: str, container: str = "main", **opts: Any) -> str:
    content = ""

    async def showed() -> str | None:
        nonlocal content
        content = await _log(sim, gid, container, **opts)
        return content if text in content else None

    return await eventually(showed, timeout=10, what=lambda: f"{text!r} in the log: {content!r}")


def _sh(script: str, name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"Name": name, "Image": "busybox", "Commands": ["sh", "-c", script], **extra}


async def test_two_containers_with_a_config_file_volume(sim: ECISimulator) -> None:
    """A 2-container group mounts a ConfigFileVolume; `cat` of the mounted file shows its content in the log,
    the other container shares an EmptyDir, and the mount path is not visible on the host."""
    mount = f"/etc/vksim-{secrets.token_hex(4)}"
    content = base64.b64encode(b"greeting=hello from config\n").decode()
    req = create_request(
        f"cfg{secrets.token_hex(2)}",
        containers=[
            _sh(
                f"cat {mount}/app.conf; echo shared > /data/x; sleep 3600",
                VolumeMounts=[{"Name": "cfg", "MountPath": mount}, {"Name": "scratch", "MountPath": "/data"}],
            ),
            _sh(
                "while [ ! -e /work/x ]; do sleep 0.05; done; cat /work/x; sleep 3600",
                name="side",
                VolumeMounts=[{"Name": "scratch", "MountPath": "/work"}],
            ),
        ],
    )
    req.set_Volumes(
        [
            {"Name": "cfg", "Type": "ConfigFileVolume", "ConfigFileVolume.ConfigFileToPaths": [
                {"Path": "app.conf", "Content": content}]},
            {"Name": "scratch", "Type": "EmptyDirVolume"},
        ]
    )  # fmt: skip
    gid = (await call(sim, req))["ContainerGroupId"]
    await wait_for(sim, gid, status_is("Running"))
    assert "greeting=hello from config" in await _wait_log(sim, gid, "greeting")
    assert "shared" in await _wait_log(sim, gid, "shared", container="side")
    assert not Path(mount, "app.conf").exists()  # only inside the container's mount namespace
    delete = DeleteContainerGroupRequest()
    delete.set_ContainerGroupId(gid)
    await call(sim, delete)
    await eventually(lambda: gid not in sim.engine.groups, timeout=4, interval=0.02, what="the group to be gone")
    assert not Path(mount).exists()  # the mount point we made is cleaned up


async def test_command_and_args_stay_separate(sim: ECISimulator, tmp_path: Path) -> None:
    """Arg alone replaces the image's default command; Command+Arg pass Arg as the command's arguments;
    env and WorkingDir are applied."""
    wd = tmp_path / "wd"
    gid = await _create(
        sim,
        [
            {"Name": "main", "Image": "busybox", "Args": ["echo", "args-only"]},
            {
                "Name": "two",
                "Image": "busybox",
                "Commands": ["sh", "-c", 'echo "$0-$1 $FOO $(pwd)"; sleep 3600'],
                "Args": ["x", "y"],
                "EnvironmentVars": [{"Key": "FOO", "Value": "bar"}],
                "WorkingDir": str(wd),
            },
        ],
        RestartPolicy="Never",
    )
    assert "args-only" in await _wait_log(sim, gid, "args-only")
    assert f"x-y bar {wd}" in await _wait_log(sim, gid, "x-y", container="two")


async def test_nginx_image_serves_http_and_readiness_probes_drive_ready(sim: ECISimulator) -> None:
    """nginx without a command serves HTTP on its declared port; httpGet and tcpSocket readiness make it Ready."""
    port = _free_port()
    gid = await _create(
        sim,
        [
            {
                "Name": "main",
                "Image": "registry.example.com/library/nginx:1.25",
                "Ports": [{"Port": port, "Protocol": "TCP"}],
                "ReadinessProbe.HttpGet.Port": port,
                "ReadinessProbe.HttpGet.Path": "/",
                "ReadinessProbe.PeriodSeconds": 1,
            },
            _sh(
                "sleep 3600", name="side", **{"ReadinessProbe.TcpSocket.Port": port, "ReadinessProbe.PeriodSeconds": 1}
            ),
        ],
    )
    group = await wait_for(sim, gid, lambda g: all(c["Ready"] for c in g["Containers"]))
    assert group["Status"] == "Running"
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/") as r:
        assert r.status == 200
        assert "Welcome" in await r.text()


async def test_unknown_image_without_command_is_err_image_pull(sim: ECISimulator) -> None:
    """An image the simulator does not know, with no command, stays Waiting/ErrImagePull with a Warning event."""
    gid = await _create(sim, [{"Name": "main", "Image": "example.com/unknown-app:v1"}])
    group = await wait_for(sim, gid, lambda g: g["Containers"][0]["CurrentState"]["Reason"] == "ErrImagePull")
    assert group["Status"] == "Pending"
    assert any(e["Type"] == "Warning" and "pull" in e["Message"] for e in group["Events"])


async def test_restart_policy_never_fails_with_the_exit_code(sim: ECISimulator) -> None:
    """RestartPolicy Never: exit 3 ends the group Failed with ExitCode 3 and no restarts."""
    gid = await _create(sim, [_sh("exit 3")], RestartPolicy="Never")
    group = await wait_for(sim, gid, status_is("Failed"))
    state = group["Containers"][0]["CurrentState"]
    assert (state["State"], state["ExitCode"], state["Reason"]) == ("Terminated", 3, "Error")
    assert group["Containers"][0]["RestartCount"] == 0 and group["FailedTime"]


async def test_restart_policy_on_failure_retries_until_success(sim: ECISimulator, tmp_path: Path) -> None:
    """OnFailure: the first run exits 1, the retry exits 0; the group Succeeds with RestartCount 1."""
    marker = tmp_path / "marker"
    gid = await _create(
        sim, [_sh(f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1")], RestartPolicy="OnFailure"
    )
    group = await wait_for(sim, gid, status_is("Succeeded"))
    main = group["Containers"][0]
    assert main["RestartCount"] == 1
    assert main["PreviousState"]["ExitCode"] == 1 and main["CurrentState"]["ExitCode"] == 0


async def test_restart_policy_always_restarts_with_backoff(sim: ECISimulator) -> None:
    """Always: a container that exits 0 is restarted (RestartCount grows, BackOff events) and the group runs on."""
    gid = await _create(sim, [_sh("echo run")], RestartPolicy="Always")
    group = await wait_for(sim, gid, lambda g: g["Containers"][0]["RestartCount"] >= 2, timeout=15)
    assert group["Status"] == "Running"
    assert any(e["Reason"] == "BackOff" for e in group["Events"])


async def test_grace_period_sigterm_then_sigkill(sim: ECISimulator) -> None:
    """Stopping sends SIGTERM (a trap sees it); a process ignoring it is SIGKILLed after the grace period."""
    gid = await _create(
        sim,
        [
            _sh('trap "echo got-TERM; exit 0" TERM; echo trapped; while true; do sleep 0.05; done'),
            _sh('trap "" TERM; echo trapped; while true; do sleep 0.05; done', name="stubborn"),
        ],
        TerminationGracePeriodSeconds=1,
    )
    await wait_for(sim, gid, status_is("Running"))
    await _wait_log(sim, gid, "trapped")  # both shells have their traps in place
    await _wait_log(sim, gid, "trapped", container="stubborn")
    req = RestartContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    started = time.monotonic()
    await call(sim, req)
    assert (await describe(sim, gid))["Status"] == "Restarting"  # held there by the stubborn container
    group = await wait_for(sim, gid, lambda g: g["Status"] == "Running" and g["Containers"][1]["PreviousState"])
    assert time.monotonic() - started >= 0.9  # the stubborn one held the stop for the grace period
    assert "got-TERM" in await _log(sim, gid, LastTime=True)
    assert group["Containers"][0]["PreviousState"]["ExitCode"] == 0
    assert group["Containers"][1]["PreviousState"]["ExitCode"] == 137
    assert group["Containers"][1]["PreviousState"]["Signal"] == 9


async def test_active_deadline_fails_the_group(sim: ECISimulator) -> None:
    """ActiveDeadlineSeconds=1: the group is Failed with a DeadlineExceeded event about a second later."""
    gid = await _create(sim, [_sh("sleep 3600")], ActiveDeadlineSeconds=1, TerminationGracePeriodSeconds=0)
    group = await wait_for(sim, gid, status_is("Failed"), timeout=5)
    assert any(e["Reason"] == "DeadlineExceeded" for e in group["Events"])
    assert group["Containers"][0]["CurrentState"]["State"] == "Terminated"


async def test_liveness_failure_restarts_and_readiness_failure_unreadies(sim: ECISimulator) -> None:
    """A failing exec liveness probe kills and restarts the container; a failing readiness probe keeps Ready false."""
    gid = await _create(
        sim,
        [
            _sh(
                "sleep 3600",
                **{
                    "LivenessProbe.Exec.Commands": ["sh", "-c", "exit 1"],
                    "LivenessProbe.PeriodSeconds": 1,
                    "LivenessProbe.FailureThreshold": 1,
                },
            ),
            _sh(
                "sleep 3600",
                name="unready",
                **{"ReadinessProbe.Exec.Commands": ["false"], "ReadinessProbe.PeriodSeconds": 1},
            ),
        ],
        TerminationGracePeriodSeconds=1,
    )
    group = await wait_for(sim, gid, lambda g: g["Containers"][0]["RestartCount"] >= 1, timeout=10)
    unhealthy = [e for e in group["Events"] if e["Reason"] == "Unhealthy"]
    assert any("Liveness" in e["Message"] for e in unhealthy)
    assert any("Readiness" in e["Message"] for e in unhealthy)
    assert group["Containers"][1]["Ready"] is False


async def test_logs_tail_since_limit_timestamps_and_previous(sim: ECISimulator) -> None:
    """DescribeContainerLog honours Tail, StartTime/SinceSeconds, LimitBytes, Timestamps and LastTime."""
    # stderr first, then a pause: the two pipes are read independently, so only a pause orders them.
    gid = await _create(sim, [_sh("echo oops >&2; sleep 0.3; for i in 1 2 3 4 5; do echo line$i; done; sleep 3600")])
    full = await _wait_log(sim, gid, "line5")
    assert full == "oops\nline1\nline2\nline3\nline4\nline5\n"
    assert await _log(sim, gid, Tail=2) == "line4\nline5\n"
    assert await _log(sim, gid, LimitBytes=7) == "oops\nli"
    stamped = await _log(sim, gid, Timestamps=True, Tail=1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line5\n", stamped), stamped
    assert await _log(sim, gid, StartTime="2099-01-01T00:00:00Z") == ""
    assert await _log(sim, gid, SinceSeconds=60) == full
    assert await _log(sim, gid, LastTime=True) == ""
    await sim.set_faults({"crash": {"group_id": gid, "container": "main"}})
    await wait_for(
        sim,
        gid,
        lambda g: g["Containers"][0]["CurrentState"]["State"] == "Running" and g["Containers"][0]["RestartCount"] == 1,
    )
    assert await _log(sim, gid, LastTime=True) == full
    req = DescribeContainerLogRequest()
    req.set_ContainerGroupId(gid)
    req.set_ContainerName("main")
    req.set_Tail(5000)
    assert (await call_error(sim, req)).get_error_code() == "InvalidParameter"


async def _ws_session(uri: str, sends: list[bytes]) -> tuple[bytes, bytes, bytes]:
    """stdout, stderr and the error channel's text of one exec session (channel.k8s.io v1 framing)."""
    out, err, error = b"", b"", b""
    async with aiohttp.ClientSession() as s, s.ws_connect(uri) as ws:
        for frame in sends:
            await ws.send_bytes(frame)
        async with asyncio.timeout(10):
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.BINARY
                channel, data = msg.data[0], msg.data[1:]
                if channel == 1:
                    out += data
                elif channel == 2:
                    err += data
                elif channel == 3:
                    error += data
    return out, err, error


def _failed(command: list[str], code: int) -> bytes:
    """The kubelet's v1 error text for a non-zero exit (containerd's CodeExitError inside)."""
    argv = " ".join(command)
    return f"command terminated with non-zero exit code: error executing command [{argv}], exit code {code}".encode()


async def test_exec_sync_and_interactive(sim: ECISimulator) -> None:
    """Sync exec returns SyncResponse; the WebSocket carries stdin, stdout, stderr and the exit code, once."""
    gid = await _create(sim, [_sh("sleep 3600", EnvironmentVars=[{"Key": "WHO", "Value": "sim"}])])
    await wait_for(sim, gid, status_is("Running"))
    sync = await exec_command(sim, gid, ["sh", "-c", "echo hello $WHO"], Sync=True, TTY=False)
    assert sync["SyncResponse"] == "hello sim\n"
    exc_req = ExecContainerCommandRequest()
    exc_req.set_ContainerGroupId(gid)
    exc_req.set_ContainerName("main")
    exc_req.set_Command(json.dumps(["true"]))
    exc_req.set_Sync(True)
    exc_req.set_TTY(True)
    assert (await call_error(sim, exc_req)).get_error_code() == "InvalidParameter"
    command = ["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 4"]
    answer = await exec_command(sim, gid, command)
    uri = answer["WebSocketUri"]
    assert uri.startswith("ws://127.0.0.1:")
    out, err, error = await _ws_session(uri, [b"\x00hello\n"])
    assert (out, err, error) == (b"got-hello\n", b"oops\n", _failed(command, 4))
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(uri):
                raise AssertionError("a used exec token must not connect again")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 404


async def test_exec_tty_and_resize(sim: ECISimulator) -> None:
    """With TTY the command runs on a pty: resize frames reach it and stdout carries the merged output."""
    gid = await _create(sim, [_sh("sleep 3600")])
    await wait_for(sim, gid, status_is("Running"))
    command = ["sh", "-c", "sleep 0.3; stty size; echo to-err >&2; exit 5"]
    answer = await exec_command(sim, gid, command, TTY=True)
    resize = b"\x04" + json.dumps({"Width": 100, "Height": 30}).encode()
    out, err, error = await _ws_session(answer["WebSocketUri"], [resize])
    assert b"30 100" in out and b"to-err" in out and err == b""
    assert error == _failed(command, 5)


async def test_exec_needs_a_running_container(sim: ECISimulator) -> None:
    """Exec into a finished group is IncorrectStatus; more than 20 command items is ValueExceeded."""
    gid = await _create(sim, [_sh("exit 0")], RestartPolicy="Never")
    await wait_for(sim, gid, status_is("Succeeded"))
    req = ExecContainerCommandRequest()
    req.set_ContainerGroupId(gid)
    req.set_ContainerName("main")
    req.set_Command(json.dumps(["true"]))
    assert (await call_error(sim, req)).get_error_code() == "IncorrectStatus"
    req.set_Command(json.dumps(["x"] * 21))
    assert (await call_error(sim, req)).get_error_code() == "InvalidParameter.ValueExceeded"


async def test_metrics_come_from_proc(sim: ECISimulator) -> None:
    """A busy container shows CPU use and resident memory read from /proc."""
    gid = await _create(sim, [_sh("while :; do :; done")])
    await wait_for(sim, gid, status_is("Running"))
    req = DescribeContainerGroupMetricRequest()
    req.set_ContainerGroupId(gid)

    async def busy() -> dict[str, Any] | None:
        record: dict[str, Any] = (await call(sim, req))["Records"][-1]
        # a spinning shell uses well over 1% of a core
        return record if record["CPU"]["UsageNanoCores"] > 10_000_000 else None

    record = await eventually(busy, timeout=10, what="the spinning shell's CPU use in the metrics")
    assert record["CPU"]["UsageCoreNanoSeconds"] > 0
    assert record["Memory"]["Rss"] > 0
    assert record["Containers"][0]["Name"] == "main"


async def test_restart_of_the_simulator_fails_lost_groups(tmp_path: Path) -> None:
    """After a simulator restart, groups whose processes are gone are Failed with a SimulatorRestarted event;
    finished groups keep their state."""
    keys = {"k": "s"}
    async with ECISimulator(directory=tmp_path, runtime="process", access_keys=keys) as first:
        running = await _create(first, [_sh("sleep 3600")])
        done = await _create(first, [_sh("exit 0")], RestartPolicy="Never")
        await wait_for(first, running, status_is("Running"))
        await wait_for(first, done, status_is("Succeeded"))
    async with ECISimulator(directory=tmp_path, runtime="process", access_keys=keys) as second:
        group = await describe(second, running)
        assert group["Status"] == "Failed"
        assert any(e["Reason"] == "SimulatorRestarted" for e in group["Events"])
        assert (await describe(second, done))["Status"] == "Succeeded"


async def test_init_containers_run_in_order_before_the_containers(sim: ECISimulator) -> None:
    """Init containers run one after another to completion, then the containers see what they left behind."""
    req = create_request(
        f"init{secrets.token_hex(2)}",
        containers=[_sh("cat /shared/order; sleep 3600", VolumeMounts=[{"Name": "s", "MountPath": "/shared"}])],
    )
    req.set_InitContainers(
        [
            _sh("echo first >> /shared/order", name="one", VolumeMounts=[{"Name": "s", "MountPath": "/shared"}]),
            _sh(
                "sleep 0.2; echo second >> /shared/order",
                name="two",
                VolumeMounts=[{"Name": "s", "MountPath": "/shared"}],
            ),
        ]
    )
    req.set_Volumes([{"Name": "s", "Type": "EmptyDirVolume"}])
    gid = (await call(sim, req))["ContainerGroupId"]
    assert "first\nsecond\n" in await _wait_log(sim, gid, "second")
    group = await describe(sim, gid)
    assert [c["CurrentState"]["Reason"] for c in group["InitContainers"]] == ["Completed", "Completed"]


async def test_failing_init_container_with_never_fails_the_group(sim: ECISimulator) -> None:
    """An init container exiting non-zero under RestartPolicy Never fails the group; the containers never start."""
    req = create_request(f"initf{secrets.token_hex(2)}", containers=[_sh("sleep 3600")], RestartPolicy="Never")
    req.set_InitContainers([_sh("exit 2", name="setup")])
    gid = (await call(sim, req))["ContainerGroupId"]
    group = await wait_for(sim, gid, status_is("Failed"))
    assert group["InitContainers"][0]["CurrentState"]["ExitCode"] == 2
    assert group["Containers"][0]["CurrentState"]["State"] == "Waiting"


async def test_update_restarts_with_the_new_command(sim: ECISimulator) -> None:
    """UpdateContainerGroup in process mode stops the old processes and starts the new spec (Updating -> Running)."""
    from aliyunsdkeci.request.v20180808.UpdateContainerGroupRequest import UpdateContainerGroupRequest

    gid = await _create(sim, [_sh("echo old; sleep 3600")], TerminationGracePeriodSeconds=1)
    await _wait_log(sim, gid, "old")
    req = UpdateContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    req.set_Containers([_sh("echo new; sleep 3600")])
    await call(sim, req)
    assert "new" in await _wait_log(sim, gid, "new")
    group = await wait_for(sim, gid, status_is("Running"))
    assert group["Containers"][0]["Commands"] == ["sh", "-c", "echo new; sleep 3600"]
    assert "old" in await _log(sim, gid, LastTime=True)


async def test_exec_client_close_kills_the_command_and_stdin_false_gives_eof(sim: ECISimulator, tmp_path: Path) -> None:
    """Closing the exec socket kills the command; with Stdin=false the command reads EOF at once."""
    gid = await _create(sim, [_sh("sleep 3600")])
    await wait_for(sim, gid, status_is("Running"))
    pidfile = tmp_path / "pid"
    answer = await exec_command(sim, gid, ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 3600"])
    async with aiohttp.ClientSession() as s, s.ws_connect(answer["WebSocketUri"]):
        await eventually(
            lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=4, interval=0.02, what="the pid file"
        )
    pid = int(pidfile.read_text())

    def ended() -> bool:
        try:
            return "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        except (FileNotFoundError, ProcessLookupError):  # reaped while we looked
            return True

    await eventually(ended, timeout=4, interval=0.02, what="the exec'd command to end once the client closed")
    answer = await exec_command(sim, gid, ["sh", "-c", "cat; echo eof-seen"], Stdin=False)
    out, _, error = await _ws_session(answer["WebSocketUri"], [])
    assert (out, error) == (b"eof-seen\n", b"")  # success: nothing on the error channel


async def test_lifecycle_hooks_field_ref_and_file_mode(sim: ECISimulator, tmp_path: Path) -> None:
    """postStart runs after start, preStop before SIGTERM; FieldRef status.podIP resolves to 127.0.0.1;
    ConfigFileToPath.Mode (sent with add_query_param, as SDK 1.3.3 has no setter) sets the file mode."""
    mount = f"/etc/vksim-{secrets.token_hex(4)}"
    req = create_request(
        f"hooks{secrets.token_hex(2)}",
        containers=[
            _sh(
                f"echo ip=$POD_IP; stat -c %a {mount}/secret.conf; sleep 3600",
                VolumeMounts=[{"Name": "cfg", "MountPath": mount}],
                LifecyclePostStartHandlerExecs=["sh", "-c", f"echo post > {tmp_path}/post"],
                LifecyclePreStopHandlerExecs=["sh", "-c", f"echo pre > {tmp_path}/pre"],
            )
        ],
        TerminationGracePeriodSeconds=2,
        **{
            "Container.1.EnvironmentVar.1.Key": "POD_IP",
            "Container.1.EnvironmentVar.1.FieldRef.FieldPath": "status.podIP",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode": 0o600,
        },
    )
    req.set_Volumes(
        [{"Name": "cfg", "Type": "ConfigFileVolume", "ConfigFileVolume.ConfigFileToPaths": [
            {"Path": "secret.conf", "Content": base64.b64encode(b"x").decode()}]}]
    )  # fmt: skip
    gid = (await call(sim, req))["ContainerGroupId"]
    log = await _wait_log(sim, gid, "600")
    assert "ip=127.0.0.1" in log
    await eventually((tmp_path / "post").exists, timeout=4, interval=0.02, what="the postStart hook's file")
    assert (tmp_path / "post").read_text() == "post\n"
    restart = RestartContainerGroupRequest()
    restart.set_ContainerGroupId(gid)
    await call(sim, restart)
    await wait_for(sim, gid, lambda g: g["Status"] == "Running" and g["Containers"][0]["RestartCount"] == 1)
    assert (tmp_path / "pre").read_text() == "pre\n"


async def test_delete_waits_for_the_grace_period(sim: ECISimulator) -> None:
    """DeleteContainerGroup answers at once; the group stays Terminating while a process ignoring SIGTERM
    gets its grace period, then it is gone."""
    gid = await _create(sim, [_sh('trap "" TERM; while true; do sleep 0.05; done')], TerminationGracePeriodSeconds=1)
    await wait_for(sim, gid, status_is("Running"))
    req = DeleteContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    started = time.monotonic()
    await call(sim, req)
    group = await describe(sim, gid)
    assert group["Status"] == "Terminating"
    assert any(e["Reason"] == "Killing" for e in group["Events"])
    await eventually(lambda: gid not in sim.engine.groups, timeout=6, interval=0.02, what="the group to be gone")
    assert time.monotonic() - started >= 0.9


async def test_close_reaps_exec_sessions_still_in_flight(sim: ECISimulator, tmp_path: Path) -> None:
    """Closing the runtime kills and waits for every child it started, an exec session in flight included:
    none outlives the simulator or is collected unwaited (asyncio's "subprocess is still running")."""
    gid = await _create(sim, [_sh("sleep 3600")])
    await wait_for(sim, gid, status_is("Running"))
    runtime, group = sim.engine.runtime, sim.engine.groups[gid]
    pidfile = tmp_path / "pid"
    never: asyncio.Future[tuple[int, bytes] | None] = asyncio.get_running_loop().create_future()

    async def recv() -> tuple[int, bytes] | None:
        return await asyncio.shield(never)

    async def send(channel: int, data: bytes) -> None:
        pass

    session = asyncio.create_task(
        runtime.exec_stream(
            group, "main", ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 3600"], False, True, recv, send
        )
    )
    await eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=4, what="the pid file")
    pid = int(pidfile.read_text())
    await runtime.close()
    assert not Path(f"/proc/{pid}").exists(), "the exec'd command outlived the runtime"
    assert await asyncio.wait_for(session, 5) == 137  # 128 + SIGKILL
    never.cancel()
