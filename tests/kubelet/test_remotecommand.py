"""exec/attach over WebSocket and SPDY against a real local process behind the ExecSession contract."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest

from tests.kubelet.conftest import Kubelet
from tests.kubelet.doubles import SpdyClient, insecure_client_ssl, json_of
from tests.waiting import eventually
from vk_provider.errors import InvalidInput
from vk_provider.kubelet import spdy
from vk_provider.kubelet.remotecommand import _resize_messages, exit_status, parse_stream_options

ADMIN = {"Authorization": "Bearer admin-token"}
CMD = "command=sh&command=-c&command="


def q(script: str) -> str:
    from urllib.parse import quote

    return CMD + quote(script)


async def ws_exec(
    kubelet: Kubelet, query: str, protocol: str, stdin: bytes | None = None, *, close_stdin: bool = True
) -> dict[int, bytes]:
    """Run one exec over WebSocket; return bytes per channel."""
    out: dict[int, bytes] = {}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s,
        s.ws_connect(f"{kubelet.url}/exec/default/web/app?{query}", headers=ADMIN, protocols=[protocol]) as ws,
    ):
        assert ws.protocol == protocol
        b64 = "base64" in protocol

        async def send(ch: int, data: bytes) -> None:
            if b64:
                await ws.send_str(str(ch) + base64.b64encode(data).decode())
            else:
                await ws.send_bytes(bytes([ch]) + data)

        if stdin is not None:
            await send(0, stdin)
            if close_stdin:
                await ws.send_bytes(bytes([255, 0]))
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    ch, data = msg.data[0], msg.data[1:]
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    ch, data = int(msg.data[0]), base64.b64decode(msg.data[1:])
                else:
                    break
                out[ch] = out.get(ch, b"") + data
    return out


def test_stream_options() -> None:
    """stdin/stdout/stderr/tty parse from 1/true; tty drops stderr; no stream at all is refused."""
    from multidict import MultiDict

    opts = parse_stream_options(
        MultiDict([("stdin", "true"), ("stderr", "1"), ("tty", "1"), ("command", "ls")]), needs_command=True
    )
    assert (opts.stdin, opts.stdout, opts.stderr, opts.tty, opts.command) == (True, False, False, True, ("ls",))
    with pytest.raises(InvalidInput):
        parse_stream_options(MultiDict([("command", "ls")]), needs_command=True)
    with pytest.raises(InvalidInput):
        parse_stream_options(MultiDict([("stdout", "1")]), needs_command=True)
    with pytest.raises(InvalidInput):
        parse_stream_options(MultiDict([("stdout", "perhaps"), ("command", "ls")]), needs_command=True)


def test_exit_status_shape() -> None:
    """Exit 0 is Success; non-zero is NonZeroExitCode with an ExitCode cause carrying the number."""
    assert exit_status(0) == {"metadata": {}, "status": "Success"}
    st = exit_status(3)
    assert st["reason"] == "NonZeroExitCode" and st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_resize_messages_are_read_back_to_back() -> None:
    """Resize JSON objects arriving concatenated and split are each decoded once."""
    buf = bytearray(b'{"Width":80,"Height":24}{"Width":100,')
    assert _resize_messages(buf) == [(80, 24)]
    buf += b'"Height":30}'
    assert _resize_messages(buf) == [(100, 30)]
    assert buf == b""


async def test_ws_v5_exec_with_stdin_half_close_and_exit_code(kubelet: Kubelet) -> None:
    """v5: stdin reaches the process, the 255 close signal ends its stdin, exit 3 comes back as a Status."""
    out = await ws_exec(
        kubelet, q("cat; echo err >&2; exit 3") + "&stdin=1&stdout=1&stderr=1", "v5.channel.k8s.io", b"hello\n"
    )
    assert out[1] == b"hello\n"
    assert out[2] == b"err\n"
    status = json_of(out[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0] == {"reason": "ExitCode", "message": "3"}
    assert kubelet.streams.sessions[-1].closed


async def test_ws_v4_success_status(kubelet: Kubelet) -> None:
    """v4: a successful command ends with a Success Status on the error channel."""
    out = await ws_exec(kubelet, q("echo hi") + "&stdout=1", "v4.channel.k8s.io")
    assert out[1] == b"hi\n"
    assert json_of(out[3])["status"] == "Success"


async def test_ws_base64_protocols(kubelet: Kubelet) -> None:
    """v4.base64 and base64.channel.k8s.io carry text frames with the channel digit and base64 payload."""
    out = await ws_exec(kubelet, q("printf '\\001\\377'; exit 2") + "&stdout=1", "v4.base64.channel.k8s.io")
    assert out[1] == b"\x01\xff"
    assert json_of(out[3])["details"]["causes"][0]["message"] == "2"
    out = await ws_exec(kubelet, q("echo x; exit 4") + "&stdout=1", "base64.channel.k8s.io")
    assert out[1] == b"x\n"
    assert b"exit status 4" in out[3]


async def test_ws_channel_k8s_io_success_has_no_error_payload(kubelet: Kubelet) -> None:
    """channel.k8s.io (v1): success leaves the error channel empty; output still flows."""
    out = await ws_exec(kubelet, q("echo one") + "&stdout=1", "channel.k8s.io")
    assert out == {1: b"one\n"}


async def test_ws_tty_resize_reaches_the_session(kubelet: Kubelet) -> None:
    """With tty, resize messages on channel 4 reach ExecSession.resize."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s,
        s.ws_connect(
            f"{kubelet.url}/exec/default/web/app?{q('read x; echo $x')}&stdin=1&stdout=1&tty=1",
            headers=ADMIN,
            protocols=["v5.channel.k8s.io"],
        ) as ws,
    ):
        await ws.send_bytes(b"\x04" + json.dumps({"Width": 120, "Height": 40}).encode())
        await ws.send_bytes(b"\x00go\n")
        got = b""
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                if msg.data[0] == 1:
                    got += msg.data[1:]
    assert got == b"go\n"
    assert kubelet.streams.sessions[-1].resizes == [(120, 40)]


