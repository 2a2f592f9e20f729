"""Shared pieces of the sandbox control loops: the context they get, watch loops, a keyed queue, helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import structlog

from vk_provider.aio import Backoff

from ..auth import Identity
from ..errors import ApiError
from ..resources import RESOURCES

if TYPE_CHECKING:
    from ..admission import Admission
    from ..certs import CertificateAuthority
    from ..store import Store

JSON = dict[str, Any]
K = TypeVar("K", bound=Hashable)
log = structlog.get_logger("vk_sandbox.apiserver.controllers")

# Work done per wake-up before yielding to the event loop, so a burst never starves HTTP clients.
BATCH = 200


class Context(Protocol):
    """What a controller needs from the server (the server's ``ControllerContext`` satisfies it)."""

    store: Store
    ca: CertificateAuthority
    node_lease_grace_seconds: float
    admission: Admission


class KeyQueue(Generic[K]):
    """A de-duplicating FIFO of keys to reconcile; ``take`` waits for work and returns a bounded batch."""

    def __init__(self) -> None:
        self._keys: dict[K, None] = {}
        self._ready = asyncio.Event()

    def add(self, key: K) -> None:
        self._keys[key] = None
        self._ready.set()

    def add_all(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._keys[key] = None
        if self._keys:
            self._ready.set()

    def __len__(self) -> int:
        return len(self._keys)

    async def take(self, limit: int = BATCH, *, timeout: float | None = None) -> list[K]:
        """Up to ``limit`` keys; [] when ``timeout`` passes with nothing queued."""
        if not self._keys:
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await self._ready.wait()
                except TimeoutError:
                    return []
        batch: list[K] = []
        for key in self._keys:
            batch.append(key)
            if len(batch) >= limit:
                break
        for key in batch:
            del self._keys[key]
        return batch


async def watch_forever(store: Store, key: str, on_event: Callable[[str, JSON], None]) -> None:
    """Feed every event of ``key`` to ``on_event``, starting with the current state; re-list after a 410."""
    while True:
        watch = store.watch(key, copy=False)
        try:
            async for event in watch:
                on_event(event["type"], event["object"])
        except ApiError as exc:
            if exc.code != 410:
                raise
            log.info("controller watch expired, re-listing", resource=key)
        finally:
            await watch.aclose()


def meta(obj: Mapping[str, Any]) -> JSON:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    m = meta(obj)
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age_seconds(value: Any) -> float | None:
    stamp = parse_time(value)
    return None if stamp is None else time.time() - stamp


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> JSON:
    m = meta(owner)
    return {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": m.get("name"),
        "uid": m.get("uid"),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def get_condition(obj: Mapping[str, Any], ctype: str) -> JSON | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(conditions: list[JSON], ctype: str, status: str, reason: str, message: str, **extra: Any) -> bool:
    """Set a condition in place; lastTransitionTime moves only when the status changes. True when changed."""
    now = now_rfc3339()
    for i, cond in enumerate(conditions):
        if cond.get("type") != ctype:
            continue
        if (
            cond.get("status") == status
            and (cond.get("reason") or "") == reason
            and (cond.get("message") or "") == message
        ):
            return False
        new = {**cond, "status": status, "reason": reason, "message": message, **extra}
        if cond.get("status") != status:
            new["lastTransitionTime"] = now
        conditions[i] = _drop_empty(new)
        return True
    conditions.append(
        _drop_empty(
            {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": now, **extra}
        )
    )
    return True


def _drop_empty(cond: JSON) -> JSON:
    # A True PodScheduled/Ready condition carries no reason or message in the real API.
    return {k: v for k, v in cond.items() if not (k in ("reason", "message") and not v)}


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_is_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward a controller's replicas: not terminal and not being deleted (as FilterActivePods)."""
    return not meta(pod).get("deletionTimestamp") and pod_phase(pod) not in ("Succeeded", "Failed")


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    cond = get_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


async def run_supervised(name: str, *loops: Callable[[], Any]) -> None:
    """Run the loops of one controller together; if one dies, the others are cancelled and the error raised."""
    tasks = [asyncio.create_task(loop(), name=f"{name}-{i}") for i, loop in enumerate(loops)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def soft(action: str, **fields: Any) -> Callable[[ApiError], None]:
    """A logger for API errors a controller tolerates (the object changed or vanished under it)."""

    def _log(exc: ApiError) -> None:
        log.debug("controller write skipped", action=action, code=exc.code, error=exc.message, **fields)

    return _log


def record_event(
    store: Store, obj: Mapping[str, Any], *, reason: str, message: str, component: str, type_: str = "Normal"
) -> None:
    """Write a core/v1 Event about ``obj`` as the named component (best effort, as real controllers)."""
    m = meta(obj)
    now = now_rfc3339()
    namespace = str(m.get("namespace") or "default")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{m.get('name')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "namespace": m.get("namespace"),
            "name": m.get("name"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        store.create_now("events", event)
    except ApiError as exc:
        log.debug("event not recorded", reason=reason, error=exc.message)


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


class Informer:
    """A watch-fed cache of one resource type, indexed by controlling owner uid.

    Controllers also write their own results through ``apply`` right after a store write, so a reconcile that
    runs before the watch event arrives never acts on stale state (the job of "expectations" in real controllers).
    Updates are applied in resourceVersion order; an older event never overwrites a newer object.
    """

    def __init__(self, store: Store, key: str, on_change: Callable[[str, JSON], None] | None = None) -> None:
        self.store = store
        self.key = key
        self.objects: dict[tuple[str, str], JSON] = {}
        self.by_owner: dict[str, set[tuple[str, str]]] = {}
        self._owner_of: dict[tuple[str, str], str] = {}
        self._gone: dict[tuple[str, str], int] = {}
        self._on_change = on_change
        self.synced = asyncio.Event()

    def owned(self, uid: str) -> list[JSON]:
        return [self.objects[k] for k in self.by_owner.get(uid, ()) if k in self.objects]

    def _index(self, key: tuple[str, str], obj: JSON | None) -> None:
        old = self._owner_of.pop(key, None)
        if old is not None:
            keys = self.by_owner.get(old)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_owner[old]
        uid = controller_uid(obj) if obj is not None else None
        if uid is not None:
            self._owner_of[key] = uid
            self.by_owner.setdefault(uid, set()).add(key)

    def apply(self, etype: str, obj: JSON) -> bool:
        """Take an event or a write result into the cache; False when it is older than what is cached."""
        key = key_of(obj)
        rv = _rv(obj)
        current = self.objects.get(key)
        if current is not None and _rv(current) > rv:
            return False
        if current is None and self._gone.get(key, -1) >= rv:
            return False
        if etype == "DELETED":
            self.objects.pop(key, None)
            self._gone[key] = rv
            self._index(key, None)
        else:
            self._gone.pop(key, None)
            self.objects[key] = obj
            self._index(key, obj)
        if self._on_change is not None:
            self._on_change(etype, obj)
        return True

    def forget_tombstones(self) -> None:
        self._gone.clear()

    async def run(self) -> None:
        """Watch forever; after a 410, re-list and drop what disappeared meanwhile."""
        while True:
            watch = self.store.watch(self.key, copy=False)
            seen: set[tuple[str, str]] = set()
            listing = True
            try:
                if watch.idle:
                    listing = self._resync(seen)
                async for event in watch:
                    if listing:
                        seen.add(key_of(event["object"]))
                    self.apply(event["type"], event["object"])
                    if listing and watch.idle:
                        listing = self._resync(seen)
            except ApiError as exc:
                if exc.code != 410:
                    raise
                log.info("controller watch expired, re-listing", resource=self.key)
            finally:
                await watch.aclose()

    def _resync(self, seen: set[tuple[str, str]]) -> bool:
        """The initial listing is consumed: drop what was not in it, mark synced. Returns False (not listing)."""
        for key in [k for k in self.objects if k not in seen]:
            gone = dict(self.objects[key])
            self.objects.pop(key, None)
            self._index(key, None)
            if self._on_change is not None:
                self._on_change("DELETED", gone)
        self.forget_tombstones()
        self.synced.set()
        return False


R = TypeVar("R")


def guarded(controller: str, key: object, fn: Callable[[], R]) -> R | None:
    """Run one reconcile; an error is logged with the object's key and never stops the controller."""
    try:
        return fn()
    except ApiError as exc:
        log.debug("reconcile skipped", controller=controller, key=str(key), code=exc.code, error=exc.message)
    except Exception:
        log.exception("reconcile failed", controller=controller, key=str(key))
    return None


async def create_pods(ctx: Context, pods: Informer, new: list[JSON], controller: str, owner: str) -> int:
    """Create pods as a real controller does, through the API: each passes admission first (defaults, the mutating
    webhooks such as the daemon's routing of serverless and burst pods, validation), as the controller's service
    account, all at once (the real controllers' creates of one pass run in parallel). A pod that admission or the
    store refuses is logged and not created; the owner's next pass tries again. Returns how many were created."""
    ident = Identity(
        f"system:serviceaccount:kube-system:{controller}-controller",
        ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
    )
    rt = RESOURCES["pods"]

    async def one(pod: JSON) -> bool:
        try:
            admitted = await ctx.admission.admit("CREATE", rt, None, pod, ident)
            pods.apply("ADDED", ctx.store.create_now("pods", admitted))
            return True
        except ApiError as exc:
            log.info("controller could not create a pod", controller=controller, owner=owner, error=exc.message)
        except Exception:  # as guarded: never stops the controller
            log.exception("controller could not create a pod", controller=controller, owner=owner)
        return False

    return sum(await asyncio.gather(*(one(p) for p in new)))


ControllerFn = Callable[[Context], Coroutine[Any, Any, None]]


RESTART_BACKOFF = Backoff(base=0.5, cap=10.0)


def restarting(fn: ControllerFn, *, backoff: Backoff = RESTART_BACKOFF) -> ControllerFn:
    """Wrap a controller so an unexpected crash is logged and the controller starts again after a backoff."""

    async def run(ctx: Context) -> None:
        attempt = 0
        while True:
            try:
                await fn(ctx)
                return
            except Exception:
                delay = backoff.delay(attempt)
                log.exception("controller crashed; restarting", controller=fn.__name__, delay=round(delay, 2))
                attempt += 1
                await asyncio.sleep(delay)

    run.__name__ = fn.__name__
    run.__qualname__ = fn.__qualname__
    run.__doc__ = fn.__doc__
    return run
