"""The ECI spec table, Kubernetes quantities, and how a pod's size is chosen.

The group size follows ACK's rule: per container take the limit when set, else the request; the pod
needs max(sum over containers, largest init container) — init containers run one at a time before
the others; then round up to the smallest listed spec that covers both CPU and memory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from vk_provider.errors import InvalidInput

GIB = 1024**3

# vCPU -> memory GiB choices, available in every region (eci-notes.md).
SPEC_TABLE: dict[float, tuple[float, ...]] = {
    0.25: (0.5, 1),
    0.5: (1, 2),
    1: (2, 4, 8),
    2: (1, 2, 4, 8, 16),
    4: (2, 4, 8, 16, 32),
    8: (4, 8, 16, 32, 64),
    12: (12, 24, 48, 96),
    16: (16, 32, 64, 128),
    24: (24, 48, 96, 192),
    32: (32, 64, 128, 256),
    52: (96, 192, 384),
    64: (128, 256, 512),
}
SPECS: tuple[tuple[float, float], ...] = tuple(sorted((c, m) for c, ms in SPEC_TABLE.items() for m in ms))
DEFAULT_SPEC = (2.0, 4.0)

_SUFFIX: dict[str, int | Decimal] = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": Decimal("0.001"),
    "u": Decimal("0.000001"),
    "n": Decimal("0.000000001"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|u|n)?$")


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "1.5Gi", 2) as a Decimal in base units."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from None
    return number * Decimal(_SUFFIX[m.group(2) or ""])


@dataclass(frozen=True)
class SizeChoice:
    """One way to size a group: a (vCPU, GiB) spec, or an ECS instance type."""

    cpu: float | None = None
    memory: float | None = None
    instance_type: str | None = None
    pay_as_you_go: bool = False  # a spot pod's fallback attempt (eci-spot-fallback): created as NoSpot

    def describe(self) -> str:
        what = self.instance_type or f"{_fmt(self.cpu)}-{_fmt(self.memory)}Gi"
        return f"{what} pay-as-you-go" if self.pay_as_you_go else what


def _fmt(v: float | None) -> str:
    if v is None:
        return "?"
    return str(int(v)) if float(v).is_integer() else str(v)


def round_to_spec(cpu: float, memory_gib: float) -> tuple[float, float]:
    """The smallest listed spec (fewest vCPU, then least memory) covering both; InvalidInput if none."""
    if cpu <= 0 and memory_gib <= 0:
        return DEFAULT_SPEC
    for c, m in SPECS:
        if c >= cpu - 1e-9 and m >= memory_gib - 1e-9:
            return (c, m)
    raise InvalidInput(
        f"the pod needs {cpu:g} vCPU and {memory_gib:g} GiB, more than the largest ECI spec "
        f"({SPECS[-1][0]:g} vCPU, {max(m for _, m in SPECS):g} GiB)",
        reason="SpecTooLarge",
    )


def container_size(container: dict[str, Any]) -> tuple[float, float]:
    """(vCPU, GiB) of one container: each resource's limit when set, else its request, else 0."""
    res = container.get("resources") or {}
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    out: list[float] = []
    for key, unit in (("cpu", 1), ("memory", GIB)):
        raw = limits.get(key, requests.get(key))
        if raw is None:
            out.append(0.0)
            continue
        try:
            out.append(float(parse_quantity(raw)) / unit)
        except ValueError:
            name = container.get("name", "?")
            raise InvalidInput(f"container {name}: resources {key} {raw!r} is not a quantity") from None
    return out[0], out[1]


def effective_size(spec: dict[str, Any]) -> tuple[float, float]:
    """max(sum of containers, largest init container) for CPU and memory separately."""
    cpu = sum(container_size(c)[0] for c in spec.get("containers") or [])
    mem = sum(container_size(c)[1] for c in spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        c, m = container_size(init)
        cpu, mem = max(cpu, c), max(mem, m)
    return cpu, mem


def size_for_pod(spec: dict[str, Any]) -> SizeChoice:
    cpu, mem = effective_size(spec)
    c, m = round_to_spec(cpu, mem)
    return SizeChoice(cpu=c, memory=m)


def ceil_div(value: Decimal, divisor: Decimal) -> int:
    return math.ceil(value / divisor)
