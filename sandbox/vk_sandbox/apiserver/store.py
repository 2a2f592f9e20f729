"""The in-memory object store: JSON dicts, one global resourceVersion, watches with bounded buffers.

Every write happens synchronously inside one event-loop step, so the store needs no lock: a reader never sees a
half-applied write, and every watcher receives events in resourceVersion order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from vk_sandbox.apiserver.defaults import (
    copy_topology_labels,
    default_object,
    taint_new_node,
    validate_object,
    validate_pod_update,
)
from vk_sandbox.apiserver.errors import ApiError, already_exists, bad_request, conflict, forbidden, not_found
from vk_sandbox.apiserver.resources import RESOURCES, ResourceType
from vk_sandbox.apiserver.selectors import Predicate, combine, field_predicate, label_predicate
from vk_sandbox.apiserver.services import allocate as allocate_service
from vk_sandbox.apiserver.services import keep_allocated

_T = TypeVar("_T")
_List = list
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_HAS_GENERATION = {
    "pods",
    "deployments.apps",
    "replicasets.apps",
    "jobs.batch",
    "services",
    "namespaces",
    "poddisruptionbudgets.policy",
}
CSR = "certificatesigningrequests.certificates.k8s.io"
# Types whose status the server resets on create (the kubelet's Node keeps its status).
_RESET_STATUS_ON_CREATE = {
    "deployments.apps",
    "replicasets.apps",
    "jobs.batch",
    "certificatesigningrequests.certificates.k8s.io",
}


def deep_copy(value: _T) -> _T:
    """A deep copy for JSON-shaped values. Strings are shared, not copied: with 10,000 pods that halves the memory
    a C-level copy (marshal, pickle) would take."""
    return cast(_T, _copy(value))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def now_rfc3339(offset_seconds: float = 0.0) -> str:
    t = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


@dataclass(eq=False)
class _Event:
    rv: int
    key: str
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)
class Watch:
    """One watch: an async iterator of ``{"type", "object"}`` events. ``aclose()`` releases it."""

    log: EventLog
    key: str
    namespace: str | None
    pred: Predicate | None
    copy: bool
    limit: int
    buffer: deque[dict[str, Any]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    closed: bool = False
    # The resourceVersion of the newest event this watch has been offered (delivered or filtered out).
    seen_rv: int = 0

    def _offer(self, ev: _Event) -> None:
        self.seen_rv = ev.rv
        if self.closed or self.overflowed or ev.key != self.key:
            return
        meta = ev.obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return
        etype = ev.type
        if self.pred is not None:
            now = self.pred(ev.obj)
            before = ev.old is not None and self.pred(ev.old)
            if etype == "MODIFIED":
                if now and not before:
                    etype = "ADDED"
                elif before and not now:
                    etype = "DELETED"
                elif not now:
                    return
            elif not now:
                return
        if len(self.buffer) >= self.limit:
            # A watcher that falls behind is cut off with 410 rather than holding memory or slowing writers.
            self.overflowed = True
            self.buffer.clear()
        else:
            self.buffer.append({"type": etype, "object": ev.obj})
        self.wake.set()

    @property
    def idle(self) -> bool:
        return not self.buffer

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or None when ``timeout`` passes first. ApiError 410 after an overflow."""
        while not self.buffer:
            if self.overflowed:
                self.aclose_now()
                raise ApiError(410, "Expired", "the watch fell too far behind; re-list and watch again")
            if self.closed:
                raise StopAsyncIteration
            self.wake.clear()
            if timeout is None:
                await self.wake.wait()
            else:
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout)
                except TimeoutError:
                    return None
        ev = self.buffer.popleft()
        if self.copy:
            return {"type": ev["type"], "object": deep_copy(ev["object"])}
        return ev

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> dict[str, Any]:
        ev = await self.get()
        assert ev is not None
        return ev

    def aclose_now(self) -> None:
        self.closed = True
        self.log.watchers.discard(self)
        self.wake.set()

    async def aclose(self) -> None:
        self.aclose_now()


