"""Placing a new group despite NoStock, and reporting where it was placed.

A create is planned as a list of (size, vSwitches) attempts — every spec of eci-use-specs, first with
all vSwitches, then each vSwitch alone (at most ``MAX_ATTEMPTS``). A group that fails to schedule for
lack of stock (synchronously, or as ScheduleFailed with a NoStock event) is deleted and the next attempt
is created; when none is left the pod fails with reason NoStock, its message listing every attempt.

Events of our own travel with the group's (``Entry.events``): NoStock warnings, and one Normal
``ContainerGroupScheduled`` event naming the size (spec or instance type, vCPU, GiB) and zone ECI placed
a group we created in, so ``kubectl describe pod`` shows what is billed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime
from typing import Any

import structlog

from vk_provider.eci import names
from vk_provider.eci.client import error_code
from vk_provider.eci.index import Entry, Index, Plan
from vk_provider.eci.listing import Call
from vk_provider.eci.models import ContainerGroup, CreateContainerGroupResponse
from vk_provider.eci.request import CreateRequest
from vk_provider.eci.specs import SizeChoice
from vk_provider.eci.status import is_no_stock
from vk_provider.errors import NotFound, PermanentError, ProviderError, TransientError
from vk_provider.provider import BackendEvent

log = structlog.get_logger("vk_provider.eci.placement")

MAX_ATTEMPTS = 10
# Statuses a group reaches only once scheduled (ScheduleFailed, the NoStock case, comes from Scheduling).
_PLACED = frozenset({"Running", "Restarting", "Updating", "Succeeded", "Failed", "Terminating"})
NO_STOCK_CODES = ("NoStock", "StockExhaust", "StockClose", "RecommendEmpty", "OutOfStock")


def plan_for(req: CreateRequest) -> Plan:
    """The attempts in order; with ``eci-spot-fallback`` the spot attempts (at most half the budget) are
    followed by the same ones as pay-as-you-go."""
    out: list[tuple[SizeChoice, list[str]]] = []
    for size in req.sizes:
        out.append((size, list(req.vswitch_ids)))
        if len(req.vswitch_ids) > 1:
            out.extend((size, [v]) for v in req.vswitch_ids)
    if not req.spot_fallback:
        return out[:MAX_ATTEMPTS]
    spot = out[: MAX_ATTEMPTS // 2]
    return spot + [(dataclasses.replace(size, pay_as_you_go=True), vsw) for size, vsw in spot]


def _is_no_stock_code(code: str) -> bool:
    return any(code.startswith(c) or c in code for c in NO_STOCK_CODES)


def _where(vswitches: list[str]) -> str:
    return ",".join(vswitches) or "the default vSwitches"


def _tried(plan: Plan, count: int) -> str:
    """'1-2Gi in vsw-a,vsw-b; 1-2Gi in vsw-a; ...' for the first ``count`` attempts of a plan."""
    return "; ".join(f"{size.describe()} in {_where(vsw)}" for size, vsw in plan[:count])


def _gib(v: float | None) -> str:
    return "?" if v is None else (str(int(v)) if float(v).is_integer() else f"{v:g}")


def _now_event(type_: str, reason: str, message: str) -> BackendEvent:
    now = datetime.now(UTC)
    return BackendEvent(type=type_, reason=reason, message=message, count=1, first_timestamp=now, last_timestamp=now)


def _no_stock_event(message: str, plan: Plan, attempt: int) -> BackendEvent:
    nxt = plan[attempt + 1] if attempt + 1 < len(plan) else None
    then = f"; trying {nxt[0].describe()} in {_where(nxt[1])}" if nxt else "; no alternative left"
    return _now_event("Warning", "NoStock", message + then)


def report_placement(entry: Entry, group: ContainerGroup, status: dict[str, Any]) -> None:
    """What placement adds each time a pod is reported: a NoStock failure with no attempt left lists every
    attempt in the status message; a placed group gets its ContainerGroupScheduled event; and the create
    request and the plan are dropped once the group is placed (it can no longer fail to schedule, so no
    NoStock retry or failure message will need them)."""
    if entry.plan and entry.tried >= len(entry.plan) and is_no_stock(group):
        status["message"] = (
            f"{status.get('message') or 'no stock'}; tried {_tried(entry.plan, entry.tried)}, no attempt left"
        )
    _announce_scheduled(entry, group)
    if entry.request is not None and entry.scheduled_announced and group.Status in _PLACED:
        entry.request, entry.plan = None, ()


def _announce_scheduled(entry: Entry, group: ContainerGroup) -> None:
    """Once per group we created: a Normal event with the size and zone ECI placed it in (what is billed).
    Groups adopted after a restart were announced by the daemon that created them."""
    if entry.scheduled_announced or entry.request is None:
        return
    if group.Status in ("", "Scheduling", "ScheduleFailed") or (group.Status == "Pending" and not group.ZoneId):
        return  # not placed yet (the zone is known once ECI has picked a vSwitch)
    entry.scheduled_announced = True
    planned = entry.plan[entry.attempt][0] if entry.attempt < len(entry.plan) else None
    cpu = group.Cpu if group.Cpu is not None else (planned.cpu if planned else None)
    memory = group.Memory if group.Memory is not None else (planned.memory if planned else None)
    size = f"{_gib(cpu)} vCPU, {_gib(memory)} GiB"
    instance_type = group.InstanceType or (planned.instance_type if planned else None)
    if instance_type:
        size = f"instance type {instance_type} ({size})"
    where = f"zone {group.ZoneId}" if group.ZoneId else "a zone ECI did not report"
    if group.VSwitchId:
        where += f", vSwitch {group.VSwitchId}"
    spot = f", spot ({group.SpotStrategy})" if group.SpotStrategy and group.SpotStrategy != "NoSpot" else ""
    entry.events.append(
        _now_event(
            "Normal",
            "ContainerGroupScheduled",
            f"container group {group.ContainerGroupId} runs as {size}{spot} in {where}",
        )
    )


class Placement:
    """Creates a pod's group through its plan of attempts, and replaces a group that failed for lack of stock."""

    def __init__(self, index: Index, call: Call) -> None:
        self._index = index
        self._call = call

    async def create(self, uid: str, namespace: str, name: str, req: CreateRequest, events: list[BackendEvent]) -> None:
        """The first attempt of the plan that ECI accepts; a synchronous NoStock moves on to the next one."""
        await self._attempt(uid, namespace, name, req, plan_for(req), 0, events)

    async def _attempt(
        self,
        uid: str,
        namespace: str,
        name: str,
        req: CreateRequest,
        plan: Plan,
        attempt: int,
        events: list[BackendEvent],
    ) -> None:
        while attempt < len(plan):
            size, vswitches = plan[attempt]
            params = req.to_params(size=size, vswitch_ids=vswitches)
            if attempt:
                params["ClientToken"] = names.client_token(uid, f"create-{attempt}")
            try:
                data = await self._call("CreateContainerGroup", params)
            except ProviderError as exc:
                if not _is_no_stock_code(error_code(exc)):
                    raise
                if attempt + 1 >= len(plan):
                    # The last attempt refused for lack of stock: the pod fails with reason NoStock, like a
                    # group that failed to schedule, and the message says what was tried.
                    raise PermanentError(
                        f"{exc.message}; tried {_tried(plan, attempt + 1)}, no attempt left", reason="NoStock"
                    ) from None
                log.info("eci no stock, trying the next spec", pod=f"{namespace}/{name}", attempt=attempt)
                events.append(_no_stock_event(exc.message, plan, attempt))
                attempt += 1
                continue
            group_id = CreateContainerGroupResponse.model_validate(data).ContainerGroupId
            self._index.put(
                Entry(
                    uid=uid,
                    namespace=namespace,
                    name=name,
                    group_id=group_id,
                    request=req,
                    plan=plan,
                    attempt=attempt,
                    tried=attempt + 1,
                    events=events,
                )
            )
            log.info("eci group created", pod=f"{namespace}/{name}", group=group_id, size=size.describe())
            return
        raise TransientError("no create attempt left")

    async def next_attempt(self, entry: Entry, message: str) -> bool:
        """Replace a NoStock group with the next planned attempt; False when none is left."""
        if entry.request is None or entry.attempt + 1 >= len(entry.plan):
            return False
        entry.events.append(_no_stock_event(message, entry.plan, entry.attempt))
        with contextlib.suppress(NotFound):
            await self._call("DeleteContainerGroup", {"ContainerGroupId": entry.group_id})
        try:
            await self._attempt(
                entry.uid, entry.namespace, entry.name, entry.request, entry.plan, entry.attempt + 1, entry.events
            )
        except ProviderError as exc:
            log.warning("eci NoStock retry failed", pod=f"{entry.namespace}/{entry.name}", error=exc.message)
            if exc.reason == "NoStock":
                entry.tried = len(entry.plan)  # the remaining attempts were refused at once
            return False
        return True
