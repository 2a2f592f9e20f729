"""Port-forward over SPDY (portforward.k8s.io) and over WebSocket channels, to a local echo server."""

from __future__ import annotations

import asyncio
import struct

import aiohttp
import pytest
from multidict import MultiDict

from tests.kubelet.conftest import Kubelet
from tests.kubelet.doubles import SpdyClient, insecure_client_ssl
from vk_provider.errors import InvalidInput
from vk_provider.kubelet.portforward import parse_ports

ADMIN = {"Authorization": "Bearer admin-token"}


def test_parse_ports() -> None:
    """ports may be repeated or comma-separated; bad or missing ports are InvalidInput."""
    assert parse_ports(MultiDict([("ports", "80,443"), ("ports", "8080")])) == [80, 443, 8080]
    for bad in ("0", "70000", "http"):
        with pytest.raises(InvalidInput):
            parse_ports(MultiDict([("ports", bad)]))
    with pytest.raises(InvalidInput):
        parse_ports(MultiDict())


async def test_spdy_port_forward_pairs_streams_and_pumps_bytes(kubelet: Kubelet) -> None:
    """A data+error pair with port/requestid headers is answered, dialled, and echoes bytes both ways."""
    c = await SpdyClient.connect(
        kubelet.server.port, "/portForward/default/web", protocols=["portforward.k8s.io"], token="admin-token"
    )
    assert c.status == 101
    assert "X-Stream-Protocol-Version: portforward.k8s.io" in c.response_headers
    err = c.open({"streamtype": "error", "port": "8080", "requestid": "0"})
    data = c.open({"streamtype": "data", "port": "8080", "requestid": "0"})
    await c.pump(lambda cl: {err, data} <= cl.replied)
    c.send(data, b"ping over spdy")
    await c.pump(lambda cl: bytes(cl.data.get(data, b"")) == b"ping over spdy")
    # A second concurrent connection on the same session.
    err2 = c.open({"streamtype": "error", "port": "8080", "requestid": "1"})
    data2 = c.open({"streamtype": "data", "port": "8080", "requestid": "1"})
    c.send(data2, b"second", fin=True)
    await c.pump(lambda cl: {data2, err2} <= cl.fin)
    assert bytes(c.data[data2]) == b"second"
    assert err2 in c.fin
    await c.close()


async def test_spdy_port_forward_dial_failure_is_reported_on_the_error_stream(kubelet: Kubelet) -> None:
    """When the backend cannot dial the port, the error stream carries the reason and both streams end."""
    c = await SpdyClient.connect(
        kubelet.server.port, "/portForward/default/web", protocols=["portforward.k8s.io"], token="admin-token"
    )
    err = c.open({"streamtype": "error", "port": "1", "requestid": "7"})
    data = c.open({"streamtype": "data", "port": "1", "requestid": "7"})
    await c.pump(lambda cl: {err, data} <= cl.fin)
    assert b"nothing listens on port 1" in bytes(c.data[err])
    await c.close()


async def test_spdy_port_forward_unknown_pod_and_protocol(kubelet: Kubelet) -> None:
    """An unknown pod is 404 before the upgrade; a foreign protocol is 403 with the accepted list."""
    c = await SpdyClient.connect(
        kubelet.server.port, "/portForward/default/ghost", protocols=["portforward.k8s.io"], token="admin-token"
    )
    assert c.status == 404
    await c.close()
    c = await SpdyClient.connect(
        kubelet.server.port, "/portForward/default/web", protocols=["v4.channel.k8s.io"], token="admin-token"
    )
    assert c.status == 403
    assert "X-Accepted-Stream-Protocol-Versions: portforward.k8s.io" in c.response_headers
    await c.close()


async def test_websocket_port_forward_channel_form(kubelet: Kubelet) -> None:
    """WebSocket form: the first frame on channels 0 and 1 is the port (LE); channel 0 then echoes data."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s,
        s.ws_connect(
            f"{kubelet.url}/portForward/default/web?ports=8080", headers=ADMIN, protocols=["v4.channel.k8s.io"]
        ) as ws,
    ):
        first = [await asyncio.wait_for(ws.receive_bytes(), 5) for _ in range(2)]
        assert first == [b"\x00" + struct.pack("<H", 8080), b"\x01" + struct.pack("<H", 8080)]
        await ws.send_bytes(b"\x00hello ws")
        got = b""
        while got != b"hello ws":
            msg = await asyncio.wait_for(ws.receive_bytes(), 5)
            assert msg[0] == 0
            got += msg[1:]


async def test_websocket_tunnelled_spdy_is_refused_so_kubectl_falls_back(kubelet: Kubelet) -> None:
    """kubectl's SPDY-over-WebSocket offer gets a clean non-101 (403), which makes it fall back to SPDY."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(
                f"{kubelet.url}/portForward/default/web?ports=80",
                headers=ADMIN,
                protocols=["SPDY/3.1+portforward.k8s.io"],
            )
        assert err.value.status == 403
