"""The write fence: the one place where "only the leader writes" is enforced.

Every writer consults the same ``Fence``: ``KubeAPI.request`` for every verb but GET (its
``write_gate`` is ``Fence.check``), and
``ECIClient.call`` for every ECI action that changes something (all but Describe*, List* and
ExecContainerCommand). The elector grants the fence up to a monotonic deadline — the start of the
last successful Lease renewal plus ``ha.renew_deadline_seconds`` — so writes stop by themselves when
renewals stop, without any loop having to run: a process that was paused (SIGSTOP) past that deadline
finds the fence closed the moment it resumes, before the elector has looked at anything.
``time.monotonic`` keeps counting while a process is stopped, so the pause is seen.

Nothing can send a refused write: ``check()`` raises ``NotLeader`` (a ``TransientError``, so a worker
requeues the pod for whoever leads next). What the fence cannot stop is a request that passed the
check just before the pause and was on the wire during it; the Lease margin (lease duration minus renew
deadline, 5 s by default) covers those, and ClientTokens make a repeated create harmless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from vk_provider.errors import TransientError
from vk_provider.metrics import FENCED_WRITES


class NotLeader(TransientError):
    """A write refused by the fence: this replica is a standby, or its leadership expired."""

    reason = "NotLeader"


class Fence:
    """Writes are allowed while ``clock() < until``. Starts closed; ``open()`` for a daemon without election."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = -math.inf

    def open(self) -> None:
        """Allow every write for good (``ha.enabled=false``: this process always leads)."""
        self._until = math.inf

    def grant(self, until: float) -> None:
        """Allow writes until the monotonic time ``until`` (a renewal that started at t grants t + deadline)."""
        self._until = until

    def revoke(self) -> None:
        self._until = -math.inf

    def remaining(self) -> float:
        """Seconds of write permission left (negative once closed)."""
        return self._until - self._clock()

    def allowed(self) -> bool:
        return self._clock() < self._until

    def check(self, target: str, what: str) -> None:
        """Raise ``NotLeader`` unless writes are allowed; ``target`` (kube or eci) labels the metric."""
        if self._clock() < self._until:
            return
        FENCED_WRITES.labels(target).inc()
        raise NotLeader(f"{what} refused: this replica does not hold the leader Lease", reason="NotLeader")
