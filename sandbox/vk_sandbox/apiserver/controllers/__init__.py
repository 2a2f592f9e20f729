"""Control loops of the sandbox API server (scheduler, node lifecycle and TTL, workloads, GC, CSR signer).

Each controller is a coroutine function taking the server's ``ControllerContext`` (anything with ``store``,
``ca`` and ``node_lease_grace_seconds``); the server starts every entry of ``CONTROLLERS`` as a task and cancels
them on exit. Controllers talk only to the ``Store``, never over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ._common import Context, restarting
from .csr import csr_signer
from .deployment import deployment_controller
from .disruption import disruption_controller
from .gc import garbage_collector
from .job import job_controller
from .nodelifecycle import node_lifecycle
from .replicaset import replicaset_controller
from .scheduler import scheduler
from .serviceaccounts import service_accounts
from .ttl import ttl_controller

# Each restarts after a crash (logged), so one bad object or bug never switches a control loop off for good.
CONTROLLERS: list[Callable[[Any], Coroutine[Any, Any, None]]] = [
    restarting(c)
    for c in (
        service_accounts,
        scheduler,
        node_lifecycle,
        ttl_controller,
        replicaset_controller,
        deployment_controller,
        disruption_controller,
        job_controller,
        garbage_collector,
        csr_signer,
    )
]

__all__ = [
    "CONTROLLERS",
    "Context",
    "csr_signer",
    "deployment_controller",
    "disruption_controller",
    "garbage_collector",
    "job_controller",
    "node_lifecycle",
    "replicaset_controller",
    "scheduler",
    "service_accounts",
    "ttl_controller",
]
