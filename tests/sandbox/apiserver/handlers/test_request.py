"""Reading a request: resource paths and query booleans."""

from __future__ import annotations

import pytest

from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.handlers.request import parse_resource_path, truthy


def test_parse_resource_paths() -> None:
    """Namespaced, cluster-scoped, subresource and proxy paths parse; the namespace object itself is not confused
    with a namespaced collection."""
    t = parse_resource_path(["api", "v1", "namespaces", "ns", "pods", "p", "status"])
    assert (t.rt.key, t.namespace, t.name, t.subresource) == ("pods", "ns", "p", "status")
    t = parse_resource_path(["api", "v1", "namespaces", "ns"])
    assert (t.rt.key, t.namespace, t.name) == ("namespaces", None, "ns")
    t = parse_resource_path(["api", "v1", "nodes", "n1", "proxy", "stats", "summary"])
    assert (t.rt.key, t.subresource, t.rest) == ("nodes", "proxy", "stats/summary")
    t = parse_resource_path(["apis", "apps", "v1", "namespaces", "d", "deployments", "x", "scale"])
    assert (t.rt.key, t.subresource) == ("deployments.apps", "scale")
    t = parse_resource_path(["apis", "coordination.k8s.io", "v1", "leases"])
    assert (t.rt.key, t.namespace, t.name) == ("leases.coordination.k8s.io", None, None)
    for bad in (
        "api/v2/pods",
        "api/v1/widgets",
        "api/v1/namespaces/ns/pods/p/nope",
        "apis/apps/v2/deployments",
        "api/v1/namespaces/ns/pods/p/status/extra",
    ):
        with pytest.raises(ApiError) as exc:
            parse_resource_path(bad.split("/"))
        assert exc.value.code == 404


def test_query_booleans() -> None:
    """Booleans are false only for 0/false."""
    assert truthy("true") and truthy("True") and truthy("1") and truthy("yes")
    assert not truthy("0") and not truthy("FALSE") and not truthy(None)
