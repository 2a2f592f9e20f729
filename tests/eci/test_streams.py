"""logs, exec, attach, port-forward and usage (streams.py) through the provider, against the ECI simulator."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.eci.conftest import PROCESS, make_pod, settings_for, until
from vk_provider.eci.provider import ECIProvider
from vk_provider.errors import InvalidInput, NotFound, NotSupported
from vk_provider.provider import LogOptions, PodResources
from vk_sandbox.eci.server import ECISimulator


@PROCESS
async def test_logs_follow_without_loss_or_duplicates(provider: ECIProvider) -> None:
    """logs -f returns every line exactly once across polls and ends when the container exits."""
    script = "for i in $(seq 1 12); do echo line-$i; sleep 0.1; done"
    pod = make_pod("logger", ["sh", "-c", script], restartPolicy="Never")
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-logger", lambda b: b.status["phase"] in ("Running", "Succeeded"))
    out = b""

    async def follow() -> None:
        nonlocal out
        async for chunk in provider.container_logs(pod, "app", LogOptions(follow=True)):
            out += chunk

    await asyncio.wait_for(follow(), 20)
    assert out.decode().splitlines() == [f"line-{i}" for i in range(1, 13)]


@PROCESS
async def test_logs_follows_of_one_container_share_one_poll(provider: ECIProvider, sim: ECISimulator) -> None:
    """Three clients following one container each get every line once; after their own first fetch they
    share one DescribeContainerLog per interval (0.2 s) instead of polling three times."""
    script = "for i in $(seq 1 20); do echo line-$i; sleep 0.1; done"
    pod = make_pod("shared", ["sh", "-c", script], restartPolicy="Never")
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-shared", lambda b: b.status["phase"] in ("Running", "Succeeded"))
    before = sim.stats()["calls"].get("DescribeContainerLog", 0)
    started = time.monotonic()

    async def follow() -> list[str]:
        out = b""
        async for chunk in provider.container_logs(pod, "app", LogOptions(follow=True)):
            out += chunk
        return out.decode().splitlines()

    outs = await asyncio.wait_for(asyncio.gather(follow(), follow(), follow()), 20)
    took = time.monotonic() - started
    assert outs == [[f"line-{i}" for i in range(1, 21)]] * 3
    calls = sim.stats()["calls"]["DescribeContainerLog"] - before
    assert calls <= 3 + took / 0.2 + 2  # three first fetches, then one poll per interval (and a last one)


async def test_logs_unknown_container_is_not_found(provider: ECIProvider) -> None:
    """Logs of a container the pod does not have raise NotFound."""
    pod = make_pod("nolog", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    with pytest.raises(NotFound):
        async for _ in provider.container_logs(pod, "nope", LogOptions()):
            pass


@PROCESS
async def test_exec_carries_output_and_exit_code(provider: ECIProvider) -> None:
    """exec pumps stdin to the process and returns stdout, stderr and the exit code (`head -n 1`, since
    ECI's exec stream cannot pass stdin's end to a command without a TTY)."""
    pod = make_pod("ex", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-ex", lambda b: b.status["phase"] == "Running")
    sess = await provider.exec(pod, "app", ["sh", "-c", "head -n 1; echo err >&2; exit 3"], stdin=True, tty=False)
    try:
        await sess.write_stdin(b"from-stdin\n")
        await sess.close_stdin()
        got: dict[int, bytes] = {1: b"", 2: b""}
        async for ch, data in sess.output():
            got[ch] += data
        assert got == {1: b"from-stdin\n", 2: b"err\n"}
        assert await sess.exit_code() == 3
    finally:
        await sess.close()


async def test_attach_is_not_supported(provider: ECIProvider) -> None:
    """attach raises NotSupported with a reason instead of hanging."""
    with pytest.raises(NotSupported, match="attach"):
        await provider.attach(make_pod("a", ["true"]), "app", stdin=False, tty=False)


async def test_port_forward_dials_the_pod_ip(provider: ECIProvider) -> None:
    """port_forward connects straight to podIP:port (the simulator's pods live on 127.0.0.1)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        pod = make_pod("pf", ["sleep", "30"])
        await provider.create_pod(pod, PodResources())
        await until(provider, "uid-pf", lambda b: b.status["phase"] == "Running")
        reader, writer = await provider.port_forward(pod, port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        writer.close()
        await writer.wait_closed()
        with pytest.raises(InvalidInput):
            await provider.port_forward(pod, 70000)
    finally:
        server.close()
        await server.wait_closed()


async def test_usage_is_batched(provider: ECIProvider, sim: ECISimulator) -> None:
    """pod_usage reports running pods' containers from one DescribeMultiContainerGroupMetric call."""
    pod = make_pod("use", ["sh", "-c", "sleep 30"])
    await provider.create_pod(pod, PodResources())
    await until(provider, "uid-use", lambda b: b.status["phase"] == "Running")
    usage = await provider.pod_usage()
    assert [(u.name, [c.name for c in u.containers]) for u in usage] == [("use", ["app"])]
    assert sim.stats()["calls"]["DescribeMultiContainerGroupMetric"] == 1


async def test_usage_is_cached_for_the_scrape_interval(sim: ECISimulator) -> None:
    """Within stats_cache_seconds a second pod_usage makes no ECI call."""
    p = ECIProvider(settings_for(sim), node_name="vk", stats_cache_seconds=60)
    await p.start()
    try:
        await p.create_pod(make_pod("cache", ["sleep", "30"]), PodResources())
        await until(p, "uid-cache", lambda b: b.status["phase"] == "Running")
        first = await p.pod_usage()
        second = await p.pod_usage()
        assert first is second and sim.stats()["calls"]["DescribeMultiContainerGroupMetric"] == 1
    finally:
        await p.close()
