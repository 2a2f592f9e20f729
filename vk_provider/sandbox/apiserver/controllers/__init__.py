"""Control loops of the sandbox API server (scheduler, node lifecycle, workloads, GC, CSR signer).

Each controller is a coroutine function taking the server's ``ControllerContext``; the server starts every
entry of ``CONTROLLERS`` as a task and cancels them on exit. Controllers talk only to the ``Store``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

CONTROLLERS: list[Callable[[Any], Coroutine[Any, Any, None]]] = []

__all__ = ["CONTROLLERS"]
