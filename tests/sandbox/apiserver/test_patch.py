"""Patch application: JSON merge patch, JSON patch and strategic merge patch with its directives."""

from __future__ import annotations

import pytest

from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.patch import apply_json_patch, json_merge_patch, strategic_merge

POD = {
    "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {
                "name": "c1",
                "image": "i1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
            },
            {"name": "c2", "image": "i2"},
        ],
        "tolerations": [{"key": "k", "operator": "Exists"}],
    },
    "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]},
}


def test_merge_patch_merges_maps_and_null_deletes() -> None:
    """RFC 7386: nested maps merge, null removes a key, lists are replaced whole."""
    out = json_merge_patch(POD, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"tolerations": []}})
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["tolerations"] == [] and out["spec"]["containers"] == POD["spec"]["containers"]
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}  # the input is not modified


def test_json_patch_ops_and_failures() -> None:
    """JSON patch applies add/replace/remove/test; a failing test or bad path is 422; a non-list is 400."""
    out = apply_json_patch(
        POD,
        [
            {"op": "replace", "path": "/spec/containers/1/image", "value": "new"},
            {"op": "add", "path": "/metadata/labels/z", "value": "9"},
        ],
    )
    assert out["spec"]["containers"][1]["image"] == "new" and out["metadata"]["labels"]["z"] == "9"
    with pytest.raises(ApiError) as exc:
        apply_json_patch(POD, [{"op": "test", "path": "/metadata/name", "value": "other"}])
    assert exc.value.code == 422
    with pytest.raises(ApiError) as exc:
        apply_json_patch(POD, [{"op": "remove", "path": "/nope/deeper"}])
    assert exc.value.code == 422
    with pytest.raises(ApiError) as exc:
        apply_json_patch(POD, {"op": "add"})
    assert exc.value.code == 400


def test_strategic_merge_by_patch_merge_keys() -> None:
    """containers and env merge by name, ports by containerPort, conditions by type; finalizers merge as a set;
    lists without a merge key (tolerations) are replaced."""
    patch = {
        "metadata": {"finalizers": ["y"]},
        "spec": {
            "containers": [
                {
                    "name": "c1",
                    "image": "i1b",
                    "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                    "ports": [{"containerPort": 80, "name": "http"}],
                },
                {"name": "c3", "image": "i3"},
            ],
            "tolerations": [{"key": "other", "operator": "Exists"}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    out = strategic_merge(POD, patch)
    c1 = out["spec"]["containers"][0]
    assert [c["name"] for c in out["spec"]["containers"]] == ["c1", "c2", "c3"]
    assert c1["image"] == "i1b" and c1["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]
    assert c1["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]
    assert out["metadata"]["finalizers"] == ["x", "y"]
    assert out["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]


def test_status_pod_ips_merge_by_ip() -> None:
    """status.podIPs merges by ip (its patch merge key); containerStatuses, which has none, is replaced."""
    status = {"podIPs": [{"ip": "10.0.0.1"}], "containerStatuses": [{"name": "a"}, {"name": "b"}]}
    out = strategic_merge(status, {"podIPs": [{"ip": "fd00::1"}], "containerStatuses": [{"name": "b"}]})
    assert out == {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "containerStatuses": [{"name": "b"}]}


def test_strategic_merge_directives() -> None:
    """$patch delete removes a list item, $patch replace replaces a map or list, $setElementOrder reorders,
    $deleteFromPrimitiveList removes scalars, and null deletes a key."""
    out = strategic_merge(POD, {"spec": {"containers": [{"name": "c2", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c1"]
    out = strategic_merge(POD, {"metadata": {"labels": {"$patch": "replace", "only": "me"}}})
    assert out["metadata"]["labels"] == {"only": "me"}
    out = strategic_merge(POD, {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "s"}]}})
    assert out["spec"]["containers"] == [{"name": "solo", "image": "s"}]
    out = strategic_merge(
        POD,
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "c2"}, {"name": "c1"}],
                "containers": [{"name": "c1", "image": "z"}],
            }
        },
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2", "c1"]
    assert out["spec"]["containers"][1]["image"] == "z"
    out = strategic_merge(POD, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "labels": {"a": None}}})
    assert out["metadata"]["finalizers"] == [] and out["metadata"]["labels"] == {"b": "2"}
    with pytest.raises(ApiError):
        strategic_merge(POD, {"spec": {"containers": [{"image": "no-name"}]}})
