"""Wiring: build every component from Settings, start them in order, stop them in reverse.

``Daemon.start()`` returns once the Node is registered and the kubelet API is listening;
``wait_ready()`` once the Node reported Ready (pod watch synced and existing groups adopted; if the first
adoption listing fails, e.g. ECI unreachable, Ready anyway while adoption retries and holds creates and
deletes). ``stop()``
(what SIGTERM does) stops taking work, lets in-flight reconciles finish within
``pods.shutdown_timeout_seconds``, and never deletes a container group.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import signal
import time
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vk_provider.eci.provider import ECIProvider
from vk_provider.elastic.component import Elastic
from vk_provider.kube.client import KubeAPI, create_api_client
from vk_provider.kube.events import EventRecorder
from vk_provider.kubelet.server import KubeletServer
from vk_provider.log import configure_logging
from vk_provider.metrics import REGISTRY
from vk_provider.node.controller import NodeController
from vk_provider.pods.controller import PodController
from vk_provider.provider import Backend
from vk_provider.settings import Settings
from vk_provider.supervisor import Supervisor

log = structlog.get_logger("vk_provider.app")


def _build_provider(settings: Settings) -> ECIProvider:
    return ECIProvider(
        settings.eci,
        node_name=settings.node.name,
        log_poll_interval_seconds=settings.kubelet.log_poll_interval_seconds,
        stats_cache_seconds=settings.kubelet.stats_cache_seconds,
    )


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc's malloc_trim); a no-op elsewhere.

    A burst of thousands of pods parses and drops a lot of JSON; glibc keeps the freed chunks, so RSS
    would stay at the burst's peak for good. Trimming after a collection returns them.
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


async def run_heap_trimmer(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        trim_heap()


class Daemon:
    """The whole daemon in one object (used by ``vk-provider run``, the sandbox and the e2e tests)."""

    def __init__(self, settings: Settings, *, provider: Backend | None = None, with_kubelet: bool = True) -> None:
        self.settings = settings
        self.node_name = settings.node.name
        self.kubelet_port: int = 0
        self.metrics_url: str = ""
        self.supervisor = Supervisor()
        self._provider: Backend | None = provider
        self._owns_provider = provider is None
        self._with_kubelet = with_kubelet
        self._kube: KubeAPI | None = None
        self._kubelet: KubeletServer | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.pods: PodController | None = None
        self.node: NodeController | None = None
        self.elastic: Elastic | None = None
        self._workers: list[asyncio.Task[Any]] = []
        self._started = False

    @property
    def provider(self) -> Backend:
        assert self._provider is not None, "the daemon is not started"
        return self._provider

    async def start(self) -> None:
        s = self.settings
        try:
            api_client = await create_api_client(s.kube)
            self._kube = kube = KubeAPI(api_client, timeout=s.kube.request_timeout_seconds)
            if self._provider is None:
                self._provider = _build_provider(s)
            provider = self._provider
            recorder = EventRecorder(kube, host=self.node_name)
            self.pods = pods = PodController(kube, provider, recorder, s.pods, node_name=self.node_name)
            if self._owns_provider:
                await provider.start(pods)
            await self._start_metrics()
            self.supervisor.spawn("pods.watch", pods.run_watch())
            if self._with_kubelet:
                self._kubelet = KubeletServer(
                    s.kubelet,
                    node_name=self.node_name,
                    node_addresses=[a for a in (s.node.internal_ip, "127.0.0.1") if a],
                    pods=pods,
                    streams=provider,
                    api=api_client,
                )
                await self._kubelet.start()
                self.kubelet_port = int(self._kubelet.port)
            self.node = node = NodeController(
                kube,
                s.node,
                region=s.eci.region,
                kubelet_port=self.kubelet_port,
                ping=provider.ping,
                pods_ready=lambda: pods.ready,
                adoption_pending=pods.adoption.pending,
                quota=provider.quota,
            )
            await node.register()
            self.supervisor.spawn("node.lease", node.run_lease())
            self.supervisor.spawn("node.status", node.run_status())
            self.supervisor.spawn("node.ping", node.run_ping())
            self.supervisor.spawn("pods.adopt", self._adopt_then_ready(), oneshot=True)
            for i in range(s.pods.workers):
                self._workers.append(self.supervisor.spawn(f"pods.worker.{i}", pods.run_worker(), critical=False))
            self.supervisor.spawn("pods.status", pods.sync.run())
            self.supervisor.spawn("pods.gc", pods.gc.run())
            self.supervisor.spawn("pods.disruption", pods.disruptions.run())
            self.supervisor.spawn("pods.deadline", pods.deadline.run())
            self.supervisor.spawn("memory.trim", run_heap_trimmer(60.0))
            if s.elastic.enabled:
                self.elastic = Elastic(
                    kube,
                    recorder,
                    s.elastic,
                    config_file=s.config_file,
                    node_name=self.node_name,
                    node_labels=node.labels,
                    taint=s.node.taint,
                    on_node=pods,
                    validate=provider.validate,
                )
                await self.elastic.start(self.supervisor.spawn)
            self._started = True
            log.info("daemon started", node=self.node_name, kubelet_port=self.kubelet_port, metrics=self.metrics_url)
        except BaseException:
            await self.stop()
            raise

    async def _adopt_then_ready(self) -> None:
        assert self.pods is not None and self.node is not None
        await self.pods.informer.synced.wait()
        self.node.notify()  # the watch synced: the node writes that it is listing groups for adoption
        await self.pods.adoption.run(notify=self.node.notify)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until the Node was written Ready (or the daemon failed)."""
        assert self.node is not None, "start() first"
        ready = asyncio.ensure_future(self.node.ready_written.wait())
        failed = asyncio.ensure_future(self.supervisor.failed.wait())
        try:
            await asyncio.wait({ready, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            failed.cancel()
        if self.supervisor.failed.is_set():
            raise RuntimeError(f"daemon failed: {', '.join(self.supervisor.failures)}")
        if not self.node.ready_written.is_set():
            raise TimeoutError("node did not become Ready")

    async def wait_serving(self, timeout: float = 30.0) -> None:
        """Until the kubelet API serves with its certificate (tls_mode=csr waits for the CSR to be signed)."""
        if self._kubelet is None:
            return
        deadline = time.monotonic() + timeout
        while not self._kubelet.ready:
            if time.monotonic() > deadline:
                raise TimeoutError("the kubelet serving certificate was never issued (is the CSR approved?)")
            await asyncio.sleep(0.05)

    async def _start_metrics(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        m = self.settings.metrics
        site = web.TCPSite(runner, m.bind_address, m.port)
        await site.start()
        self._metrics_runner = runner
        port = runner.addresses[0][1]
        host = "127.0.0.1" if m.bind_address in ("0.0.0.0", "::", "") else m.bind_address
        self.metrics_url = f"http://{host}:{port}/metrics"

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.supervisor.failed.is_set():
            return web.Response(status=500, text="failed: " + ", ".join(self.supervisor.failures) + "\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self.node is not None and self.node.ready_written.is_set() and self.pods is not None and self.pods.ready
        return web.Response(status=200 if ready else 503, text="ok\n" if ready else "not ready\n")

    async def stop(self) -> None:
        """Graceful stop: no new work, in-flight calls get a deadline, no group is ever deleted."""
        self.supervisor.begin_shutdown()
        if self.pods is not None:
            await self.pods.drain()
            await self.supervisor.join(self._workers, timeout=self.settings.pods.shutdown_timeout_seconds)
        await self.supervisor.stop()
        self._workers.clear()
        if self.elastic is not None:
            await self.elastic.stop()
            self.elastic = None
        if self._kubelet is not None:
            with contextlib.suppress(Exception):
                await self._kubelet.stop()
            self._kubelet = None
        if self._provider is not None and self._owns_provider:
            with contextlib.suppress(Exception):
                await self._provider.close()
            self._provider = None
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self._kube is not None:
            await self._kube.close()
            self._kube = None
        if self._started:
            log.info("daemon stopped", node=self.node_name)
        self._started = False


async def run_until_signalled(settings: Settings) -> int:
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await daemon.start()
    except Exception as exc:
        log.error("daemon failed to start", error=repr(exc))
        return 1
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(daemon.supervisor.failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    code = 1 if daemon.supervisor.failed.is_set() else 0
    log.info("stopping", reason="task failure" if code else "signal")
    await daemon.stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return code


def main(settings: Settings) -> int:
    """Entry point of ``vk-provider run``."""
    configure_logging(settings.log.level, settings.log.format)
    return asyncio.run(run_until_signalled(settings))
