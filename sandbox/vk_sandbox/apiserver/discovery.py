"""Discovery (aggregated v2/v2beta1 and legacy) and a minimal OpenAPI v3 that lets ``kubectl apply`` validate."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vk_sandbox.apiserver.resources import (
    _ALL,
    GROUPS,
    METRICS_GROUP,
    SUBRESOURCE_KINDS,
    SUBRESOURCE_VERBS,
    ResourceType,
)


def _of(group: str, version: str) -> list[ResourceType]:
    return [r for r in _ALL if r.group == group and r.version == version]


def _sub_kind(r: ResourceType, sub: str) -> dict[str, str]:
    group, version, kind = SUBRESOURCE_KINDS.get(sub, ("", "", ""))
    if not kind:
        return {"group": r.group, "version": r.version, "kind": r.kind}
    return {"group": group, "version": version, "kind": kind}


def _aggregated_resource(r: ResourceType) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular or r.kind.lower(),
        "verbs": sorted(r.verbs),
    }
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    if r.subresources:
        out["subresources"] = [
            {"subresource": s, "responseKind": _sub_kind(r, s), "verbs": list(SUBRESOURCE_VERBS.get(s, ("get",)))}
            for s in r.subresources
        ]
    return out


def aggregated(*, core: bool, version: str = "v2") -> dict[str, Any]:
    """``/api`` (core only) or ``/apis`` (every named group) as an APIGroupDiscoveryList."""
    items = []
    for group, gv in GROUPS.items():
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": gv,
                        "resources": [_aggregated_resource(r) for r in _of(group, gv)],
                        "freshness": "Current",
                    }
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


def api_versions(host_port: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host_port}],
    }


def api_group(group: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{group}/{GROUPS[group]}", "version": GROUPS[group]}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict[str, Any]:
    groups = []
    for group in GROUPS:
        if group:
            g = api_group(group)
            g.pop("kind")
            g.pop("apiVersion")
            groups.append(g)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for r in _of(group, version):
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular or r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": sorted(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        for s in r.subresources:
            kind = _sub_kind(r, s)
            sub: dict[str, Any] = {
                "name": f"{r.plural}/{s}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind["kind"],
                "verbs": list(SUBRESOURCE_VERBS.get(s, ("get",))),
            }
            if kind["group"] != r.group:
                sub["group"] = kind["group"]
                sub["version"] = kind["version"]
            resources.append(sub)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _openapi_doc(group: str, version: str) -> dict[str, Any]:
    # Only what kubectl's client-side check needs: a PATCH operation per kind that declares its GVK and accepts the
    # fieldValidation query parameter. Schemas are left open, so server-side validation is ours to do.
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for r in _of(group, version):
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        ref = f"io.k8s.sandbox.{r.group or 'core'}.{r.version}.{r.kind}"
        schemas[ref] = {"type": "object", "x-kubernetes-group-version-kind": [gvk]}
        params = [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ]
        body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}
        ok = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
            }
        }
        paths[f"{prefix}{scope}/{r.plural}/{{name}}"] = {
            "get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok},
            "put": {
                "x-kubernetes-action": "put",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": body,
                "responses": ok,
            },
            "patch": {
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": {"content": {"application/strategic-merge-patch+json": {"schema": {"type": "object"}}}},
                "responses": ok,
            },
        }
        paths[f"{prefix}{scope}/{r.plural}"] = {
            "post": {
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": body,
                "responses": ok,
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.3"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


# metrics.k8s.io is read-only and nothing validates against it, so it has no document (kubectl explain cannot
# describe it).
_DOCS: dict[str, dict[str, Any]] = {_gv_path(g, v): _openapi_doc(g, v) for g, v in GROUPS.items() if g != METRICS_GROUP}
_HASHES = {
    p: hashlib.sha512(json.dumps(d, sort_keys=True).encode()).hexdigest().upper()[:128] for p, d in _DOCS.items()
}


def openapi_root() -> dict[str, Any]:
    return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"} for p, h in _HASHES.items()}}


def openapi_group(path: str) -> dict[str, Any] | None:
    return _DOCS.get(path)
