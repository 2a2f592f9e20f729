"""The disruption controller: keeps every PodDisruptionBudget's status (see ``budgets.budget_status``).

A budget is recomputed when it changes, when a pod in its namespace changes, when a ReplicaSet or Deployment there
changes (their scale is the expected count), and every 30 s (so evictions older than 2 minutes are forgotten).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..budgets import PDB, budget_status
from ._common import JSON, Context, KeyQueue, guarded, key_of, meta, run_supervised, watch_forever

RESYNC_SECONDS = 30.0


async def disruption_controller(ctx: Context) -> None:
    queue: KeyQueue[tuple[str, str]] = KeyQueue()
    budgets: dict[str, set[tuple[str, str]]] = {}  # namespace -> budget keys

    def on_pdb(etype: str, pdb: JSON) -> None:
        key = key_of(pdb)
        if etype == "DELETED":
            budgets.get(key[0], set()).discard(key)
            return
        budgets.setdefault(key[0], set()).add(key)
        queue.add(key)

    def on_related(etype: str, obj: JSON) -> None:
        queue.add_all(sorted(budgets.get(str(meta(obj).get("namespace") or ""), ())))

    def sync(key: tuple[str, str]) -> None:
        pdb = ctx.store.get(PDB, key[0], key[1])
        if pdb is None:
            return
        status = budget_status(ctx.store, pdb)
        if status != (pdb.get("status") or {}):
            ctx.store.mutate_now(PDB, key[0], key[1], lambda o: {**o, "status": status}, subresource="status")

    async def worker() -> None:
        while True:
            for key in await queue.take(timeout=RESYNC_SECONDS) or sorted(k for ks in budgets.values() for k in ks):
                guarded("disruption", key, lambda: sync(key))  # noqa: B023 (called at once)
            await asyncio.sleep(0)

    def watches() -> list[Any]:
        return [
            lambda: watch_forever(ctx.store, PDB, on_pdb),
            lambda: watch_forever(ctx.store, "pods", on_related),
            lambda: watch_forever(ctx.store, "replicasets.apps", on_related),
            lambda: watch_forever(ctx.store, "deployments.apps", on_related),
        ]

    await run_supervised("disruption-controller", *watches(), worker)
