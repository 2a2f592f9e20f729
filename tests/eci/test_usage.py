"""fetch_usage: batching by 20 and taking each group's latest record."""

from __future__ import annotations

from typing import Any

from vk_provider.eci.usage import UsageTarget, fetch_usage


async def test_batches_of_twenty_and_latest_record() -> None:
    """45 groups cost 3 calls of at most 20 ids; the newest record wins; groups without data are left out."""
    calls: list[list[str]] = []

    async def call(action: str, params: dict[str, Any]) -> dict[str, Any]:
        assert action == "DescribeMultiContainerGroupMetric" and params["MetricType"] == "summary"
        ids = params["ContainerGroupIds"]
        calls.append(ids)
        datas = []
        for gid in ids:
            if gid == "g7":
                continue
            datas.append(
                {
                    "ContainerGroupId": gid,
                    "Records": [
                        {
                            "Timestamp": "2026-01-01T00:00:00Z",
                            "Containers": [{"Name": "app", "CPU": {"UsageNanoCores": 1}}],
                        },
                        {
                            "Timestamp": "2026-01-01T00:00:15Z",
                            "Containers": [
                                {
                                    "Name": "app",
                                    "CPU": {"UsageNanoCores": 5, "UsageCoreNanoSeconds": 9},
                                    "Memory": {"WorkingSet": 100, "UsageBytes": 120},
                                }
                            ],
                        },
                    ],
                }
            )
        return {"MonitorDatas": datas}

    targets = [UsageTarget(f"g{i}", "ns", f"p{i}", f"u{i}", None, ("app",)) for i in range(45)]
    usage = await fetch_usage(call, targets)
    assert [len(c) for c in calls] == [20, 20, 5]
    assert len(usage) == 44 and "p7" not in {u.name for u in usage}
    c = usage[0].containers[0]
    assert (c.cpu_usage_nano_cores, c.cpu_usage_core_nano_seconds, c.memory_working_set_bytes) == (5, 9, 100)
