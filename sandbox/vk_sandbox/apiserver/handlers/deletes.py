"""DELETE of one object and deletecollection; ``delete_object`` is the one path every API deletion takes
(eviction included)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from vk_sandbox.apiserver.errors import ApiError, bad_request, method_not_allowed
from vk_sandbox.apiserver.events import external
from vk_sandbox.apiserver.handlers.request import Target, dry_in_options, dry_run, read_raw_body, truthy
from vk_sandbox.apiserver.handlers.response import json_response
from vk_sandbox.apiserver.resources import ResourceType
from vk_sandbox.apiserver.store import Store

# Kinds whose DELETE answers the deleted object; any other answers a Success Status, as the real server.
_ANSWER_OBJECT = frozenset(
    {
        "pods",
        "namespaces",
        "nodes",
        "services",
        "deployments.apps",
        "replicasets.apps",
        "jobs.batch",
        "leases.coordination.k8s.io",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "certificatesigningrequests.certificates.k8s.io",
    }
)


def delete_object(
    store: Store, rt: ResourceType, ns: str | None, name: str, opts: dict[str, Any], *, dry: bool = False
) -> dict[str, Any] | None:
    """Delete as DeleteOptions ``opts`` say (grace, preconditions, propagation); the store's answer."""
    pre = opts.get("preconditions") or {}
    if not isinstance(pre, dict):
        raise bad_request("preconditions must be an object")
    policy = opts.get("propagationPolicy")
    if opts.get("orphanDependents") is True:
        policy = "Orphan"
    return store.delete_now(
        rt.key,
        ns,
        name,
        grace_period_seconds=opts.get("gracePeriodSeconds"),
        uid_precondition=pre.get("uid"),
        resource_version_precondition=pre.get("resourceVersion"),
        propagation_policy=policy,
        dry_run=dry,
    )


async def delete_options(request: web.Request) -> dict[str, Any]:
    """DeleteOptions from the body (optional) with the query's gracePeriodSeconds and propagation on top."""
    opts: dict[str, Any] = {}
    if request.can_read_body:
        raw = await read_raw_body(request)
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise bad_request("the DeleteOptions body could not be decoded") from exc
            if not isinstance(body, dict):
                raise bad_request("DeleteOptions must be an object")
            opts.update(body)
    q = request.query
    if "gracePeriodSeconds" in q:
        try:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        except ValueError as exc:
            raise bad_request("invalid gracePeriodSeconds") from exc
    if "propagationPolicy" in q:
        opts["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q and truthy(q["orphanDependents"]):
        opts["propagationPolicy"] = "Orphan"
    grace = opts.get("gracePeriodSeconds")
    if grace is not None and not isinstance(grace, int):
        raise bad_request("gracePeriodSeconds must be an integer")
    return opts


class Deletes:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        if t.subresource:
            raise method_not_allowed()
        opts = await delete_options(request)
        dry = dry_run(request) or dry_in_options(opts)
        result = delete_object(self.store, t.rt, t.namespace, t.name, opts, dry=dry)
        assert result is not None
        still_there = not dry and self.store.get(t.rt.key, t.namespace, t.name) is not None
        out = external(t.rt, result)
        if still_there or t.rt.key in _ANSWER_OBJECT:
            return json_response(out)  # 200 even while grace or finalizers hold it, as the real server
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": t.name,
                    "group": t.rt.group,
                    "kind": t.rt.plural,
                    "uid": result["metadata"].get("uid"),
                },
            }
        )

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await delete_options(request)
        items, _ = self.store.list(
            t.rt.key,
            t.namespace,
            label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"),
        )
        out = []
        for item in items:
            meta = item["metadata"]
            try:
                res = delete_object(
                    self.store,
                    t.rt,
                    meta.get("namespace"),
                    meta["name"],
                    opts,
                    dry=dry_run(request) or dry_in_options(opts),
                )
            except ApiError as err:
                if err.code == 404:
                    continue
                raise
            if res is not None:
                out.append(external(t.rt, res))
        return json_response(
            {
                "kind": t.rt.list_kind,
                "apiVersion": t.rt.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": out,
            }
        )
