"""WebSocketExecSession: kubelet channel.k8s.io v1 as ECI is seen to speak it, against scripted peers for the
exact frames and against the simulator for whole sessions."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from tests.sandbox.eci.conftest import call, create_request, exec_command, status_is, wait_for
from vk_provider.eci.exec_bridge import WebSocketExecSession, exit_code_from_error_text
from vk_sandbox.eci.exec_ws import ExecOptions
from vk_sandbox.eci.server import ECISimulator

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]


@pytest.fixture
async def ws_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        async def route(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await handler(ws)
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/ws", route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"ws://127.0.0.1:{port}/ws"

    yield start
    for r in runners:
        await r.cleanup()


async def _run(sess: WebSocketExecSession) -> tuple[bytes, bytes, int]:
    out, err = b"", b""
    try:
        async for channel, data in sess.output():
            if channel == 1:
                out += data
            else:
                err += data
        return out, err, await sess.exit_code()
    finally:
        await sess.close()
        await sess.close()  # twice is safe


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # kubelet around containerd's / CRI-O's CodeExitError, and around os/exec's ExitError
        ("command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2", 2),
        ("command terminated with non-zero exit code: exit status 137", 137),
        (
            "command terminated with non-zero exit code: error executing command [sh -c echo exit code 9; exit 3], "
            "exit code 3",
            3,
        ),
        ("Internal error occurred: error executing command in container: exec failed", None),
        ("command terminated with non-zero exit code: something else", None),
    ],
)
def test_exit_code_from_the_kubelet_text(text: str, code: int | None) -> None:
    assert exit_code_from_error_text(text) == code


async def test_frames_exit_code_and_resize(ws_server: Callable[[Handler], Awaitable[str]]) -> None:
    """stdin and resize go out as channel frames; the lone 0x01 and empty frames carry nothing; the exit code
    comes from the error channel's text, possibly split over frames."""
    received: list[bytes] = []

    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x01")
        async for msg in ws:
            assert msg.type == WSMsgType.BINARY
            received.append(msg.data)
            if msg.data[:1] == b"\x00":
                break
        await ws.send_bytes(b"\x01" + msg.data[1:])
        await ws.send_bytes(b"\x02")
        await ws.send_bytes(b"\x02warn")
        await ws.send_bytes(b"\x03command terminated with non-zero exit code: ")
        await ws.send_bytes(b"\x03error executing command [sh], exit code 7")

    sess = await WebSocketExecSession.connect(await ws_server(peer))
    await sess.resize(80, 24)
    await sess.write_stdin(b"hi")
    assert await _run(sess) == (b"hi", b"warn", 7)
    assert received[0] == b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode()


