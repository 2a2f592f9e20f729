"""The pod controller's test harness: a PodController on in-memory doubles of the API server and the backend."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from tests.kube.fakes import FakeKube
from tests.pods.fakes import FakeProvider
from vk_provider.kube.events import EventRecorder
from vk_provider.pods.controller import PodController
from vk_provider.settings import PodsSettings


class Env:
    """A PodController on an in-memory API server and backend; pods enter through its watch handler."""

    def __init__(self, vanish_grace: float = 0.0, kube: FakeKube | None = None, **settings: Any) -> None:
        self.kube = kube or FakeKube()
        self.provider = FakeProvider()
        self.recorder = EventRecorder(self.kube, host="vk")  # type: ignore[arg-type]
        opts = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "gc_min_age_seconds": 60.0}
        opts.update(settings)
        self.ctl = PodController(
            self.kube,  # type: ignore[arg-type]
            self.provider,
            self.recorder,
            PodsSettings(**opts),
            node_name="vk",
            delete_poll_max_seconds=0.01,
            vanish_grace_seconds=vanish_grace,
        )

    def path(self, pod: dict[str, Any]) -> str:
        m = pod["metadata"]
        return f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}"

    def add(self, pod: dict[str, Any]) -> str:
        stored = self.kube.put(self.path(pod), pod)
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        known = key in self.ctl.informer.cache
        self.ctl.informer.cache[key] = stored
        self.ctl._on_pod_event("MODIFIED" if known else "ADDED", stored)
        return key

    def refresh(self, key: str) -> dict[str, Any]:
        """Feed the API server's current copy back through the watch, as a MODIFIED event would."""
        ns, name = key.split("/")
        obj = copy.deepcopy(self.kube.objects[f"/api/v1/namespaces/{ns}/pods/{name}"])
        self.ctl.informer.cache[key] = obj
        return obj

    def remove(self, key: str) -> None:
        obj = self.ctl.informer.cache.pop(key)
        self.ctl._on_pod_event("DELETED", obj)

    async def ready(self) -> None:
        self.ctl.informer.synced.set()
        await self.ctl.adoption.run()

    async def reconcile(self, key: str) -> None:
        """What one worker does with ``key``."""
        await self.ctl.reconciler.reconcile(key)


def status_patches(env: Env) -> list[Any]:
    """The status PATCHes the controller sent."""
    return env.kube.writes("PATCH", "/status")


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT carrying ``claims`` (only its payload is read here)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"
