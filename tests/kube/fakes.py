"""Test doubles for the other side of the Kubernetes boundary: an in-memory KubeAPI.

It stores objects by path, applies JSON Patches and merge patches (with conditions merged by type for
strategic merge patches, as the real server does), honours DELETE preconditions and records every call.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator
from typing import Any

import jsonpatch

from vk_provider.kube.client import STRATEGIC_MERGE_PATCH, KubeError

_rv = itertools.count(1)


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif strategic and k == "conditions" and isinstance(v, list):
            by_type = {c.get("type"): c for c in out.get(k) or []}
            for c in v:
                by_type[c.get("type")] = {**by_type.get(c.get("type"), {}), **c}
            out[k] = list(by_type.values())
        else:
            out[k] = merge_patch(out.get(k), v, strategic=strategic)
    return out


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.fail_next: dict[tuple[str, str], KubeError] = {}

    # helpers for tests
    def put(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(_rv))
        self.objects[path] = obj
        return obj

    def events(self) -> list[dict[str, Any]]:
        return [o for p, o in self.objects.items() if "/events/" in p]

    def reasons(self) -> list[str]:
        return [str(e.get("reason")) for e in self.events()]

    def writes(self, method: str, suffix: str = "") -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] == method and c[1].endswith(suffix)]

    # the KubeAPI surface the controllers use
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        self.calls.append((method, path, copy.deepcopy(body)))
        err = self.fail_next.pop((method, path), None)
        if err is not None:
            raise err
        base = path[: -len("/status")] if path.endswith("/status") else path
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            prefix = path.rstrip("/") + "/"
            items = [
                copy.deepcopy(o)
                for p, o in self.objects.items()
                if p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
            if len(path.strip("/").split("/")) in (3, 5):  # a core collection, not a named object
                return {"items": items, "metadata": {"resourceVersion": str(next(_rv))}}
            raise KubeError(404, "NotFound", f"{path} not found")
        if method == "POST":
            if path.endswith("/token"):
                return {
                    "status": {"token": "tok-" + path.split("/")[-2], "expirationTimestamp": "2099-01-01T00:00:00Z"}
                }
            name = body["metadata"]["name"]
            full = f"{path}/{name}"
            if full in self.objects:
                raise KubeError(409, "AlreadyExists", f"{name} exists")
            obj = copy.deepcopy(body)
            obj["metadata"].setdefault("uid", f"uid-{name}")
            return copy.deepcopy(self.put(full, obj))
        if base not in self.objects:
            raise KubeError(404, "NotFound", f"{base} not found")
        current = self.objects[base]
        if method == "PATCH" and content_type == "application/json-patch+json":
            return copy.deepcopy(self.put(base, jsonpatch.apply_patch(current, body)))
        if method == "PATCH":
            uid = ((body or {}).get("metadata") or {}).get("uid")
            if uid and uid != current["metadata"].get("uid"):
                raise KubeError(409, "Conflict", "uid precondition failed")
            patched = merge_patch(current, body, strategic=content_type == STRATEGIC_MERGE_PATCH)
            return copy.deepcopy(self.put(base, patched))
        if method == "PUT":
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"].get("resourceVersion"):
                raise KubeError(409, "Conflict", "resourceVersion mismatch")
            obj = copy.deepcopy(body)
            obj["metadata"]["uid"] = current["metadata"].get("uid")
            return copy.deepcopy(self.put(base, obj))
        if method == "DELETE":
            uid = ((body or {}).get("preconditions") or {}).get("uid")
            if uid and uid != current["metadata"].get("uid"):
                raise KubeError(409, "Conflict", "uid precondition failed")
            del self.objects[base]
            return {"kind": "Status", "status": "Success"}
        raise AssertionError(method)

    async def get(self, path: str, *, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, query=query)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.get(path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def watch_lines(self, path: str, query: dict[str, Any], *, timeout: float) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError
        yield {}
