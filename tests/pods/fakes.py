"""A test double of the backend side of the provider contract (PodLifecycle), in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from vk_provider.provider import BackendGroup, BackendPod, Pod, PodResources


def _ident(pod: Pod) -> tuple[str, str, str]:
    m = pod["metadata"]
    return m["namespace"], m["name"], m["uid"]


class FakeProvider:
    def __init__(self) -> None:
        self.groups: dict[str, BackendPod] = {}  # uid -> group
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, list[Exception]] = {}
        self.created_resources: dict[str, PodResources] = {}
        self.changes: asyncio.Queue[BackendPod] = asyncio.Queue()

    def _maybe_fail(self, action: str) -> None:
        errs = self.fail.get(action)
        if errs:
            raise errs.pop(0)

    def add_group(self, ns: str, name: str, uid: str, *, status: str = "Running", age: float = 3600.0) -> BackendPod:
        bp = BackendPod(
            namespace=ns,
            name=name,
            uid=uid,
            group_id=f"eci-{uid}",
            group_status=status,
            status={"phase": status if status in ("Running", "Pending", "Succeeded", "Failed") else "Running"},
            created=datetime.now(UTC) - timedelta(seconds=age),
        )
        self.groups[uid] = bp
        return bp

    async def create_pod(self, pod: Pod, resources: PodResources) -> None:
        ns, name, uid = _ident(pod)
        self.calls.append(("create", uid))
        self._maybe_fail("create")
        self.created_resources[uid] = resources
        if uid not in self.groups:
            self.add_group(ns, name, uid, status="Pending", age=0)

    async def update_pod(self, pod: Pod, resources: PodResources) -> None:
        self.calls.append(("update", _ident(pod)[2]))
        self._maybe_fail("update")

    async def delete_pod(self, pod: Pod) -> None:
        uid = _ident(pod)[2]
        self.calls.append(("delete", uid))
        self._maybe_fail("delete")
        if uid in self.groups:
            self.groups[uid].group_status = "Terminating"

    async def backend_pod(self, pod: Pod) -> BackendPod | None:
        uid = _ident(pod)[2]
        self.calls.append(("get", uid))
        return self.groups.get(uid)

    async def backend_pods(self) -> list[BackendPod]:
        self.calls.append(("list", ""))
        self._maybe_fail("list")
        return list(self.groups.values())

    async def backend_groups(self) -> list[BackendGroup]:
        self.calls.append(("groups", ""))
        self._maybe_fail("groups")
        return [BackendGroup(b.namespace, b.name, b.uid, b.group_id, b.created) for b in self.groups.values()]

    async def status_changes(self) -> AsyncIterator[BackendPod]:
        while True:
            yield await self.changes.get()

    async def delete_group(self, group_id: str) -> None:
        self.calls.append(("delete_group", group_id))
        for uid, bp in list(self.groups.items()):
            if bp.group_id == group_id:
                del self.groups[uid]

    async def ping(self) -> None:
        self.calls.append(("ping", ""))
        self._maybe_fail("ping")

    def actions(self, action: str) -> list[str]:
        return [k for a, k in self.calls if a == action]


def make_pod(name: str, *, ns: str = "default", uid: str | None = None, node: str = "vk", **spec: Any) -> Pod:
    body: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox:1.36"}], "nodeName": node}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid or f"uid-{name}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": body,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
