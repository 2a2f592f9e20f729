"""Elastic scheduling as one component of the daemon: builds the profile source, the namespace watch, the
webhook (its certificate first) and the burst controller, and hands their loops to the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from vk_provider.elastic.burst import BurstController
from vk_provider.elastic.certs import Material, WebhookCertificates, ssl_context
from vk_provider.elastic.namespaces import NamespaceLabels
from vk_provider.elastic.profiles import ProfileSource
from vk_provider.elastic.target import VirtualNode, toleration_for
from vk_provider.elastic.webhook import WebhookServer
from vk_provider.fence import NotLeader
from vk_provider.kube.client import KubeAPI
from vk_provider.kube.events import EventRecorder
from vk_provider.provider import Pod, PodLookup
from vk_provider.settings import ElasticSettings

log = structlog.get_logger("vk_provider.elastic")

Spawn = Callable[..., Any]  # Supervisor.spawn(name, coroutine, *, critical=..., oneshot=...)
NAMESPACES_SYNC_TIMEOUT = 10.0
STANDBY_CERT_RETRY_SECONDS = 0.5


class Elastic:
    def __init__(
        self,
        api: KubeAPI,
        recorder: EventRecorder,
        settings: ElasticSettings,
        *,
        config_file: Path | None,
        node_name: str,
        node_labels: Callable[[], Mapping[str, str]],
        taint: str | None,
        on_node: PodLookup,
        validate: Callable[[Pod], str | None],
    ) -> None:
        self.api = api
        self.settings = settings
        self.profiles = ProfileSource(settings, config_file)
        self.namespaces = NamespaceLabels(api)
        self.node = VirtualNode(node_name, node_labels, toleration_for(taint))
        self.burst = BurstController(
            api,
            recorder,
            decide=self.profiles.decide,
            namespace_labels=self.namespaces.labels,
            node=self.node,
            on_node=on_node,
            validate=validate,
            deletion_cost=settings.deletion_cost,
        )
        self.webhook = WebhookServer(
            decide=self.profiles.decide,
            namespace_labels=self.namespaces.labels,
            node=self.node,
            bind_address=settings.webhook_bind_address,
            port=settings.webhook_port,
        )
        self.ca_published = False
        self._material: Material | None = None
        self._serving = asyncio.Event()

    async def start(self, spawn: Spawn, *, leading: bool = True) -> None:
        """Every replica serves the webhook (certificate from the Secret or files); the leader also publishes
        its CA and runs the burst controller (``lead``). A standby (``leading=False``) serves once the leader
        has stored the certificate, in the background, and leads when the daemon calls ``lead``."""
        spawn("elastic.namespaces", self.namespaces.run())
        spawn("elastic.profile", self.profiles.run())
        if leading:
            await self._serve()
            await self.lead(spawn)
        else:
            spawn("elastic.webhook", self._serve(), oneshot=True)

    async def _serve(self) -> None:
        certs = WebhookCertificates(self.api, self.settings)
        while True:
            try:
                material = await certs.ensure()
                break
            except NotLeader:
                # A standby cannot store a certificate: it reads the one the leader stores.
                await asyncio.sleep(STANDBY_CERT_RETRY_SECONDS)
        # Decisions need the namespaces' labels: serve once they are listed (or after a bounded wait, deciding
        # with what is known then rather than not at all).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.namespaces.informer.synced.wait(), NAMESPACES_SYNC_TIMEOUT)
        await self.webhook.start(ssl_context(material))
        self._material = material
        self._serving.set()

    async def lead(self, spawn: Spawn) -> None:
        """The leader's part: the caBundle (once the webhook serves) and the burst controller."""
        await self._serving.wait()
        assert self._material is not None
        if self.settings.cert_file is None:
            self.ca_published = await WebhookCertificates(self.api, self.settings).publish_ca_bundle(
                self._material.ca_pem
            )
        spawn("elastic.burst.watch", self.burst.informer.run())
        spawn("elastic.burst", self.burst.run())

    async def stop(self) -> None:
        await self.webhook.stop()
