"""core/v1 Events on the objects we act on, de-duplicated with counts as the kubelet does.

An event identical to a recent one (same object, type, reason and message) is not created again:
the existing Event's ``count`` and ``lastTimestamp`` are patched instead, so a pod retried 50 times
shows one line "x50" in ``kubectl describe`` rather than 50 lines. Messages go through the log
redactor and are capped, so no secret or giant SDK dump ends up in an Event.
"""

from __future__ import annotations

import secrets as _random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import structlog

from vk_provider.kube.client import JSON, MERGE_PATCH, KubeAPI, KubeError, now_rfc3339
from vk_provider.log import redact_text

log = structlog.get_logger("vk_provider.kube.events")

COMPONENT = "vk-eci"
MAX_MESSAGE = 1024


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first: str


class EventRecorder:
    """Writes Events; remembers the last ``cache_size`` distinct events for de-duplication."""

    def __init__(self, api: KubeAPI, *, host: str, component: str = COMPONENT, cache_size: int = 4096) -> None:
        self.api = api
        self.host = host
        self.component = component
        self.cache_size = cache_size
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()

    async def record(self, obj: JSON, type_: str, reason: str, message: str, *, field_path: str | None = None) -> None:
        """Record an event on ``obj`` (a Pod or Node dict). Never raises: events are best effort."""
        try:
            await self._record(obj, type_, reason, message, field_path)
        except Exception as exc:
            log.warning("event not recorded", reason=reason, error=repr(exc))

    async def _record(self, obj: JSON, type_: str, reason: str, message: str, field_path: str | None) -> None:
        meta = obj.get("metadata") or {}
        kind = str(obj.get("kind") or "Pod")
        api_version = str(obj.get("apiVersion") or "v1")
        namespace = str(meta.get("namespace") or "default")
        message = redact_text(message)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        uid = str(meta.get("uid") or "")
        key = (kind, namespace, str(meta.get("name")), uid, type_, reason, message, field_path or "")
        now = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            seen.count += 1
            try:
                await self.api.request(
                    "PATCH",
                    f"/api/v1/namespaces/{seen.namespace}/events/{seen.name}",
                    body={"count": seen.count, "lastTimestamp": now},
                    content_type=MERGE_PATCH,
                )
                return
            except KubeError as exc:
                if not exc.not_found:
                    raise
                del self._seen[key]  # expired on the server: start a new one
        involved: dict[str, Any] = {
            "kind": kind,
            "apiVersion": api_version,
            "namespace": namespace if kind != "Node" else "",
            "name": meta.get("name"),
            "uid": uid,
        }
        if meta.get("resourceVersion"):
            involved["resourceVersion"] = meta["resourceVersion"]
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{meta.get('name')}.{_random.token_hex(8)}"
        event_ns = namespace if kind != "Node" else "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": event_ns},
            "involvedObject": involved,
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        }
        await self.api.request("POST", f"/api/v1/namespaces/{event_ns}/events", body=body)
        self._seen[key] = _Seen(name=name, namespace=event_ns, count=1, first=now)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)
