"""The "default" ServiceAccount in every namespace, and the namespaces every cluster has."""

from __future__ import annotations

from ..errors import ApiError
from ._common import JSON, Context, KeyQueue, guarded, log, meta, run_supervised, watch_forever

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def ensure_namespaces(ctx: Context) -> None:
    for name in SYSTEM_NAMESPACES:
        if ctx.store.get("namespaces", None, name) is None:
            try:
                ctx.store.create_now(
                    "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                )
            except ApiError as exc:
                if exc.code != 409:
                    raise


def ensure_default_service_account(ctx: Context, namespace: str) -> bool:
    """Create ``default`` in ``namespace`` unless present or the namespace is going away; True when created."""
    ns = ctx.store.get("namespaces", None, namespace)
    if ns is None or meta(ns).get("deletionTimestamp"):
        return False
    if ctx.store.get("serviceaccounts", namespace, "default") is not None:
        return False
    try:
        ctx.store.create_now(
            "serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}},
        )
    except ApiError as exc:
        log.debug("default service account not created", namespace=namespace, error=exc.message)
        return False
    return True


async def service_accounts(ctx: Context) -> None:
    """Keep a "default" ServiceAccount in every live namespace (recreated if deleted)."""
    ensure_namespaces(ctx)
    queue: KeyQueue[str] = KeyQueue()

    def on_namespace(etype: str, ns: JSON) -> None:
        if etype != "DELETED":
            queue.add(str(meta(ns).get("name")))

    def on_service_account(etype: str, sa: JSON) -> None:
        if etype == "DELETED" and meta(sa).get("name") == "default":
            queue.add(str(meta(sa).get("namespace")))

    async def worker() -> None:
        while True:
            for namespace in await queue.take():
                guarded("service-accounts", namespace, lambda: ensure_default_service_account(ctx, namespace))  # noqa: B023

    await run_supervised(
        "service-accounts",
        lambda: watch_forever(ctx.store, "namespaces", on_namespace),
        lambda: watch_forever(ctx.store, "serviceaccounts", on_service_account),
        worker,
    )
