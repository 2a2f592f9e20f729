"""Wiring: build every component from Settings, start them in order, stop them in reverse.

Every replica starts the same readers: the pod watch, the ECI provider (its poller keeps the index
warm, at ``ha.standby_poll_interval_seconds`` while standing by), the kubelet API and the metrics.
The writers start only on the leader (``_lead``): the first adoption listing (after one catch-up poll),
then the Node (this replica's address and kubelet port), its Lease, status and ping loops, the
reconcile workers, the status sync and the GC. Every write passes one ``Fence`` (fence.py):
``KubeAPI`` and ``ECIClient`` check it, the elector (``ha.election``) grants it. With ``ha.enabled``
false the fence is open and ``start()`` leads at once.

``Daemon.start()`` returns once the readers run (and, without election, the Node is registered);
``wait_ready()`` once the Node reported Ready (the first adoption listing done, or failed: e.g. ECI
unreachable, Ready anyway while adoption retries and holds creates and deletes). ``stop()`` (what
SIGTERM does) stops taking work, lets in-flight reconciles finish within
``pods.shutdown_timeout_seconds``, never deletes a container group, and then releases the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vk_provider.eci.client import ECIClient
from vk_provider.eci.provider import ECIProvider
from vk_provider.elastic.component import Elastic
from vk_provider.election import LeaderElector, lease_name, lease_namespace, replica_identity
from vk_provider.fence import Fence
from vk_provider.heap import run_heap_trimmer, tune_collector, tune_malloc
from vk_provider.kube.client import KubeAPI, create_api_client
from vk_provider.kube.events import EventRecorder
from vk_provider.kubelet.server import KubeletServer
from vk_provider.log import configure_logging
from vk_provider.metrics import LEADER, REGISTRY, TAKEOVER_SECONDS
from vk_provider.node.controller import NodeController
from vk_provider.pods.controller import PodController
from vk_provider.provider import Backend
from vk_provider.settings import Settings
from vk_provider.supervisor import Supervisor

log = structlog.get_logger("vk_provider.app")

# `vk-provider run`'s exit codes (cli.py's table lists every exit code of the command line).
EXIT_OK, EXIT_FAILURE, EXIT_LOST_LEADERSHIP = 0, 1, 3


def _build_provider(settings: Settings, fence: Fence) -> ECIProvider:
    return ECIProvider(
        settings.eci,
        node_name=settings.node.name,
        log_poll_interval_seconds=settings.kubelet.log_poll_interval_seconds,
        stats_cache_seconds=settings.kubelet.stats_cache_seconds,
        client=ECIClient(settings.eci, fence=fence),
    )


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
        self._eci: ECIProvider | None = None  # the provider when this daemon built it
        self.fence = Fence()
        self.elector: LeaderElector | None = None
        self._recorder: EventRecorder | None = None
        self._election_kube: KubeAPI | None = None
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
        tune_malloc()  # before the ECI SDK's threads exist (heap.py)
        try:
            api_client = await create_api_client(s.kube)
            self._kube = kube = KubeAPI(api_client, timeout=s.kube.request_timeout_seconds, write_gate=self.fence.check)
            if self._provider is None:
                self._provider = self._eci = _build_provider(s, self.fence)
            provider = self._provider
            self._recorder = recorder = EventRecorder(kube, host=self.node_name)
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
            self.node = NodeController(
                kube,
                s.node,
                region=s.eci.region,
                kubelet_port=self.kubelet_port,
                ping=provider.ping,
                pods_ready=lambda: pods.ready,
                adoption_pending=pods.adoption.pending,
                quota=provider.quota,
            )
            self.supervisor.spawn("memory.trim", run_heap_trimmer(60.0))
            if s.ha.enabled:
                # The one unfenced writer, on a client (and connection pool) of its own: a renewal must never
                # queue behind the pod writes of a 10,000-pod burst.
                self._election_kube = KubeAPI(await create_api_client(s.kube), timeout=s.kube.request_timeout_seconds)
                self.elector = LeaderElector(
                    self._election_kube,
                    s.ha,
                    namespace=lease_namespace(s.ha),
                    name=lease_name(s.ha, self.node_name),
                    identity=replica_identity(s.ha),
                    fence=self.fence,
                )
                if self._eci is not None:
                    self._eci.stand_by(s.ha.standby_poll_interval_seconds)
                self.supervisor.spawn("ha.election", self.elector.run(), oneshot=True)
                self.supervisor.spawn("ha.lead", self._lead_when_elected(), oneshot=True)
            else:
                self.fence.open()
                LEADER.set(1)
                await self._lead()
            if s.elastic.enabled:
                self.elastic = Elastic(
                    kube,
                    recorder,
                    s.elastic,
                    config_file=s.config_file,
                    node_name=self.node_name,
                    node_labels=self.node.labels,
                    taint=s.node.taint,
                    on_node=pods,
                    validate=provider.validate,
                )
                # Every replica serves the webhook; the leader also publishes its CA and bursts (with HA, once
                # elected: see _lead). Without HA the fence is open by now, so the certificate can be stored.
                await self.elastic.start(self.supervisor.spawn, leading=not s.ha.enabled)
            self._started = True
            log.info("daemon started", node=self.node_name, kubelet_port=self.kubelet_port, metrics=self.metrics_url)
        except BaseException:
            await self.stop()
            raise

    async def _lead_when_elected(self) -> None:
        assert self.elector is not None
        await self.elector.leading.wait()
        if self._eci is not None:
            self._eci.stand_by(None)
            try:
                await self._eci.catch_up()
            except Exception as exc:
                log.warning("catch-up poll failed; adoption lists the groups instead", error=repr(exc))
        await self._lead()
        started = self.elector.acquired_at
        if started is not None:
            TAKEOVER_SECONDS.observe(time.monotonic() - started)
        previous = self.elector.previous_holder
        message = f"{self.elector.identity} leads node {self.node_name}" + (
            f" (took over from {previous})" if previous else ""
        )
        await self._node_event("LeaderElected", message)

    async def _node_event(self, reason: str, message: str) -> None:
        if self._recorder is None or self.node is None:
            return
        node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.node_name, "uid": self.node.uid or ""}}
        await self._recorder.record(node, "Normal", reason, message)

    async def _lead(self) -> None:
        """Start the writers: the first adoption listing, then the Node (never written NotReady for it,
        so a takeover keeps the node Ready), its loops, the workers, the status sync and the GC."""
        assert self.pods is not None and self.node is not None
        pods, node, s = self.pods, self.node, self.settings
        listed = asyncio.Event()

        def adoption_changed() -> None:
            listed.set()
            node.notify()

        self.supervisor.spawn("pods.adopt", self._adopt(adoption_changed), oneshot=True)
        await listed.wait()  # the listing succeeded, or failed once (then Ready anyway, see adoption.py)
        await node.register()
        self.supervisor.spawn("node.lease", node.run_lease())
        self.supervisor.spawn("node.status", node.run_status())
        self.supervisor.spawn("node.ping", node.run_ping())
        for i in range(s.pods.workers):
            self._workers.append(self.supervisor.spawn(f"pods.worker.{i}", pods.run_worker(), critical=False))
        self.supervisor.spawn("pods.status", pods.sync.run())
        self.supervisor.spawn("pods.gc", pods.gc.run())
        self.supervisor.spawn("pods.disruption", pods.disruptions.run())
        self.supervisor.spawn("pods.deadline", pods.deadline.run())
        if self.elastic is not None and self.settings.ha.enabled:
            await self.elastic.lead(self.supervisor.spawn)

    async def _adopt(self, notify: Callable[[], None]) -> None:
        assert self.pods is not None
        await self.pods.informer.synced.wait()
        await self.pods.adoption.run(notify=notify)

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
        """The leader: the Node written Ready. A standby: its pod watch synced (ready to take over)."""
        if self.elector is not None and not self.elector.leading.is_set():
            ready, text = self.pods is not None and self.pods.ready, "standby"
        else:
            ready, text = self.node is not None and self.node.ready_written.is_set(), "leader"
            ready = ready and self.pods is not None and self.pods.ready
        return web.Response(status=200 if ready else 503, text=f"ok ({text})\n" if ready else "not ready\n")

    async def stop(self) -> None:
        """Graceful stop: no new work, in-flight calls get a deadline, no group is ever deleted; then the
        leader hands its Lease over (an event on the Node says so)."""
        self.supervisor.begin_shutdown()
        if self.pods is not None:
            await self.pods.drain()
            await self.supervisor.join(self._workers, timeout=self.settings.pods.shutdown_timeout_seconds)
        handing_over = self.elector is not None and self.elector.leading.is_set() and self.fence.allowed()
        await self.supervisor.stop()
        self._workers.clear()
        if handing_over and self.elector is not None:
            with contextlib.suppress(Exception):
                await self._node_event("LeaderReleased", f"{self.elector.identity} is stopping and hands over")
            await self.elector.release()
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
        if self._election_kube is not None:
            await self._election_kube.close()
            self._election_kube = None
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
        return EXIT_FAILURE
    tune_collector()  # this process is the daemon's alone (heap.py)
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(daemon.supervisor.failed.wait())}
    if daemon.elector is not None:
        waits.add(asyncio.ensure_future(daemon.elector.lost.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    if daemon.elector is not None and daemon.elector.lost.is_set():
        code, reason = EXIT_LOST_LEADERSHIP, "leadership lost"
    elif daemon.supervisor.failed.is_set():
        code, reason = EXIT_FAILURE, "task failure"
    else:
        code, reason = EXIT_OK, "signal"
    log.info("stopping", reason=reason, exit_code=code)
    await daemon.stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return code


def main(settings: Settings) -> int:
    """Entry point of ``vk-provider run``."""
    configure_logging(settings.log.level, settings.log.format)
    return asyncio.run(run_until_signalled(settings))
