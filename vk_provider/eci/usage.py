"""Pod resource usage from DescribeMultiContainerGroupMetric: 20 groups per call, latest record each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vk_provider.eci.models import DescribeMultiContainerGroupMetricResponse, MetricRecord
from vk_provider.provider import ContainerUsage, PodUsage

BATCH = 20


@dataclass(frozen=True)
class UsageTarget:
    group_id: str
    namespace: str
    name: str
    uid: str
    start_time: datetime | None
    containers: tuple[str, ...]


def record_to_usage(target: UsageTarget, record: MetricRecord) -> PodUsage:
    by_name = {c.Name: c for c in record.Containers}
    containers = []
    for name in target.containers or tuple(by_name):
        c = by_name.get(name)
        if c is None:
            continue
        containers.append(
            ContainerUsage(
                name=name,
                start_time=target.start_time,
                timestamp=record.Timestamp,
                cpu_usage_nano_cores=c.CPU.UsageNanoCores,
                cpu_usage_core_nano_seconds=c.CPU.UsageCoreNanoSeconds,
                memory_working_set_bytes=c.Memory.WorkingSet,
                memory_usage_bytes=c.Memory.UsageBytes,
                memory_rss_bytes=c.Memory.Rss,
                memory_available_bytes=c.Memory.AvailableBytes,
            )
        )
    return PodUsage(
        namespace=target.namespace,
        name=target.name,
        uid=target.uid,
        start_time=target.start_time,
        timestamp=record.Timestamp,
        containers=containers,
    )


async def fetch_usage(
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]], targets: Sequence[UsageTarget]
) -> list[PodUsage]:
    """One DescribeMultiContainerGroupMetric call per 20 groups, run concurrently; groups without data are left out."""
    by_id = {t.group_id: t for t in targets}
    ids = list(by_id)
    batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]

    async def one(batch: list[str]) -> list[PodUsage]:
        data = await call("DescribeMultiContainerGroupMetric", {"ContainerGroupIds": batch, "MetricType": "summary"})
        resp = DescribeMultiContainerGroupMetricResponse.model_validate(data)
        out = []
        for item in resp.MonitorDatas:
            target = by_id.get(item.ContainerGroupId)
            if target is None or not item.Records:
                continue
            latest = max(item.Records, key=lambda r: r.Timestamp)
            out.append(record_to_usage(target, latest))
        return out

    results = await asyncio.gather(*(one(b) for b in batches))
    return [u for batch in results for u in batch]
