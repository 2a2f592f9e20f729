"""The garbage collector: dependents whose owners are gone are deleted (background cascade).

An object all of whose ``ownerReferences`` point at owners that no longer exist (looked up by kind, name and
uid, as the real collector does) is deleted; one that still has a live owner only loses the dangling references.
Objects held by the ``foregroundDeletion`` finalizer get their dependents deleted and then the finalizer removed;
``orphan`` gets the dependents' references removed and then the finalizer removed. So no object ever stays stuck
on a GC finalizer.

The work is incremental: watches on every stored type keep an index from owner uid to dependents, and only the
dependents of removed objects (and objects carrying GC finalizers or references to unknown owners) are checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ..errors import ApiError
from ..resources import RESOURCES, by_kind
from ._common import JSON, Context, KeyQueue, guarded, log, meta, run_supervised, watch_forever

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
GC_FINALIZERS = frozenset({FOREGROUND, ORPHAN})
# Objects checked per pass, so one huge cascade does not hold the event loop.
BURST = 500

Ref = tuple[str, str, str]  # (resource key, namespace, name)


def _storage_keys() -> list[str]:
    return sorted({rt.storage_key for rt in RESOURCES.values()})


def owner_exists(ctx: Context, obj: JSON, ref: JSON) -> bool:
    """Is the owner named by ``ref`` alive (same kind, name and uid)? Unknown kinds count as absent."""
    rt = by_kind(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
    if rt is None:
        return False
    namespace = meta(obj).get("namespace") if rt.namespaced else None
    owner = ctx.store.get(rt.storage_key, namespace, str(ref.get("name") or ""))
    return owner is not None and meta(owner).get("uid") == ref.get("uid")


def _dependents(ctx: Context, uid: str) -> list[tuple[str, JSON]]:
    out = []
    for key in _storage_keys():
        for obj in ctx.store.all_objects(key):
            if any(r.get("uid") == uid for r in meta(obj).get("ownerReferences") or []):
                out.append((key, obj))
    return out


def finalizing(obj: JSON) -> bool:
    """Deleted and held by a GC finalizer (orphan or foreground): the collector must look at its dependents."""
    m = meta(obj)
    return bool(m.get("deletionTimestamp")) and bool(GC_FINALIZERS & set(m.get("finalizers") or []))


def collect_object(ctx: Context, key: str, obj: JSON, dependents: list[tuple[str, JSON]] | None = None) -> int:
    """Check one object: delete it or drop dangling references; finish GC finalizers. Returns writes made."""
    m = meta(obj)
    writes = 0
    refs = m.get("ownerReferences") or []
    if refs:
        dangling = [r for r in refs if not owner_exists(ctx, obj, r)]
        if dangling and len(dangling) == len(refs):
            if not m.get("deletionTimestamp"):
                return _delete(ctx, key, obj)
        elif dangling:
            writes += _drop_refs(ctx, key, obj, {str(r.get("uid")) for r in dangling})
    if finalizing(obj):
        deps = dependents if dependents is not None else _dependents(ctx, str(m.get("uid")))
        writes += _finish_finalizers(ctx, key, obj, deps)
    return writes


def collect_garbage(ctx: Context) -> int:
    """One full pass over every object (the incremental loop's fallback and a test hook); returns writes made."""
    objects = [(key, obj) for key in _storage_keys() for obj in ctx.store.all_objects(key)]
    index: dict[str, list[tuple[str, JSON]]] = {}
    for key, obj in objects:
        for ref in meta(obj).get("ownerReferences") or []:
            index.setdefault(str(ref.get("uid")), []).append((key, obj))
    writes = 0
    for key, obj in objects:
        if meta(obj).get("ownerReferences") or GC_FINALIZERS & set(meta(obj).get("finalizers") or []):
            writes += collect_object(ctx, key, obj, index.get(str(meta(obj).get("uid")), []))
    return writes


def _delete(ctx: Context, key: str, obj: JSON) -> int:
    m = meta(obj)
    try:
        ctx.store.delete_now(
            key, m.get("namespace"), str(m.get("name")), uid_precondition=m.get("uid"), propagation_policy="Background"
        )
    except ApiError as exc:
        log.debug("garbage collection skipped", resource=key, name=m.get("name"), error=exc.message)
        return 0
    return 1


def _drop_refs(ctx: Context, key: str, obj: JSON, uids: set[str]) -> int:
    m = meta(obj)

    def fn(o: JSON) -> JSON | None:
        refs = o["metadata"].get("ownerReferences") or []
        kept = [r for r in refs if str(r.get("uid")) not in uids]
        if len(kept) == len(refs):
            return None
        if kept:
            o["metadata"]["ownerReferences"] = kept
        else:
            o["metadata"].pop("ownerReferences", None)
        return o

    try:
        ctx.store.mutate_now(key, m.get("namespace"), str(m.get("name")), fn)
    except ApiError as exc:
        log.debug("owner references not cleaned", resource=key, name=m.get("name"), error=exc.message)
        return 0
    return 1


def _finish_finalizers(ctx: Context, key: str, obj: JSON, deps: Iterable[tuple[str, JSON]]) -> int:
    m = meta(obj)
    uid = str(m.get("uid"))
    finalizers = list(m.get("finalizers") or [])
    writes = 0
    if ORPHAN in finalizers:
        for dkey, dep in deps:
            writes += _drop_refs(ctx, dkey, dep, {uid})
        finalizers.remove(ORPHAN)
    elif FOREGROUND in finalizers:
        waiting = False
        for dkey, dep in deps:
            waiting = True
            if not meta(dep).get("deletionTimestamp"):
                writes += _delete(ctx, dkey, dep)
        if waiting:
            return writes  # the owner goes once its dependents are gone
        finalizers.remove(FOREGROUND)

    def fn(o: JSON) -> JSON:
        o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or [] if f in finalizers]
        return o

    try:
        ctx.store.mutate_now(key, m.get("namespace"), str(m.get("name")), fn)
    except ApiError as exc:
        log.debug("finalizer not removed", resource=key, name=m.get("name"), error=exc.message)
        return writes
    return writes + 1