async def test_success_is_a_silent_error_channel(ws_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x01")
        await ws.send_bytes(b"\x01ok")

    assert await _run(await WebSocketExecSession.connect(await ws_server(peer))) == (b"ok", b"", 0)


async def test_other_error_text_goes_to_stderr(ws_server: Callable[[Handler], Awaitable[str]]) -> None:
    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x03Internal error occurred: error executing command in container: no such file")

    sess = await WebSocketExecSession.connect(await ws_server(peer))
    out, err, code = await _run(sess)
    assert (out, code) == (b"", 255)
    assert (
        err == b"vk-eci: ECI exec error: Internal error occurred: error executing command in container: no such file\n"
    )


async def test_abnormal_close_is_no_verdict(ws_server: Callable[[Handler], Awaitable[str]]) -> None:
    """A close other than normal (the idle close, a proxy going away) is not a success."""

    async def peer(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x01partial")
        await ws.close(code=WSCloseCode.GOING_AWAY)

    sess = await WebSocketExecSession.connect(await ws_server(peer))
    out, err, code = await _run(sess)
    assert (out, code) == (b"partial", 255) and b"close code 1001" in err and sess.error


@pytest.mark.parametrize(("typed", "eof"), [(b"line\n", b"\x00\x04"), (b"partial", b"\x00\x04\x04")])
async def test_tty_stdin_end_is_ctrl_d(
    typed: bytes, eof: bytes, ws_server: Callable[[Handler], Awaitable[str]]
) -> None:
    """With a TTY, stdin's end is ^D; after a partial line twice, as the first only flushes the line."""
    received: list[bytes] = []

    async def peer(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            received.append(msg.data)
            if msg.data[1:2] == b"\x04":
                break

    sess = await WebSocketExecSession.connect(await ws_server(peer), tty=True)
    await sess.write_stdin(typed)
    await sess.close_stdin()
    await sess.close_stdin()  # once only
    await sess.write_stdin(b"late")  # nothing after the end
    await _run(sess)
    assert received == [b"\x00" + typed, eof]


# ---- against the simulator ------------------------------------------------------------------------------


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ECISimulator]:
    async with ECISimulator(directory=tmp_path / "eci") as simulator:
        yield simulator


@pytest.fixture
async def short_idle(tmp_path: Path) -> AsyncIterator[ECISimulator]:
    async with ECISimulator(directory=tmp_path / "eci", exec_options=ExecOptions(idle_timeout=0.6)) as sim:
        yield sim


async def _uri(sim: ECISimulator, command: list[str], **params: Any) -> str:
    req = create_request("bridge", containers=[{"Name": "main", "Image": "busybox", "Commands": ["sleep", "3600"]}])
    gid = str((await call(sim, req))["ContainerGroupId"])
    await wait_for(sim, gid, status_is("Running"))
    return str((await exec_command(sim, gid, command, **params))["WebSocketUri"])


async def test_simulator_exit_codes_and_output(sim: ECISimulator) -> None:
    sess = await WebSocketExecSession.connect(await _uri(sim, ["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert await _run(sess) == (b"out\n", b"err\n", 3)


async def test_stdin_end_without_tty_ends_the_quiet_session(sim: ECISimulator) -> None:
    """v1 cannot pass EOF: `cat` never ends by itself, so the session ends the grace after its last output,
    with a notice on stderr and exit code 255 (the command did not finish)."""
    sess = await WebSocketExecSession.connect(await _uri(sim, ["cat"]), stdin_eof_grace=0.3)
    await sess.write_stdin(b"piped\n")
    await sess.close_stdin()
    out, err, code = await _run(sess)
    assert (out, code) == (b"piped\n", 255)
    assert err.startswith(b"vk-eci: stdin ended, but ECI's exec stream cannot pass end-of-input") and b"0.3 s" in err


async def test_stdin_end_without_tty_waits_for_a_command_that_ends(sim: ECISimulator) -> None:
    """A command that stops reading by itself finishes normally, with its exit code and no notice."""
    sess = await WebSocketExecSession.connect(await _uri(sim, ["sh", "-c", "read x; exit 4"]), stdin_eof_grace=5)
    await sess.write_stdin(b"one line\n")
    await sess.close_stdin()
    assert await _run(sess) == (b"", b"", 4)


def _tar(name: str, data: bytes) -> bytes:
    """A tar archive as Go's archive/tar (kubectl cp) writes it: two zero blocks at the end, no record padding."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()[: 512 + -(-len(data) // 512) * 512 + 1024]


async def test_a_whole_tar_archive_on_stdin_lets_tar_finish(sim: ECISimulator, tmp_path: Path) -> None:
    """kubectl cp into a pod: the archive is padded to tar's record, so GNU tar (which waits for a full record)
    ends by itself with the whole file written and its own exit code."""
    data = bytes(range(256)) * 70  # not a whole number of records
    sess = await WebSocketExecSession.connect(await _uri(sim, ["tar", "-xmf", "-", "-C", str(tmp_path)]))
    archive = _tar("f.bin", data)
    for i in range(0, len(archive), 4096):
        await sess.write_stdin(archive[i : i + 4096])
    await sess.close_stdin()
    assert await _run(sess) == (b"", b"", 0)
    assert (tmp_path / "f.bin").read_bytes() == data


@pytest.mark.parametrize(
    ("stdin", "padded"),
    [(_tar("f", b"x" * 700), True), (b"not a tar" + bytes(2048), False), (_tar("f", b"x")[:-512], False)],
    ids=["whole-tar", "not-tar", "tar-without-end"],
)
async def test_only_a_whole_tar_archive_is_padded(
    stdin: bytes, padded: bool, ws_server: Callable[[Handler], Awaitable[str]]
) -> None:
    got = bytearray()

    async def peer(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            got.extend(msg.data[1:])
            if padded and len(got) >= len(stdin) and len(got) % 10240 == 0:
                break  # otherwise read on until the session's grace ends it

    sess = await WebSocketExecSession.connect(await ws_server(peer), stdin_eof_grace=0.2)
    await sess.write_stdin(stdin)
    await sess.close_stdin()
    await _run(sess)
    assert bytes(got) == (stdin + bytes(-len(stdin) % 10240) if padded else stdin)


async def test_stdin_end_with_tty_reaches_the_command(sim: ECISimulator) -> None:
    """With a TTY the ^D reaches the command as end of input, even after a partial line."""
    sess = await WebSocketExecSession.connect(
        await _uri(sim, ["sh", "-c", "cat >/dev/null; echo got-eof; exit 5"], TTY=True), tty=True
    )
    await sess.write_stdin(b"no newline")
    await sess.close_stdin()
    out, err, code = await _run(sess)
    assert b"got-eof" in out and (err, code) == (b"", 5)


async def test_pings_keep_a_quiet_session_open(short_idle: ECISimulator) -> None:
    uri = await _uri(short_idle, ["sh", "-c", "sleep 1.5; echo done"])
    assert await _run(await WebSocketExecSession.connect(uri, ping_interval=0.2)) == (b"done\n", b"", 0)


async def test_without_pings_the_idle_close_is_no_verdict(short_idle: ECISimulator) -> None:
    uri = await _uri(short_idle, ["sh", "-c", "sleep 30; echo done"])
    out, err, code = await _run(await WebSocketExecSession.connect(uri, ping_interval=None))
    assert (out, code) == (b"", 255) and b"without a verdict" in err
