"""Quantities are stored in the real API server's canonical form (values checked against kube-apiserver v1.36.3)."""

from __future__ import annotations

import pytest

from vk_sandbox.apiserver.quantity import canonical
from vk_sandbox.apiserver.store import Store

# What kube-apiserver v1.36.3 stored for each value sent as a container's cpu/memory request.
REAL = {
    "0.5": "500m",
    "1000m": "1",
    "10000": "10k",
    "1024Mi": "1Gi",
    "1.5Gi": "1536Mi",
    "0.1m": "1m",
    "0.0000000001": "1m",
    "1e3": "1e3",
    "12e6": "12e6",
    "1.5e3": "1500",
    "100e-1": "10",
    "2048Ki": "2Mi",
    "1025Ki": "1025Ki",
    "0.5Ki": "512",
    "1.5Ki": "1536",
    "1.1Ki": "1126400m",
    "1023": "1023",
    "3e-3": "3e-3",
    "1000000": "1M",
    "1500000000Ki": "1500000000Ki",
    "0Gi": "0",
    "0.001": "1m",
    "1.": "1.",
    ".5": "500m",
    "+2": "+2",
    "2000m": "2",
    "1024Ki": "1Mi",
    "100n": "1m",
    "1500u": "2m",
    "1E3": "1E3",
    "3Ei": "3Ei",
    "1500k": "1500k",
    "1000000000000000000": "1E",
    "5e-10": "1e-3",
}


@pytest.mark.parametrize(("sent", "stored"), sorted(REAL.items()))
def test_canonical_matches_the_real_server(sent: str, stored: str) -> None:
    assert canonical(sent) == stored


def test_json_numbers_and_nano_rounding() -> None:
    assert canonical(2) == "2"
    assert canonical(0.5) == "500m"
    assert canonical("0.0000001", milli=False) == "100n"  # an emptyDir sizeLimit is not a resource list
    with pytest.raises(ValueError):
        canonical("1.5x")
    with pytest.raises(ValueError):
        canonical(True)


def _pod(resources: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": resources}]},
    }


def test_pod_and_node_are_stored_canonical() -> None:
    store = Store()
    store.namespace_guard = False
    limits = {"cpu": "1000m", "memory": "1.5Gi", "ephemeral-storage": 1000000}
    pod = store.create_now("pods", _pod({"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": limits}))
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1", "memory": "1536Mi", "ephemeral-storage": "1M"},
        # A request the pod does not give defaults to its limit (for a Pod, not for a template).
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1M"},
    }
    capacity = {"cpu": "10000", "memory": "1024Mi", "pods": "110"}
    node = store.create_now("nodes", {"metadata": {"name": "n"}, "status": {"capacity": capacity}})
    # An absent allocatable is the capacity.
    assert node["status"]["capacity"] == node["status"]["allocatable"] == {"cpu": "10k", "memory": "1Gi", "pods": "110"}
    node["status"]["allocatable"] = {"cpu": "9500m", "memory": "2048Mi"}
    updated = store.update_now("nodes", node, subresource="status")
    assert updated["status"]["allocatable"] == {"cpu": "9500m", "memory": "2Gi"}


def test_template_keeps_requests_apart_from_limits() -> None:
    store = Store()
    store.namespace_guard = False
    dep = store.create_now(
        "deployments.apps",
        {
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1000m"}}}],
                        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "0.0000001"}}],
                    },
                },
            },
        },
    )
    t_spec = dep["spec"]["template"]["spec"]
    assert t_spec["containers"][0]["resources"] == {"limits": {"cpu": "1"}}
    assert t_spec["volumes"][0]["emptyDir"]["sizeLimit"] == "100n"


def test_a_value_that_is_not_a_quantity_is_a_400_in_the_real_words() -> None:
    """As kube-apiserver v1.36.3: the request is refused while decoding, nothing is stored."""
    from vk_sandbox.apiserver.errors import ApiError

    store = Store()
    store.namespace_guard = False
    with pytest.raises(ApiError) as exc:
        store.create_now("pods", _pod({"requests": {"cpu": "1.5x"}}))
    assert (exc.value.code, exc.value.reason) == (400, "BadRequest")
    assert exc.value.message == (
        'Pod in version "v1" cannot be handled as a Pod: quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    with pytest.raises(ApiError) as exc:
        store.create_now("nodes", {"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "1kk"}}})
    assert exc.value.message == 'Node in version "v1" cannot be handled as a Node: unable to parse quantity\'s suffix'
    assert store.get("pods", "default", "p") is None and store.get("nodes", None, "n") is None
