"""The "default" ServiceAccount and the "kube-root-ca.crt" ConfigMap in every namespace, and the namespaces every
cluster has (the real controller-manager's serviceaccount and root-ca-cert-publisher controllers)."""

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
    """Create ``default`` (and ``kube-root-ca.crt``) in ``namespace`` unless present or the namespace is going away;
    True when the ServiceAccount was created."""
    ns = ctx.store.get("namespaces", None, namespace)
    if ns is None or meta(ns).get("deletionTimestamp"):
        return False
    ensure_root_ca(ctx, namespace)
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


def ensure_root_ca(ctx: Context, namespace: str) -> None:
    """The cluster CA as ``kube-root-ca.crt`` (key ``ca.crt``), which every pod's service-account volume projects."""
    if ctx.store.get("configmaps", namespace, "kube-root-ca.crt") is not None:
        return
    try:
        ctx.store.create_now(
            "configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "namespace": namespace},
                "data": {"ca.crt": ctx.ca.cert_pem.decode()},
            },
        )
    except ApiError as exc:
        log.debug("kube-root-ca.crt not created", namespace=namespace, error=exc.message)


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