class EventLog:
    """The global resourceVersion, the last ``history`` events, and the open watches every new event is offered to."""

    def __init__(self, *, history: int, watch_buffer: int) -> None:
        self.rv = 1
        self.history: deque[_Event] = deque(maxlen=history)
        self.watchers: set[Watch] = set()
        self.watch_buffer = watch_buffer

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def emit(self, rt: ResourceType, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        ev = _Event(self.rv, rt.key, etype, obj, old)
        self.history.append(ev)
        for w in list(self.watchers):
            w._offer(ev)

    def watch(
        self,
        key: str,
        namespace: str | None,
        pred: Predicate | None,
        copy: bool,
        resource_version: str | None,
        current: _List[dict[str, Any]],
    ) -> Watch:
        """A watch of ``key`` starting with ``current`` as ADDED ("0"/None/""), else replaying the kept events after
        ``resource_version`` (410 when they are no longer kept)."""
        w = Watch(self, key, namespace, pred, copy, self.watch_buffer)
        if resource_version in (None, "", "0"):
            current.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
            w.buffer.extend({"type": "ADDED", "object": o} for o in current)
        else:
            try:
                since = int(resource_version)
            except ValueError as exc:
                raise bad_request(f'invalid resource version "{resource_version}"') from exc
            oldest = self.history[0].rv if self.history else self.rv + 1
            if since < oldest - 1 and since < self.rv:
                raise ApiError(410, "Expired", f"too old resource version: {since} ({oldest - 1})")
            for ev in self.history:
                if ev.rv > since:
                    w._offer(ev)
        w.seen_rv = self.rv
        if w.overflowed:
            raise ApiError(410, "Expired", f"too old resource version: {resource_version}")
        self.watchers.add(w)
        if w.buffer:
            w.wake.set()
        return w


class Store:
    """All objects of the sandbox, as JSON dicts keyed by resource key, then (namespace, name)."""

    def __init__(self, *, history: int = 50_000, watch_buffer: int = 50_000) -> None:
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.events = EventLog(history=history, watch_buffer=watch_buffer)
        self.namespace_guard = True

    # ---- helpers

    @staticmethod
    def resource(key: str) -> ResourceType:
        rt = RESOURCES.get(key)
        if rt is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({key})")
        return RESOURCES[rt.storage_key]

    @property
    def resource_version(self) -> str:
        return str(self.events.rv)

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], dict[str, Any]]:
        return self._objects.setdefault(rt.key, {})

    # ---- reads

    def get(self, key: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        rt = self.resource(key)
        obj = self._bucket(rt).get((namespace or "" if rt.namespaced else "", name))
        return deep_copy(obj) if obj is not None else None

    def _predicate(self, rt: ResourceType, label_selector: str | None, field_selector: str | None) -> Predicate | None:
        return combine(label_predicate(label_selector), field_predicate(field_selector, rt.plural, rt.field_labels))

    def list(
        self,
        key: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[_List[dict[str, Any]], str]:
        items, rv, _ = self.list_page(key, namespace, label_selector=label_selector, field_selector=field_selector)
        return [deep_copy(i) for i in items], rv

    def list_page(
        self,
        key: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[_List[dict[str, Any]], str, str | None]:
        """Items (shared, do not mutate), the list resourceVersion and a continue token (or None)."""
        rt = self.resource(key)
        pred = self._predicate(rt, label_selector, field_selector)
        rv = str(self.events.rv)
        start: tuple[str, str] | None = None
        if continue_token:
            rv, start = _read_continue(continue_token)
        keys = sorted(self._bucket(rt))
        out: _List[dict[str, Any]] = []
        token: str | None = None
        for k in keys:
            if start is not None and k <= start:
                continue
            if rt.namespaced and namespace is not None and k[0] != namespace:
                continue
            obj = self._bucket(rt)[k]
            if pred is not None and not pred(obj):
                continue
            if limit is not None and len(out) >= limit:
                last = out[-1]["metadata"]
                token = _continue_token(rv, (last.get("namespace", ""), last["name"]))
                break
            out.append(obj)
        return out, rv, token

    def watch(
        self,
        key: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        copy: bool = True,
    ) -> Watch:
        """Events after ``resource_version``; "0"/None/"" first replays the current state as ADDED."""
        rt = self.resource(key)
        pred = self._predicate(rt, label_selector, field_selector)
        ns = namespace if rt.namespaced else None
        current = []
        if resource_version in (None, "", "0"):
            current = [
                o
                for (o_ns, _), o in self._bucket(rt).items()
                if (ns is None or o_ns == ns) and (pred is None or pred(o))
            ]
        return self.events.watch(rt.key, ns, pred, copy, resource_version, current)

    # ---- writes

    def _check_namespace(self, ns: str) -> None:
        if not self.namespace_guard:
            return
        ns_obj = self._bucket(RESOURCES["namespaces"]).get(("", ns))
        if ns_obj is None:
            raise not_found("namespaces", "", ns)
        if ns_obj["metadata"].get("deletionTimestamp"):
            raise forbidden(f"unable to create new content in namespace {ns} because it is being terminated")

    async def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.create_now(key, obj)

    def create_now(self, key: str, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        rt = self.resource(key)
        if not isinstance(obj, dict):
            raise bad_request("the object must be a JSON object")
        obj = deep_copy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        bucket = self._bucket(rt)
        if rt.namespaced:
            ns = meta.get("namespace") or "default"
            if not isinstance(ns, str):
                raise bad_request("metadata.namespace must be a string")
            meta["namespace"] = ns
            self._check_namespace(ns)
        else:
            meta.pop("namespace", None)
            ns = ""
        if not meta.get("name") and isinstance(meta.get("generateName"), str) and meta["generateName"]:
            for _ in range(20):
                name = meta["generateName"] + "".join(random.choices(_GENERATE_ALPHABET, k=5))
                if (ns, name) not in bucket:
                    meta["name"] = name
                    break
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "uid", "selfLink"):
            meta.pop(f, None)
        if rt.key in _RESET_STATUS_ON_CREATE:
            obj["status"] = {}
        if rt.key == "pods":
            obj["status"] = {}
        meta["uid"] = str(uuid.uuid4())  # before defaulting: a Job's selector is keyed by it
        if rt.key == "nodes":
            taint_new_node(obj)  # every node created in the sandbox stands for a kubelet registering through the API
        elif rt.key == "pods":
            self._copy_topology_labels(obj)
        elif rt.key == "services":
            allocate_service(obj, bucket.values())
        default_object(rt, obj)
        validate_object(rt, obj)
        name = meta["name"]
        if (ns, name) in bucket:
            raise already_exists(rt.plural, rt.group, name)
        meta["creationTimestamp"] = now_rfc3339()
        if dry_run:
            return obj
        if rt.key in _HAS_GENERATION:
            meta["generation"] = 1
        meta["resourceVersion"] = self.events.next_rv()
        bucket[(ns, name)] = obj
        self.events.emit(rt, "ADDED", obj, None)
        return deep_copy(obj)

    async def update(self, key: str, obj: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        return self.update_now(key, obj, subresource=subresource)

    def update_now(
        self, key: str, obj: dict[str, Any], *, subresource: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        rt = self.resource(key)
        if not isinstance(obj, dict):
            raise bad_request("the object must be a JSON object")
        meta = _meta(obj)
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("metadata.name is required")
        ns = (meta.get("namespace") or "default") if rt.namespaced else ""
        old = self._bucket(rt).get((ns, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        rv = meta.get("resourceVersion")
        if rv and str(rv) != old["metadata"]["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        uid = meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            # The real update reports etcd's precondition error, storage key and all.
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"StorageError: invalid object, Code: 4, Key: {_storage_key(rt, ns, name)}, ResourceVersion: 0, "
                f"AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )
        return self._write(rt, old, deep_copy(obj), subresource, dry_run=dry_run)

    async def mutate(
        self,
        key: str,
        namespace: str | None,
        name: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return self.mutate_now(key, namespace, name, fn, subresource=subresource)

    def mutate_now(
        self,
        key: str,
        namespace: str | None,
        name: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        rt = self.resource(key)
        ns = (namespace or "default") if rt.namespaced else ""
        old = self._bucket(rt).get((ns, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        new = fn(deep_copy(old))
        if new is None:
            return deep_copy(old)
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise bad_request("the patched object must be a JSON object with metadata")
        return self._write(rt, old, new, subresource, dry_run=dry_run)

    def _write(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        subresource: str | None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        old_meta = old["metadata"]
        new = _written_part(rt, old, new, subresource)
        if rt.key == "pods" and subresource == "binding":
            self._copy_topology_labels(new)
        elif rt.key == "services" and subresource is None:
            keep_allocated(old, new)
        elif rt.key == CSR and subresource in ("status", "approval"):
            _stamp_csr_conditions(old, new)
        new["apiVersion"] = rt.api_version
        new["kind"] = rt.kind
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        default_object(rt, new)
        validate_object(rt, new)
        if rt.key == "pods" and subresource is None:
            validate_pod_update(old, new)
        if dry_run:
            return deep_copy(new)
        if new == old:
            return deep_copy(old)  # a no-op write does not bump the resourceVersion, as the real server
        if "generation" in old_meta and new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old_meta["generation"]) + 1
        new["metadata"]["resourceVersion"] = self.events.next_rv()
        key = (old_meta.get("namespace", "") if rt.namespaced else "", old_meta["name"])
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and (rt.key != "pods" or meta.get("deletionGracePeriodSeconds", 0) == 0)
        ):
            del self._bucket(rt)[key]
            self.events.emit(rt, "DELETED", new, old)
            self._after_removal(rt, new)
            return deep_copy(new)
        self._bucket(rt)[key] = new
        self.events.emit(rt, "MODIFIED", new, old)
        return deep_copy(new)

    async def delete(
        self,
        key: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        uid_precondition: str | None = None,
        propagation_policy: str | None = None,
        resource_version_precondition: str | None = None,
    ) -> dict[str, Any] | None:
        return self.delete_now(
            key,
            namespace,
            name,
            grace_period_seconds=grace_period_seconds,
            uid_precondition=uid_precondition,
            propagation_policy=propagation_policy,
            resource_version_precondition=resource_version_precondition,
        )

    def delete_now(
        self,
        key: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        uid_precondition: str | None = None,
        propagation_policy: str | None = None,
        resource_version_precondition: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any] | None:
        """Delete as the real server: graceful for bound, non-terminal pods; finalizers hold an object."""
        rt = self.resource(key)
        ns = (namespace or "default") if rt.namespaced else ""
        bucket = self._bucket(rt)
        old = bucket.get((ns, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        old_meta = old["metadata"]
        _check_preconditions(rt, old_meta, uid_precondition, resource_version_precondition)
        if propagation_policy not in (None, "Background", "Foreground", "Orphan"):
            raise bad_request(f'propagationPolicy "{propagation_policy}" is not supported')
        if dry_run:
            return deep_copy(old)
        if propagation_policy == "Orphan":
            # The real garbage collector strips the owner reference from dependents; we do it right away, and never
            # park the owner on an "orphan" finalizer, so nothing can get stuck on one.
            self._orphan_dependents(old_meta["uid"])
        grace = _pod_grace(old, grace_period_seconds) if rt.key == "pods" else 0
        if rt.key == "namespaces":
            return self._delete_namespace(old)
        finalizers = old_meta.get("finalizers") or []
        if grace == 0 and not finalizers:
            return self._remove(rt, old)
        old_grace = old_meta.get("deletionGracePeriodSeconds")
        if old_meta.get("deletionTimestamp") is not None and old_grace is not None and grace >= int(old_grace):
            return deep_copy(old)  # a later delete may only shorten the grace period
        new = deep_copy(old)
        meta = new["metadata"]
        meta["deletionTimestamp"] = now_rfc3339(grace)
        meta["deletionGracePeriodSeconds"] = grace
        meta["resourceVersion"] = self.events.next_rv()
        bucket[(ns, name)] = new
        self.events.emit(rt, "MODIFIED", new, old)
        return deep_copy(new)

    def _remove(self, rt: ResourceType, old: dict[str, Any]) -> dict[str, Any]:
        meta = old["metadata"]
        key = (meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        gone = deep_copy(old)
        gone["metadata"]["resourceVersion"] = self.events.next_rv()
        del self._bucket(rt)[key]
        self.events.emit(rt, "DELETED", gone, old)
        self._after_removal(rt, gone)
        return deep_copy(gone)

    def _after_removal(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if not rt.namespaced:
            return
        ns = obj["metadata"].get("namespace", "")
        ns_obj = self._bucket(RESOURCES["namespaces"]).get(("", ns))
        if ns_obj is not None and ns_obj["metadata"].get("deletionTimestamp") and not self._namespace_has_content(ns):
            self._remove(RESOURCES["namespaces"], ns_obj)

    def _namespace_has_content(self, ns: str) -> bool:
        return any(k[0] == ns for key, bucket in self._objects.items() if RESOURCES[key].namespaced for k in bucket)

    def _delete_namespace(self, old: dict[str, Any]) -> dict[str, Any]:
        ns = old["metadata"]["name"]
        if old["metadata"].get("deletionTimestamp"):
            return deep_copy(old)
        new = deep_copy(old)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
        new["metadata"]["resourceVersion"] = self.events.next_rv()
        self._bucket(RESOURCES["namespaces"])[("", ns)] = new
        self.events.emit(RESOURCES["namespaces"], "MODIFIED", new, old)
        # The namespace controller's job: delete every object in it; bound pods leave when their kubelet says so.
        for key in list(self._objects):
            rt = RESOURCES[key]
            if not rt.namespaced:
                continue
            for k in [k for k in self._bucket(rt) if k[0] == ns]:
                if k in self._bucket(rt):
                    try:
                        self.delete_now(key, ns, k[1])
                    except ApiError:
                        pass
        if not self._namespace_has_content(ns) and ("", ns) in self._bucket(RESOURCES["namespaces"]):
            return self._remove(RESOURCES["namespaces"], new)
        return deep_copy(new)

    def _orphan_dependents(self, uid: str) -> None:
        for key, bucket in self._objects.items():
            for k, obj in list(bucket.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    new = deep_copy(obj)
                    new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    new["metadata"]["resourceVersion"] = self.events.next_rv()
                    bucket[k] = new
                    self.events.emit(RESOURCES[key], "MODIFIED", new, obj)

    def _copy_topology_labels(self, pod: dict[str, Any]) -> None:
        node_name = (pod.get("spec") or {}).get("nodeName") if isinstance(pod.get("spec"), dict) else None
        if isinstance(node_name, str) and node_name:
            copy_topology_labels(pod, self._bucket(RESOURCES["nodes"]).get(("", node_name)))

    def all_objects(self, key: str) -> _List[dict[str, Any]]:
        """Every object of a type (shared, do not mutate); for controllers scanning without selectors."""
        return list(self._bucket(self.resource(key)).values())


def _written_part(
    rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None
) -> dict[str, Any]:
    """``new`` limited to what a write of ``subresource`` may change: a status write only status (an approval only
    the conditions), except a pod's, which keeps its metadata too but the spec, ownerReferences and
    deletionTimestamp (kube-apiserver's podStatusStrategy); a main-resource write keeps status and the server-owned
    metadata."""
    old_meta = old["metadata"]
    if rt.key == "pods" and subresource == "status":
        status = new.get("status")
        new = _written_part(rt, old, new, None)  # the metadata as a main-resource write keeps it
        new["status"] = status if status is not None else {}
        new["spec"] = deep_copy(old.get("spec") or {})
        if "ownerReferences" in old_meta:
            new["metadata"]["ownerReferences"] = deep_copy(old_meta["ownerReferences"])
        else:
            new["metadata"].pop("ownerReferences", None)
        return new
    if subresource in ("status", "approval"):
        status = new.get("status")
        new = deep_copy(old)
        if subresource == "approval":
            conds = status.get("conditions") if isinstance(status, dict) else None
            new.setdefault("status", {})["conditions"] = conds or []
        else:
            new["status"] = status if status is not None else {}
        return new
    if rt.has_status and subresource != "binding":
        if "status" in old:
            new["status"] = deep_copy(old["status"])
        else:
            new.pop("status", None)
    meta = new["metadata"]
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if f in old_meta:
            meta[f] = old_meta[f]
        else:
            meta.pop(f, None)
    meta["name"] = old_meta["name"]
    if rt.namespaced:
        meta["namespace"] = old_meta["namespace"]
    else:
        meta.pop("namespace", None)
    if old_meta.get("deletionTimestamp"):
        added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if added:
            raise invalid_finalizers(rt, old_meta["name"])
    return new


def _check_preconditions(rt: ResourceType, meta: dict[str, Any], uid: str | None, resource_version: str | None) -> None:
    """409 unless the object's UID and resourceVersion are those a delete's preconditions name (the real wording,
    which names the kind: 'on Pod "p"', 'on Job.batch "j"')."""
    if uid and uid != meta["uid"]:
        raise conflict(
            rt.kind,
            rt.group,
            meta["name"],
            f"the UID in the precondition ({uid}) does not match the UID in record ({meta['uid']}). "
            "The object might have been deleted and then recreated",
        )
    if resource_version and resource_version != meta["resourceVersion"]:
        raise conflict(
            rt.kind,
            rt.group,
            meta["name"],
            f"the ResourceVersion in the precondition ({resource_version}) does not match the ResourceVersion in "
            f"record ({meta['resourceVersion']}). The object might have been modified",
        )


def _stamp_csr_conditions(old: dict[str, Any], new: dict[str, Any]) -> None:
    """As the real CSR strategy on a status or approval write: a condition without ``lastUpdateTime`` gets now, one
    without ``lastTransitionTime`` the old one of the same type and status, else now."""
    now = now_rfc3339()
    before = [c for c in _conditions(old) if isinstance(c, dict)]
    for cond in _conditions(new):
        if not isinstance(cond, dict):
            continue
        if not cond.get("lastUpdateTime"):
            cond["lastUpdateTime"] = now
        if not cond.get("lastTransitionTime"):
            cond["lastTransitionTime"] = next(
                (
                    c["lastTransitionTime"]
                    for c in before
                    if (c.get("type"), c.get("status")) == (cond.get("type"), cond.get("status"))
                    and c.get("lastTransitionTime")
                ),
                now,
            )


def _conditions(obj: dict[str, Any]) -> list[Any]:
    """``status.conditions`` when the body has them as a list (a body of the wrong shape is validation's to refuse)."""
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return conditions if isinstance(conditions, list) else []


def _storage_key(rt: ResourceType, namespace: str, name: str) -> str:
    """Where the real server keeps the object in etcd (Services under /registry/services/specs/)."""
    prefix = "services/specs" if rt.key == "services" else rt.plural
    return f"/registry/{prefix}/{namespace}/{name}" if rt.namespaced else f"/registry/{prefix}/{name}"


def _pod_grace(pod: dict[str, Any], requested: int | None) -> int:
    """The grace period a pod's deletion gets: the request's, else the pod's own; 0 for an unbound or terminal pod."""
    spec = pod.get("spec") or {}
    grace = requested if requested is not None else int(spec.get("terminationGracePeriodSeconds", 30) or 0)
    phase = (pod.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0
    return 1 if grace < 0 else grace  # as the real server: a negative grace means "as soon as possible", not "now"


def _continue_token(rv: str, last: tuple[str, str]) -> str:
    """A list continues after ``last`` (namespace, name), as of ``rv``."""
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": list(last)}).encode()).decode()


def _read_continue(token: str) -> tuple[str, tuple[str, str]]:
    """The resourceVersion and last key of a continue token; 400 when it is not one of ours."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(raw["rv"]), (str(raw["start"][0]), str(raw["start"][1]))
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error) as exc:
        raise bad_request("continue key is not valid") from exc


def invalid_finalizers(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{rt.kind} "{name}" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object '
        "is being deleted",
        details={
            "name": name,
            "kind": rt.kind,
            "causes": [
                {
                    "reason": "FieldValueForbidden",
                    "field": "metadata.finalizers",
                    "message": "no new finalizers can be added if the object is being deleted",
                }
            ],
        },
    )


def seconds_since(ts: str) -> float:
    return max(0.0, time.time() - parse_rfc3339(ts).timestamp())


async def aiter_watch(w: Watch) -> AsyncIterator[dict[str, Any]]:
    """Adapt a Watch to a plain async generator (closing the generator releases the watch)."""
    try:
        async for ev in w:
            yield ev
    finally:
        w.aclose_now()
