"""Unit tests of the scheduler's resource arithmetic (controllers/capacity.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from vk_sandbox.apiserver.controllers import capacity as c


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", Decimal("0.5")), ("2", Decimal(2)), ("4Gi", Decimal(4 * 2**30)), ("1k", Decimal(1000)), (3, Decimal(3))],
)
def test_quantities_parse(text: Any, value: Decimal) -> None:
    assert c.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1i", "5Qi", True])
def test_bad_quantities_are_refused(text: Any) -> None:
    with pytest.raises(ValueError):
        c.parse_quantity(text)


def container(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None, **extra: Any) -> Any:
    return {"name": "c", "resources": {"requests": requests or {}, "limits": limits or {}}, **extra}


def test_pod_request_is_the_larger_of_containers_and_init_steps_plus_overhead() -> None:
    """Containers add up; a big init container wins; a sidecar adds to later steps and to the containers."""
    pod = {
        "spec": {
            "containers": [container({"cpu": "250m"}), container(limits={"cpu": "250m", "memory": "1Gi"})],
            "initContainers": [
                container({"cpu": "100m"}, restartPolicy="Always"),
                container({"cpu": "2", "nvidia.com/gpu": "1"}),
            ],
            "overhead": {"cpu": "10m"},
        }
    }
    # containers 500m + sidecar 100m = 600m; init step 2000m + 100m = 2100m -> 2100m, plus overhead 10m
    assert c.pod_requests(pod) == {"cpu": 2110, "memory": 2**30, "nvidia.com/gpu": 1}


def test_nonzero_requests_count_defaults_for_empty_containers() -> None:
    pod = {"spec": {"containers": [container(), container({"cpu": "1", "memory": "1Mi"})]}}
    assert c.nonzero_requests(pod) == (1100, 200 * 2**20 + 2**20)


def test_insufficient_lists_reasons_in_the_real_order() -> None:
    request = {"cpu": 1000, "memory": 10, "nvidia.com/gpu": 1, "ephemeral-storage": 5}
    assert c.insufficient(0, request, {"cpu": 500, "memory": 5, "ephemeral-storage": 1}) == [
        "Too many pods",
        "Insufficient cpu",
        "Insufficient memory",
        "Insufficient ephemeral-storage",
        "Insufficient nvidia.com/gpu",
    ]
    assert c.insufficient(1, {}, {}) == []


def test_node_without_resources_is_unlimited_and_allocatable_falls_back_to_capacity() -> None:
    assert c.allocatable({"status": {}}) is None
    assert c.allocatable({"status": {"capacity": {"cpu": "2", "pods": "10"}}}) == {"cpu": 2000, "pods": 10}
