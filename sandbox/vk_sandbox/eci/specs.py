"""The ECI spec table (vCPU -> GiB) and the service's rounding of a requested size."""

from __future__ import annotations

from vk_sandbox.eci.wire import ApiError

SPECS: dict[float, tuple[float, ...]] = {
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
DEFAULT_SPEC = (2.0, 4.0)
_ORDERED = sorted(((float(c), float(m)) for c, ms in SPECS.items() for m in ms), key=lambda s: (s[0], s[1]))


def round_spec(cpu: float, memory: float) -> tuple[float, float]:
    """The smallest listed spec covering both ``cpu`` and ``memory`` (fewest vCPU first, then least memory).

    Nothing asked for (both 0) gives the service default of 2 vCPU / 4 GiB.
    """
    if cpu <= 0 and memory <= 0:
        return DEFAULT_SPEC
    for c, m in _ORDERED:
        if c >= cpu and m >= memory:
            return c, m
    raise ApiError(
        "InvalidParameter",
        f"The requested spec {cpu:g} vCPU / {memory:g} GiB exceeds the largest available spec (64 vCPU / 512 GiB).",
    )


def spec_key(cpu: float, memory: float) -> str:
    """How faults name a spec: ``"2-4"`` for 2 vCPU / 4 GiB."""
    return f"{cpu:g}-{memory:g}"
