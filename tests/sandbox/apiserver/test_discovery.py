"""Discovery documents and the minimal OpenAPI v3 agree with the served resource table."""

from __future__ import annotations

from vk_sandbox.apiserver.discovery import (
    aggregated,
    api_group_list,
    openapi_group,
    openapi_root,
    resource_list,
)
from vk_sandbox.apiserver.resources import _ALL, GROUPS


def test_aggregated_and_legacy_discovery_list_every_resource() -> None:
    """Every served resource appears in aggregated discovery (with a responseKind, as kubectl requires) and in
    its legacy APIResourceList; /api is only the core group and /apis every other group."""
    core = aggregated(core=True)
    named = aggregated(core=False)
    assert [i["metadata"]["name"] for i in core["items"]] == [""]
    assert {i["metadata"]["name"] for i in named["items"]} == {g for g in GROUPS if g}
    seen = {
        (item["metadata"]["name"], res["resource"])
        for item in core["items"] + named["items"]
        for res in item["versions"][0]["resources"]
        if res["responseKind"]["kind"]
    }
    assert seen == {(r.group, r.plural) for r in _ALL}
    for r in _ALL:
        names = {e["name"] for e in resource_list(r.group, r.version)["resources"]}
        assert r.plural in names and all(f"{r.plural}/{s}" in names for s in r.subresources)
    assert {g["name"] for g in api_group_list()["groups"]} == {g for g in GROUPS if g}


def test_openapi_v3_declares_a_patch_with_field_validation_per_kind() -> None:
    """Each group-version document has, for every kind, a PATCH with its GVK and a fieldValidation parameter."""
    root = openapi_root()["paths"]
    for path, entry in root.items():
        assert entry["serverRelativeURL"].startswith(f"/openapi/v3/{path}?hash=")
        doc = openapi_group(path)
        assert doc is not None
        kinds = {
            op["x-kubernetes-group-version-kind"]["kind"]
            for ops in doc["paths"].values()
            for verb, op in ops.items()
            if verb == "patch" and any(p["name"] == "fieldValidation" for p in op["parameters"])
        }
        group, version = ("", path.split("/")[1]) if path.startswith("api/") else tuple(path.split("/")[1:3])
        assert kinds == {r.kind for r in _ALL if r.group == group and r.version == version}
    assert openapi_group("apis/nope/v1") is None
