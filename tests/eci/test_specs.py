"""Spec table rounding, quantities and the effective pod size."""

from __future__ import annotations

from decimal import Decimal

import pytest

from vk_provider.eci.specs import effective_size, parse_quantity, round_to_spec, size_for_pod
from vk_provider.errors import InvalidInput


def _c(name: str, req: dict[str, str] | None = None, lim: dict[str, str] | None = None) -> dict[str, object]:
    return {"name": name, "resources": {"requests": req or {}, "limits": lim or {}}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("1.5Gi", Decimal(1.5 * 2**30)),
        ("1k", Decimal(1000)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1e3", Decimal(1000)),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    """Kubernetes quantities with decimal and binary suffixes parse to base units."""
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage() -> None:
    """A string that is no quantity raises ValueError."""
    with pytest.raises(ValueError):
        parse_quantity("lots")


@pytest.mark.parametrize(
    ("cpu", "mem", "spec"),
    [
        (0, 0, (2, 4)),
        (0.1, 0.1, (0.25, 0.5)),
        (0.25, 3, (1, 4)),
        (1, 4, (1, 4)),
        (1.5, 1, (2, 1)),
        (3, 20, (4, 32)),
        (64, 512, (64, 512)),
    ],
)
def test_round_to_spec(cpu: float, mem: float, spec: tuple[float, float]) -> None:
    """Requests round up to the smallest listed spec covering both; nothing asked gives 2 vCPU / 4 GiB."""
    assert round_to_spec(cpu, mem) == spec


def test_too_large_is_invalid_input() -> None:
    """A pod bigger than the largest spec is refused with InvalidInput."""
    with pytest.raises(InvalidInput):
        round_to_spec(65, 1)


def test_effective_size_prefers_limits_and_takes_max_with_init() -> None:
    """Limits win over requests; the size is max(sum of containers, largest init container)."""
    spec = {
        "containers": [_c("a", {"cpu": "250m", "memory": "256Mi"}, {"cpu": "500m"}), _c("b", {"cpu": "500m"})],
        "initContainers": [_c("i", {"memory": "3Gi"})],
    }
    cpu, mem = effective_size(spec)
    assert cpu == pytest.approx(1.0)
    assert mem == pytest.approx(3.0)
    assert (size_for_pod(spec).cpu, size_for_pod(spec).memory) == (1, 4)
