"""The simulator's exec WebSocket speaks kubelet channel.k8s.io v1 as ECI is seen to; the unknowns are options."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.sandbox.eci.conftest import call, create_request, exec_command, status_is, wait_for
from vk_sandbox.eci.exec_ws import KUBELET_SUBPROTOCOLS, ExecOptions
from vk_sandbox.eci.server import ECISimulator


async def _running_group(sim: ECISimulator) -> str:
    req = create_request("execws", containers=[{"Name": "main", "Image": "busybox", "Commands": ["sleep", "3600"]}])
    gid = str((await call(sim, req))["ContainerGroupId"])
    await wait_for(sim, gid, status_is("Running"))
    return gid


async def _uri(sim: ECISimulator, gid: str, command: list[str], **params: Any) -> str:
    return str((await exec_command(sim, gid, command, **params))["WebSocketUri"])


async def _frames(ws: aiohttp.ClientWebSocketResponse) -> list[bytes]:
    frames = []
    async with asyncio.timeout(10):
        async for msg in ws:
            assert msg.type == aiohttp.WSMsgType.BINARY
            frames.append(bytes(msg.data))
    return frames


def _channel(frames: list[bytes], channel: int) -> bytes:
    return b"".join(f[1:] for f in frames if f[0] == channel)


@pytest.fixture
async def short_idle(tmp_path: Path) -> AsyncIterator[ECISimulator]:
    async with ECISimulator(directory=tmp_path, exec_options=ExecOptions(idle_timeout=0.5)) as sim:
        yield sim


async def test_v1_by_default_lone_frame_and_error_text(sim: ECISimulator) -> None:
    """An offered subprotocol is not chosen; a lone 0x01 opens the stream; success leaves channel 3 silent and a
    non-zero exit is the kubelet's text; a command that cannot start is an InternalError text."""
    gid = await _running_group(sim)
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(await _uri(sim, gid, ["echo", "hi"]), protocols=("v5.channel.k8s.io",)) as ws:
            assert ws.protocol is None
            frames = await _frames(ws)
            assert ws.close_code == aiohttp.WSCloseCode.OK
        assert frames[0] == b"\x01" and _channel(frames, 1) == b"hi\n" and _channel(frames, 3) == b""
        async with s.ws_connect(await _uri(sim, gid, ["sh", "-c", "exit 3"])) as ws:
            frames = await _frames(ws)
        assert _channel(frames, 3) == (
            b"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        )
        async with s.ws_connect(await _uri(sim, gid, ["no-such-command-here"])) as ws:
            frames = await _frames(ws)
        assert _channel(frames, 3).startswith(b"Internal error occurred: error executing command in container: ")


async def test_v1_has_no_stdin_close_and_idle_sockets_close(short_idle: ECISimulator) -> None:
    """[255, 0] means nothing in v1, so `cat` never sees EOF; with no frame from the client for the idle
    timeout the socket closes (going away), which stops the command."""
    gid = await _running_group(short_idle)
    uri = await _uri(short_idle, gid, ["sh", "-c", "cat; echo eof-seen"])
    async with aiohttp.ClientSession() as s, s.ws_connect(uri, autoping=False) as ws:
        await ws.send_bytes(b"\x00typed\n")
        await ws.send_bytes(b"\xff\x00")
        frames = await _frames(ws)
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    assert _channel(frames, 1) == b"typed\n" and _channel(frames, 3) == b""


async def test_pings_keep_an_idle_session_open(short_idle: ECISimulator) -> None:
    """A command quiet for longer than the idle timeout finishes when the client pings."""
    gid = await _running_group(short_idle)
    uri = await _uri(short_idle, gid, ["sh", "-c", "sleep 1.2; echo done"])
    async with aiohttp.ClientSession() as s, s.ws_connect(uri, heartbeat=0.2) as ws:
        frames = await _frames(ws)
        assert ws.close_code == aiohttp.WSCloseCode.OK
    assert _channel(frames, 1) == b"done\n"


async def test_kubelet_subprotocols_when_enabled(tmp_path: Path) -> None:
    """With the subprotocols accepted, v5 is chosen, [255, 0] closes stdin and channel 3 carries a JSON Status."""
    options = ExecOptions(subprotocols=KUBELET_SUBPROTOCOLS)
    async with ECISimulator(directory=tmp_path, exec_options=options) as sim:
        gid = await _running_group(sim)
        uri = await _uri(sim, gid, ["sh", "-c", "cat; exit 4"])
        async with aiohttp.ClientSession() as s, s.ws_connect(uri, protocols=("v5.channel.k8s.io",)) as ws:
            assert ws.protocol == "v5.channel.k8s.io"
            await ws.send_bytes(b"\x00typed\n")
            await ws.send_bytes(b"\xff\x00")
            frames = await _frames(ws)
    status = json.loads(_channel(frames, 3))
    assert _channel(frames, 1) == b"typed\n"
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"] == [
        {"reason": "ExitCode", "message": "4"}
    ]


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown exec subprotocol"):
        ExecOptions(subprotocols=("v9.channel.k8s.io",))
    with pytest.raises(ValueError, match="positive"):
        ExecOptions(idle_timeout=0)
