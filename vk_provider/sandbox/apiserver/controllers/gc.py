"""The garbage collector: dependents whose owners are gone are deleted (background cascade).

An object all of whose ``ownerReferences`` point at uids that no longer exist is deleted; one that still has a
live owner only loses the dangling references. Objects held by the ``foregroundDeletion`` finalizer get their
dependents deleted and then the finalizer removed; ``orphan`` gets the dependents' references removed and then
the finalizer removed. So no object ever stays stuck on a GC finalizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from ..errors import ApiError
from ..resources import RESOURCES
from ._common import JSON, Context, log, meta

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
PERIOD = 0.2
# Deletions per pass, so one huge cascade does not hold the event loop.
BURST = 1000


def _storage_keys() -> list[str]:
    return sorted({rt.storage_key for rt in RESOURCES.values()})


def _all(ctx: Context) -> Iterator[tuple[str, JSON]]:
    for key in _storage_keys():
        for obj in ctx.store.all_objects(key):
            yield key, obj


def collect_garbage(ctx: Context) -> int:
    """One pass over every object; returns how many writes it made."""
    objects = list(_all(ctx))
    live = {str(meta(o).get("uid")) for _, o in objects}
    dependents: dict[str, list[tuple[str, JSON]]] = {}
    for key, obj in objects:
        for ref in meta(obj).get("ownerReferences") or []:
            dependents.setdefault(str(ref.get("uid")), []).append((key, obj))
    writes = 0
    for key, obj in objects:
        if writes >= BURST:
            break
        m = meta(obj)
        refs = m.get("ownerReferences") or []
        if refs:
            dangling = [r for r in refs if str(r.get("uid")) not in live]
            if dangling and len(dangling) == len(refs):
                if not m.get("deletionTimestamp"):
                    writes += _delete(ctx, key, obj)
            elif dangling:
                writes += _drop_refs(ctx, key, obj, {str(r.get("uid")) for r in dangling})
        finalizers = m.get("finalizers") or []
        if m.get("deletionTimestamp") and (FOREGROUND in finalizers or ORPHAN in finalizers):
            writes += _finish_finalizers(ctx, key, obj, dependents.get(str(m.get("uid")), []))
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


def _finish_finalizers(ctx: Context, key: str, obj: JSON, deps: list[tuple[str, JSON]]) -> int:
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
    """Scan whenever something was written since the last scan, at most every PERIOD seconds."""
    last = ""
    while True:
        current = ctx.store.resource_version
        if current != last:
            writes = collect_garbage(ctx)
            # Our own deletions can orphan further objects (a cascade) or release a finalizer: look again next
            # time unless the pass found nothing to do.
            last = ctx.store.resource_version if writes == 0 else ""
        await asyncio.sleep(PERIOD)
