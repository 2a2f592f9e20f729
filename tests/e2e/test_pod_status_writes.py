"""What a write to ``pods/<name>/status`` keeps, on both tiers: the daemon folds its write-back annotations into its
status PATCH (pods/writeback.py), which is right only if the API server keeps them."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StackFactory
from vk_provider.kube.client import MERGE_PATCH

pytestmark = pytest.mark.e2e


async def test_a_status_patch_keeps_metadata_but_not_spec_owners_or_deletion(make_stack: StackFactory) -> None:
    """kube-apiserver's podStatusStrategy resets spec, ownerReferences and deletionTimestamp of a pods/status write
    and keeps the rest of the metadata it was sent (labels, annotations)."""
    stack = await make_stack(daemon=False)
    ns = stack.namespace
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "00000000-0000-0000-0000-000000000001"}
    pod = {
        "metadata": {"name": "status-writes", "labels": {"app": "a"}, "annotations": {"keep": "me"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1"}], "activeDeadlineSeconds": 600},
    }
    created = await stack.create_pod(pod)
    body = {
        "metadata": {
            "uid": created["metadata"]["uid"],
            "labels": {"added": "by-status"},
            "annotations": {"example.com/written": "with-status"},
            "ownerReferences": [owner],
        },
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"message": "hello"},
    }
    path = f"/api/v1/namespaces/{ns}/pods/status-writes/status"
    answer = await stack.kube.request("PATCH", path, body=body, content_type=MERGE_PATCH)
    stored = await stack.pod("status-writes")
    assert stored is not None
    for obj in (answer, stored):
        assert obj["metadata"]["labels"] == {"app": "a", "added": "by-status"}
        assert obj["metadata"]["annotations"] == {"keep": "me", "example.com/written": "with-status"}
        assert "ownerReferences" not in obj["metadata"]
        assert obj["spec"]["activeDeadlineSeconds"] == 600
        assert obj["status"]["message"] == "hello"
        assert obj["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