async def test_ws_unknown_subprotocol_is_refused_with_accepted_list(kubelet: Kubelet) -> None:
    """A WebSocket offering only unknown subprotocols gets 403 and X-Accepted-Stream-Protocol-Versions."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(
                f"{kubelet.url}/exec/default/web/app?{q('true')}&stdout=1",
                headers=ADMIN,
                protocols=["v9.channel.k8s.io"],
            )
        assert err.value.status == 403


async def test_ws_client_leaving_closes_the_session(kubelet: Kubelet) -> None:
    """A client that disconnects mid-exec makes the server close the ExecSession (process killed)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s:
        ws = await s.ws_connect(
            f"{kubelet.url}/exec/default/web/app?{q('sleep 30')}&stdout=1",
            headers=ADMIN,
            protocols=["v4.channel.k8s.io"],
        )
        await eventually(lambda: kubelet.streams.sessions, timeout=2, interval=0.02, what="an exec session")
        await ws.close()
    session = kubelet.streams.sessions[-1]
    async with asyncio.timeout(5):
        await session.proc.wait()
    await eventually(lambda: session.closed, timeout=2, interval=0.02, what="the session to be closed")


async def test_attach_not_supported_is_501_on_both_protocols(kubelet: Kubelet) -> None:
    """attach against a backend without it answers 501 with the reason, over WebSocket and SPDY, never hanging."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(
                f"{kubelet.url}/attach/default/web/app?stdout=1", headers=ADMIN, protocols=["v5.channel.k8s.io"]
            )
        assert err.value.status == 501
    c = await SpdyClient.connect(
        kubelet.server.port, "/attach/default/web/app?stdout=1", protocols=["v4.channel.k8s.io"], token="admin-token"
    )
    assert c.status == 501
    body = await asyncio.wait_for(c.reader.read(4096), 5)
    assert b"attach is not supported" in body
    await c.close()


async def spdy_exec(
    kubelet: Kubelet,
    query: str,
    protocol: str,
    *,
    stdin: bytes | None = None,
    stdin_stream: bool = False,
    tty: bool = False,
) -> tuple[SpdyClient, dict[str, int]]:
    """An exec over SPDY with its streams opened and replied to; ``stdin`` is sent (then FIN) at once, while
    ``stdin_stream`` only opens the stream for the test to write to."""
    c = await SpdyClient.connect(
        kubelet.server.port,
        f"/exec/default/web/app?{query}",
        protocols=[protocol, "channel.k8s.io"],
        token="admin-token",
    )
    assert c.status == 101, c.response_headers
    assert f"X-Stream-Protocol-Version: {protocol}" in c.response_headers
    ids = {"error": c.open({"streamtype": "error"})}
    if stdin is not None or stdin_stream:
        ids["stdin"] = c.open({"streamtype": "stdin"})
    ids["stdout"] = c.open({"streamtype": "stdout"})
    if tty:
        ids["resize"] = c.open({"streamtype": "resize"})
    else:
        ids["stderr"] = c.open({"streamtype": "stderr"})
    await c.pump(lambda cl: set(ids.values()) <= cl.replied)
    if stdin is not None:
        c.send(ids["stdin"], stdin, fin=True)
    return c, ids


async def test_spdy_v4_exec_exit_code_stdin_and_teardown_order(kubelet: Kubelet) -> None:
    """SPDY v4: every stream gets SYN_REPLY; stdin then FIN reaches the process; Status with exit 3; then GOAWAY."""
    c, ids = await spdy_exec(
        kubelet, q("cat; echo e >&2; exit 3") + "&stdin=1&stdout=1&stderr=1", "v4.channel.k8s.io", stdin=b"piped\n"
    )
    await c.pump(lambda cl: cl.goaway is not None or cl.eof)
    assert c.goaway is not None
    assert bytes(c.data[ids["stdout"]]) == b"piped\n"
    assert bytes(c.data[ids["stderr"]]) == b"e\n"
    status = json_of(c.data[ids["error"]])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"
    assert {ids["error"], ids["stdout"], ids["stderr"]} <= c.fin
    await c.close()


async def test_spdy_v5_success_and_tty_resize(kubelet: Kubelet) -> None:
    """With tty (v3+) the resize stream feeds ExecSession.resize; v5 success carries a Success Status."""
    c, ids = await spdy_exec(
        kubelet, q("read x; echo got $x") + "&stdin=1&stdout=1&tty=1", "v5.channel.k8s.io", stdin_stream=True, tty=True
    )
    c.send(ids["resize"], b'{"Width":90,"Height":33}')
    await eventually(lambda: kubelet.streams.sessions[-1].resizes, timeout=2, interval=0.01, what="the resize")
    c.send(ids["stdin"], b"go\n", fin=True)
    await c.pump(lambda cl: cl.goaway is not None or cl.eof)
    assert kubelet.streams.sessions[-1].resizes == [(90, 33)]
    assert bytes(c.data[ids["stdout"]]) == b"got go\n"
    assert json_of(c.data[ids["error"]]) == {"metadata": {}, "status": "Success"}
    await c.close()


async def test_spdy_tty_input_waits_for_the_first_window_size(kubelet: Kubelet) -> None:
    """SPDY's streams are independent: with a terminal, input that arrives before the first window size is held
    until it (so `read x; stty size` sees the size kubectl sent before any input)."""
    c, ids = await spdy_exec(
        kubelet, q("read x; echo got $x") + "&stdin=1&stdout=1&tty=1", "v5.channel.k8s.io", stdin_stream=True, tty=True
    )
    c.send(ids["stdin"], b"go\n", fin=True)
    await asyncio.sleep(0.2)  # a deliberate window in which the input must NOT reach the session yet
    c.send(ids["resize"], b'{"Width":90,"Height":33}')
    await c.pump(lambda cl: cl.goaway is not None or cl.eof)
    assert kubelet.streams.sessions[-1].order[:2] == ["resize", "stdin"]
    assert bytes(c.data[ids["stdout"]]) == b"got go\n"
    await c.close()


async def test_spdy_v2_error_stream_is_plain_text(kubelet: Kubelet) -> None:
    """v2 (pre-Status) writes a plain-text error for a non-zero exit."""
    c, ids = await spdy_exec(kubelet, q("exit 5") + "&stdout=1&stderr=1", "v2.channel.k8s.io")
    await c.pump(lambda cl: cl.goaway is not None or cl.eof)
    assert bytes(c.data[ids["error"]]) == b"command terminated with non-zero exit code: exit status 5"
    await c.close()


async def test_spdy_no_common_protocol_is_403_with_accepted_versions(kubelet: Kubelet) -> None:
    """SPDY offering only unknown versions gets 403 and the accepted list."""
    c = await SpdyClient.connect(
        kubelet.server.port,
        f"/exec/default/web/app?{q('true')}&stdout=1",
        protocols=["v9.channel.k8s.io"],
        token="admin-token",
    )
    assert c.status == 403
    assert "X-Accepted-Stream-Protocol-Versions: v5.channel.k8s.io" in c.response_headers
    await c.close()


async def test_spdy_not_supported_exec_is_501(kubelet: Kubelet) -> None:
    """A backend NotSupported on exec is 501 before any upgrade."""
    c = await SpdyClient.connect(
        kubelet.server.port,
        "/exec/default/web/app?command=unsupported&stdout=1",
        protocols=["v4.channel.k8s.io"],
        token="admin-token",
    )
    assert c.status == 501
    await c.close()


async def test_spdy_ping_is_echoed_and_garbage_gets_goaway_without_harm(kubelet: Kubelet) -> None:
    """PINGs are echoed; a malformed frame gets GOAWAY and a close; the exec is released; the server lives on."""
    c, _ = await spdy_exec(kubelet, q("sleep 30") + "&stdout=1&stderr=1", "v4.channel.k8s.io")
    c.raw(spdy.encode_ping(7))
    await c.pump(lambda cl: 7 in cl.pings)
    c.raw(b"\x80\x02\x00\x06\x00\x00\x00\x04abcd")  # version 2: unsupported
    await c.pump(lambda cl: cl.eof)
    assert c.goaway is not None and c.goaway.status == spdy.GOAWAY_PROTOCOL_ERROR
    await c.close()
    session = kubelet.streams.sessions[-1]
    async with asyncio.timeout(5):
        await session.proc.wait()
    out = await ws_exec(kubelet, q("echo alive") + "&stdout=1", "v4.channel.k8s.io")
    assert out[1] == b"alive\n"


async def test_spdy_unknown_and_duplicate_streams_are_reset(kubelet: Kubelet) -> None:
    """A stream of an unknown type, and data for a stream never opened, are answered with RST_STREAM."""
    c = await SpdyClient.connect(
        kubelet.server.port,
        f"/exec/default/web/app?{q('sleep 30')}&stdout=1",
        protocols=["v4.channel.k8s.io"],
        token="admin-token",
    )
    bogus = c.open({"streamtype": "bogus"})
    c.send(99, b"data for nobody")
    await c.pump(lambda cl: len(cl.resets) >= 2)
    assert {r.stream_id for r in c.resets} == {bogus, 99}
    await c.close()


async def test_spdy_large_output_arrives_complete(kubelet: Kubelet) -> None:
    """Megabytes of output cross SPDY in order and complete, split into frames of bounded size."""
    c, ids = await spdy_exec(
        kubelet, q("head -c 3000000 /dev/zero | tr '\\0' z") + "&stdout=1&stderr=1", "v4.channel.k8s.io"
    )
    await c.pump(lambda cl: cl.goaway is not None or cl.eof, timeout=30)
    assert bytes(c.data[ids["stdout"]]) == b"z" * 3_000_000
    assert json_of(c.data[ids["error"]])["status"] == "Success"
    await c.close()


async def test_attach_when_the_backend_supports_it(kubelet: Kubelet) -> None:
    """attach (no command) streams the attached process over SPDY, stdin included, with its exit status."""
    kubelet.streams.attach_command = ["sh", "-c", "read x; echo attached $x; exit 6"]
    c = await SpdyClient.connect(
        kubelet.server.port,
        "/attach/default/web/app?stdin=1&stdout=1&stderr=1",
        protocols=["v4.channel.k8s.io"],
        token="admin-token",
    )
    assert c.status == 101
    ids = {k: c.open({"streamtype": k}) for k in ("error", "stdin", "stdout", "stderr")}
    await c.pump(lambda cl: set(ids.values()) <= cl.replied)
    c.send(ids["stdin"], b"yes\n", fin=True)
    await c.pump(lambda cl: cl.goaway is not None or cl.eof)
    assert bytes(c.data[ids["stdout"]]) == b"attached yes\n"
    assert json_of(c.data[ids["error"]])["details"]["causes"][0]["message"] == "6"
    await c.close()


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
async def test_stdin_to_a_closed_input_still_yields_output_and_status(kubelet: Kubelet, transport: str) -> None:
    """Input the process no longer accepts (it closed stdin) fails quietly: output and exit status still arrive."""
    script = q("exec 0<&-; sleep 0.5; echo done; exit 7")
    chunk = b"y" * 65536
    if transport == "websocket":
        out: dict[int, bytes] = {}
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s,
            s.ws_connect(
                f"{kubelet.url}/exec/default/web/app?{script}&stdin=1&stdout=1",
                headers=ADMIN,
                protocols=["v4.channel.k8s.io"],
            ) as ws,
        ):
            for _ in range(16):
                await ws.send_bytes(b"\x00" + chunk)
            async with asyncio.timeout(10):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    out[msg.data[0]] = out.get(msg.data[0], b"") + msg.data[1:]
        assert out[1] == b"done\n"
        assert json_of(out[3])["details"]["causes"][0]["message"] == "7"
        return
    c = await SpdyClient.connect(
        kubelet.server.port,
        f"/exec/default/web/app?{script}&stdin=1&stdout=1&stderr=1",
        protocols=["v4.channel.k8s.io"],
        token="admin-token",
    )
    ids = {k: c.open({"streamtype": k}) for k in ("error", "stdin", "stdout", "stderr")}
    for _ in range(16):
        c.send(ids["stdin"], chunk)
    await c.pump(lambda cl: cl.goaway is not None or cl.eof)
    assert bytes(c.data[ids["stdout"]]) == b"done\n"
    assert json_of(c.data[ids["error"]])["details"]["causes"][0]["message"] == "7"
    await c.close()


async def test_spdy_streams_opened_after_the_set_is_complete_are_refused(kubelet: Kubelet) -> None:
    """A stream opened once exec is running is refused with RST_STREAM instead of left unanswered."""
    c, _ = await spdy_exec(kubelet, q("sleep 30") + "&stdout=1&stderr=1", "v4.channel.k8s.io")
    late = c.open({"streamtype": "stdout"})
    await c.pump(lambda cl: any(r.stream_id == late for r in cl.resets))
    assert [r.status for r in c.resets if r.stream_id == late] == [spdy.REFUSED_STREAM]
    await c.close()
