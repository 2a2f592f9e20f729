"""The kubelet API's documented shapes (tests/contracts/kubelet/) against kubelet/stats.py's output."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.contracts.shapes import drift, missing
from vk_provider.kubelet.stats import build_summary, render_resource_metrics
from vk_provider.provider import ContainerUsage, PodUsage

FIXTURES = Path(__file__).parent / "kubelet"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    assert data["_source"]["reference"]
    return data


def _pods() -> list[PodUsage]:
    container = ContainerUsage(
        name="main",
        start_time=NOW - timedelta(minutes=5),
        timestamp=NOW,
        cpu_usage_nano_cores=2_000_000,
        cpu_usage_core_nano_seconds=7_000_000_000,
        memory_working_set_bytes=3 << 20,
        memory_usage_bytes=4 << 20,
        memory_rss_bytes=2 << 20,
        memory_available_bytes=60 << 20,
    )
    return [PodUsage("default", "web", "uid-1", NOW - timedelta(minutes=6), NOW, [container])]


def test_stats_summary_has_the_documented_shape() -> None:
    documented = _fixture("stats-summary.json")["response"]
    ours = build_summary("vk", NOW - timedelta(hours=1), _pods(), NOW)
    extra, mismatched = drift(documented, ours)
    assert (extra, mismatched) == ([], [])
    # Every documented field is there but availableBytes of the pod and the node: optional in v1alpha1
    # (omitempty), and neither a pod's group nor a virtual node reports a ceiling of its own. A virtual
    # node has no system containers.
    assert missing(documented, ours) == ["node.memory.availableBytes", "pods[].memory.availableBytes"]
    assert ours["node"]["systemContainers"] == []


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)(?: (?P<ts>\d+))?$")


def test_metrics_resource_has_the_documented_series_and_labels() -> None:
    documented: dict[str, list[str]] = _fixture("metrics-resource.json")["metrics"]
    text = render_resource_metrics(_pods(), NOW)
    seen: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = [pair.split("=", 1)[0] for pair in m["labels"].split(",")] if m["labels"] else []
        assert seen.setdefault(m["name"], labels) == labels
        float(m["value"])
        if m["ts"]:
            assert len(m["ts"]) == 13, "sample timestamps are milliseconds"
    assert seen == documented
