"""The client-side rate limits on ECI calls: one token bucket per action, as ECI counts them.

ECI limits each API action separately (per account): CreateContainerGroup and DeleteContainerGroup by a
token bucket (20/s, burst 100), the other actions by a quota per minute (DescribeContainerGroups 2,000,
DescribeContainerLog and ExecContainerCommand 500, ...; ../shared/docs/elasticity-notes.md). So the
daemon keeps one bucket per action too: a backlog of 10,000 creates waits on the create bucket only,
while status polls, deletes, logs and exec pass on their own buckets.

- ``eci.rate_limit_qps`` / ``eci.rate_limit_burst`` are the bucket of each write action
  (CreateContainerGroup, DeleteContainerGroup, UpdateContainerGroup, RestartContainerGroup): ECI's
  rate, half its burst. Calls leave our bucket spaced but may reach ECI bunched (the thread pool, the
  network); at the same rate only a smaller burst leaves ECI's bucket the headroom to take them;
- ``eci.rate_limits_per_minute`` maps any other action (``"*"``: the rest) to its quota per minute,
  enforced as a bucket of a tenth of the quota refilled at ``(quota - burst) / 60`` per second, so that
  no 60-second window ever holds more than the quota, however the service aligns its minutes.
"""

from __future__ import annotations

from collections.abc import Mapping

from vk_provider.aio import RateLimiter

WRITE_ACTIONS = frozenset(
    {"CreateContainerGroup", "DeleteContainerGroup", "UpdateContainerGroup", "RestartContainerGroup"}
)


def per_minute_bucket(quota: int) -> tuple[float, int]:
    """(rate per second, burst) of a bucket that never lets more than ``quota`` calls into a minute."""
    burst = max(1, quota // 10)
    return max(quota - burst, 0.5) / 60.0, burst  # a quota of 1: one call, then one every 2 min


def per_minute_rate(per_minute: Mapping[str, int], action: str) -> float:
    """The steady rate (calls per second) of an action limited per minute (``eci.rate_limits_per_minute``)."""
    return per_minute_bucket(_quota(per_minute, action))[0]


def _quota(per_minute: Mapping[str, int], action: str) -> int:
    return per_minute.get(action, per_minute.get("*", 1000))


class ActionLimiter:
    """The buckets, one per action, made when the action is first called."""

    def __init__(self, write_qps: float, write_burst: int, per_minute: Mapping[str, int]) -> None:
        self._write = (write_qps, write_burst)
        self._per_minute = dict(per_minute)
        self._buckets: dict[str, RateLimiter] = {}

    def bucket(self, action: str) -> RateLimiter:
        limiter = self._buckets.get(action)
        if limiter is None:
            if action in WRITE_ACTIONS:
                rate, burst = self._write
            else:
                rate, burst = per_minute_bucket(_quota(self._per_minute, action))
            limiter = self._buckets[action] = RateLimiter(rate, burst)
        return limiter

    async def acquire(self, action: str) -> None:
        await self.bucket(action).acquire()