async def garbage_collector(ctx: Context) -> None:
    """Watch every stored type; check the dependents of removed objects and objects with GC finalizers."""
    queue: KeyQueue[Ref] = KeyQueue()
    dependents: dict[str, set[Ref]] = {}
    owners_of: dict[Ref, tuple[str, ...]] = {}
    owner_of_uid: dict[str, Ref] = {}
    known: set[str] = set()

    def on_event(key: str, etype: str, obj: JSON) -> None:
        m = meta(obj)
        ref: Ref = (key, str(m.get("namespace") or ""), str(m.get("name") or ""))
        uid = str(m.get("uid") or "")
        previous_owners = owners_of.pop(ref, ())
        for old in previous_owners:
            deps = dependents.get(old)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del dependents[old]
        if etype == "DELETED":
            known.discard(uid)
            owner_of_uid.pop(uid, None)
            queue.add_all(sorted(dependents.get(uid, ())))
            # An owner held by foregroundDeletion may be waiting for exactly this dependent.
            queue.add_all(owner_of_uid[o] for o in previous_owners if o in owner_of_uid)
            return
        known.add(uid)
        owner_of_uid[uid] = ref
        refs = tuple(str(r.get("uid")) for r in m.get("ownerReferences") or [])
        if refs:
            owners_of[ref] = refs
            for owner in refs:
                dependents.setdefault(owner, set()).add(ref)
            if any(o not in known for o in refs):
                queue.add(ref)  # maybe created after its owner died; the worker looks the owner up for real
        if finalizing(obj):
            queue.add(ref)

    async def worker() -> None:
        while True:
            for key, namespace, name in await queue.take(BURST):
                obj = ctx.store.get(key, namespace or None, name)
                if obj is None:
                    continue
                uid = str(meta(obj).get("uid"))
                deps = []
                # Only a GC finalizer reads the dependents: an owner checked for anything else (a ReplicaSet of
                # 500 pods, on each of its pods' deletions) costs no copies of them.
                for dkey, dns, dname in sorted(dependents.get(uid, ())) if finalizing(obj) else ():
                    dep = ctx.store.get(dkey, dns or None, dname)
                    if dep is not None:
                        deps.append((dkey, dep))
                guarded("garbage-collector", (key, namespace, name), lambda: collect_object(ctx, key, obj, deps))  # noqa: B023
            await asyncio.sleep(0)

    def watcher(key: str) -> Callable[[], Coroutine[Any, Any, None]]:
        return lambda: watch_forever(ctx.store, key, lambda etype, obj: on_event(key, etype, obj))

    await run_supervised("garbage-collector", *[watcher(key) for key in _storage_keys()], worker)
