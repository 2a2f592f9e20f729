"""Resource arithmetic of the scheduler: quantities, a pod's effective requests, a node's allocatable.

Amounts are integers in the unit the real scheduler compares: millicores for ``cpu``, plain units (bytes, counts)
for everything else. A pod's request follows the real ``computePodResourceRequest``: the sum over its containers,
or the largest init-container step if that is bigger (restartable "sidecar" init containers keep running, so they
add to every later step and to the containers), plus ``spec.overhead``. A container's request defaults to its limit,
as API defaulting does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Amounts = dict[str, int]

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL = "ephemeral-storage"
PODS = "pods"
# The real scheduler's "non-zero" requests for scoring a container that asks for nothing.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([numkMGTPE]i?)?$")


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "4Gi", "1e3", 2) as a Decimal; ValueError when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) == "i":
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix not in _SUFFIX or ("e" in number.lower() and suffix):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    try:
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation as exc:
        raise ValueError(f"quantities must match the regular expression: {value!r}") from exc


def amount(resource: str, value: Any) -> int:
    """The scheduler's integer for one resource: millicores (rounded up) for cpu, units (rounded up) otherwise."""
    quantity = parse_quantity(value)
    return math.ceil(quantity * 1000) if resource == CPU else math.ceil(quantity)


def amounts(resources: Mapping[str, Any] | None) -> Amounts:
    """A resource list as integers; an unparsable entry counts as 0 (the real API server would have refused it)."""
    out: Amounts = {}
    for name, value in (resources or {}).items():
        try:
            out[str(name)] = amount(str(name), value)
        except ValueError:
            out[str(name)] = 0
    return out


def _container_request(container: Mapping[str, Any]) -> Amounts:
    res = container.get("resources") or {}
    limits = amounts(res.get("limits"))
    requests = amounts(res.get("requests"))
    return {**limits, **requests}


def _add(into: Amounts, more: Mapping[str, int]) -> None:
    for name, n in more.items():
        into[name] = into.get(name, 0) + n


def _max(into: Amounts, other: Mapping[str, int]) -> None:
    for name, n in other.items():
        if n > into.get(name, 0):
            into[name] = n


def pod_requests(pod: Mapping[str, Any]) -> Amounts:
    """The pod's effective request per resource (see the module docstring)."""
    spec = pod.get("spec") or {}
    total: Amounts = {}
    for container in spec.get("containers") or []:
        _add(total, _container_request(container))
    sidecars: Amounts = {}
    init_peak: Amounts = {}
    for container in spec.get("initContainers") or []:
        request = _container_request(container)
        if container.get("restartPolicy") == "Always":
            _add(sidecars, request)
            _max(init_peak, sidecars)
        else:
            step = dict(sidecars)
            _add(step, request)
            _max(init_peak, step)
    _add(total, sidecars)
    _max(total, init_peak)
    _add(total, amounts(spec.get("overhead")))
    return {k: v for k, v in total.items() if v}


def nonzero_requests(pod: Mapping[str, Any]) -> tuple[int, int]:
    """(millicores, bytes) for scoring: containers that ask for no cpu/memory count the real defaults."""
    spec = pod.get("spec") or {}
    cpu = memory = 0
    for container in spec.get("containers") or []:
        request = _container_request(container)
        cpu += request.get(CPU) or DEFAULT_MILLI_CPU
        memory += request.get(MEMORY) or DEFAULT_MEMORY
    return cpu, memory


def allocatable(node: Mapping[str, Any]) -> Amounts | None:
    """The node's allocatable (its capacity when it reports none); None when it reports neither (unlimited)."""
    status = node.get("status") or {}
    resources = status.get("allocatable") or status.get("capacity")
    if not resources:
        return None
    return amounts(resources)


def insufficient(free_pods: int, request: Mapping[str, int], available: Mapping[str, int]) -> list[str]:
    """The NodeResourcesFit reasons, in the real order: pod count, cpu, memory, ephemeral storage, the rest by name.

    ``available`` is allocatable minus what bound pods request; ``free_pods`` the pod slots left.
    """
    reasons = []
    if free_pods < 1:
        reasons.append("Too many pods")
    if not request:
        return reasons
    for name in (CPU, MEMORY, EPHEMERAL):
        if request.get(name, 0) > available.get(name, 0):
            reasons.append(f"Insufficient {name}")
    for name in sorted(request):
        if name in (CPU, MEMORY, EPHEMERAL, PODS):
            continue
        if request[name] > available.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons
