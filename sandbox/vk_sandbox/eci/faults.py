"""Standing faults injected into API calls: throttling, 5xx errors, latency and stock exhaustion.

One-shot faults (spot reclamation, a container crash, expiry) act on groups and live in the engine.
"""

from __future__ import annotations

import random
import time
from typing import Any

from pydantic import BaseModel, Field

from vk_sandbox.eci.wire import ApiError


class RateFault(BaseModel):
    """Fail a share of calls. ``actions`` empty means every action."""

    rate: float = Field(default=0.0, ge=0, le=1)
    code: str = "Throttling.User"
    actions: list[str] = []


class LatencyFault(BaseModel):
    seconds: float = Field(default=0.0, ge=0, le=60)
    actions: list[str] = []


class NoStock(BaseModel):
    zones: list[str] = []
    vswitches: list[str] = []
    specs: list[str] = []  # "2-4" for 2 vCPU / 4 GiB
    spot: bool = False  # with nothing else listed: every spot group; otherwise only spot groups in the places listed


class Network(BaseModel):
    """The vSwitches and security groups that exist; a create naming another is refused. An empty list
    leaves that kind unchecked (beyond its id prefix)."""

    vswitches: list[str] = []
    security_groups: list[str] = []


class FaultConfig(BaseModel):
    """The standing faults; the same JSON as ``POST /_sim/faults`` (without the one-shot keys)."""

    throttle: RateFault | None = None
    qps: dict[str, float] = {}  # action (or "*") -> calls per second, token bucket with burst = max(1, qps)
    errors: RateFault | None = None
    latency: LatencyFault | None = None
    no_stock: NoStock | None = None
    network: Network | None = None
    deny: list[str] = []  # actions a RAM policy does not allow: Forbidden.RAM
    clock_offset_seconds: float = Field(default=0.0, ge=-86400, le=86400)  # added to the simulator's clock
    seed: int | None = None


THROTTLE_CODES = {"Throttling", "Throttling.User", "Throttling.Api"}
ERROR_STATUS = {"InternalError": 500, "ServiceUnavailable": 503, "UnknownError": 500}


class _Bucket:
    def __init__(self, qps: float) -> None:
        self.rate = qps
        self.burst = max(1.0, qps)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Faults:
    def __init__(self) -> None:
        self.config = FaultConfig()
        self._random = random.Random()
        self._buckets: dict[str, _Bucket] = {}
        self.injected: dict[str, int] = {}

    def update(self, data: dict[str, Any]) -> None:
        """Merge: keys present replace the standing fault (null clears it); others stay."""
        merged = self.config.model_dump()
        merged.update(data)
        config = FaultConfig.model_validate(merged)
        for fault in (config.throttle, config.errors):
            if fault is not None and fault.code not in THROTTLE_CODES | set(ERROR_STATUS):
                raise ValueError(f"unknown fault code {fault.code!r}")
        self.config = config
        if "qps" in data:
            self._buckets = {a: _Bucket(q) for a, q in config.qps.items() if q > 0}
        if config.seed is not None and "seed" in data:
            self._random.seed(config.seed)

    def _count(self, code: str) -> None:
        self.injected[code] = self.injected.get(code, 0) + 1

    def latency_for(self, action: str) -> float:
        lat = self.config.latency
        if lat is None or (lat.actions and action not in lat.actions):
            return 0.0
        return lat.seconds

    def now(self) -> float:
        """The simulator's clock: the host's, moved by ``clock_offset_seconds``."""
        return time.time() + self.config.clock_offset_seconds

    def check_network(self, vswitches: list[str], security_group: str) -> None:
        """Refuse ids that cannot be a vSwitch or security group, or that the ``network`` fault does not list."""
        known = self.config.network or Network()
        for vswitch in vswitches:
            if not vswitch.startswith("vsw-") or (known.vswitches and vswitch not in known.vswitches):
                raise ApiError("InvalidVSwitchId.NotFound", f"The specified vSwitch {vswitch} does not exist.", 404)
        if security_group and (
            not security_group.startswith("sg-")
            or (known.security_groups and security_group not in known.security_groups)
        ):
            raise ApiError(
                "InvalidSecurityGroupId.NotFound", f"The specified security group {security_group} does not exist.", 404
            )

    def check(self, action: str) -> None:
        """Raise the injected error for this call, if any."""
        if action in self.config.deny:
            self._count("Forbidden.RAM")
            raise ApiError(
                "Forbidden.RAM", f"User not authorized to operate on the specified resource ({action}).", 403
            )
        bucket = self._buckets.get(action) or self._buckets.get("*")
        if bucket is not None and not bucket.take():
            self._count("Throttling")
            raise ApiError("Throttling", "Request was denied due to request throttling.", 400)
        thr = self.config.throttle
        if thr is not None and (not thr.actions or action in thr.actions) and self._random.random() < thr.rate:
            self._count(thr.code)
            raise ApiError(thr.code, "Request was denied due to user flow control.", 400)
        err = self.config.errors
        if err is not None and (not err.actions or action in err.actions) and self._random.random() < err.rate:
            self._count(err.code)
            status = ERROR_STATUS.get(err.code, 400)
            message = {
                "InternalError": "The request processing has failed due to some unknown error.",
                "ServiceUnavailable": "The request has failed due to a temporary failure of the server.",
            }.get(err.code, "The request failed.")
            raise ApiError(err.code, message, status)

    def no_stock(self, zone: str, vswitch: str, spec: str, *, spot: bool = False) -> str | None:
        """The reason a create in this place has no stock, or None."""
        ns = self.config.no_stock
        if ns is None:
            return None
        if ns.spot:
            if not spot:
                return None
            if not (ns.zones or ns.vswitches or ns.specs):
                return "spot instances"
        if zone in ns.zones:
            return f"zone {zone}"
        if vswitch and any(v in ns.vswitches for v in vswitch.split(",")):
            return f"vSwitch {vswitch}"
        if spec in ns.specs:
            return f"spec {spec}"
        return None
