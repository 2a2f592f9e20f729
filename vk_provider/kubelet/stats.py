"""/stats/summary (the kubelet's v1alpha1 Summary) and /metrics/resource, from ``PodUsage``.

Zero values. metrics-server treats a cumulative CPU of 0 or a working set of 0 as "no data" and
then drops the whole pod (and a node with 0 is dropped too). We never invent usage:
- a value the backend did not report (None) is left out of both outputs;
- a measured 0 is reported as 0 in /stats/summary, which is the truth;
- in /metrics/resource a measured 0 of a *running* container is written as the smallest non-zero
  value (1 ns of CPU, 1 byte of memory), because the exposition format has no way to say
  "measured and idle" that metrics-server accepts, and an idle pod vanishing from ``kubectl top`` and
  from the HPA's view is the worse lie. The difference is below any unit a user can see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vk_provider.provider import ContainerUsage, PodUsage


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu(ts: datetime, nano_cores: int | None, core_ns: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"time": _ts(ts)}
    if nano_cores is not None:
        out["usageNanoCores"] = nano_cores
    if core_ns is not None:
        out["usageCoreNanoSeconds"] = core_ns
    return out


def _memory(ts: datetime, c: ContainerUsage) -> dict[str, Any]:
    out: dict[str, Any] = {"time": _ts(ts)}
    for key, value in (
        ("availableBytes", c.memory_available_bytes),
        ("usageBytes", c.memory_usage_bytes),
        ("workingSetBytes", c.memory_working_set_bytes),
        ("rssBytes", c.memory_rss_bytes),
    ):
        if value is not None:
            out[key] = value
    out["pageFaults"] = 0
    out["majorPageFaults"] = 0
    return out


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _sampled_at(pods: list[PodUsage], now: datetime) -> datetime:
    """When the node totals were measured: the newest of the pod samples they add up (the backend's usage is cached
    for up to ``kubelet.stats_cache_seconds``), else ``now``. Stamped ``now``, an old cumulative CPU would get a new
    time, and metrics-server's node rate over two scrapes would read 0, then too much."""
    return max((p.timestamp for p in pods), default=now)


def build_summary(node_name: str, node_start: datetime, pods: list[PodUsage], now: datetime) -> dict[str, Any]:
    """The v1alpha1 Summary: node totals are the sums over the node's pods (a virtual node has no host)."""
    pod_items: list[dict[str, Any]] = []
    all_containers: list[ContainerUsage] = []
    for pod in pods:
        containers = []
        for c in pod.containers:
            all_containers.append(c)
            containers.append(
                {
                    "name": c.name,
                    "startTime": _ts(c.start_time or pod.start_time),
                    "cpu": _cpu(c.timestamp, c.cpu_usage_nano_cores, c.cpu_usage_core_nano_seconds),
                    "memory": _memory(c.timestamp, c),
                }
            )
        pod_cpu = _cpu(
            pod.timestamp,
            _sum([c.cpu_usage_nano_cores for c in pod.containers]),
            _sum([c.cpu_usage_core_nano_seconds for c in pod.containers]),
        )
        pod_mem = _memory(
            pod.timestamp,
            ContainerUsage(
                name="",
                start_time=None,
                timestamp=pod.timestamp,
                cpu_usage_nano_cores=None,
                cpu_usage_core_nano_seconds=None,
                memory_working_set_bytes=_sum([c.memory_working_set_bytes for c in pod.containers]),
                memory_usage_bytes=_sum([c.memory_usage_bytes for c in pod.containers]),
                memory_rss_bytes=_sum([c.memory_rss_bytes for c in pod.containers]),
            ),
        )
        pod_items.append(
            {
                "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "startTime": _ts(pod.start_time),
                "containers": containers,
                "cpu": pod_cpu,
                "memory": pod_mem,
            }
        )
    sampled = _sampled_at(pods, now)
    node_mem = ContainerUsage(
        name="",
        start_time=None,
        timestamp=sampled,
        cpu_usage_nano_cores=None,
        cpu_usage_core_nano_seconds=None,
        memory_working_set_bytes=_sum([c.memory_working_set_bytes for c in all_containers]) or 0,
        memory_usage_bytes=_sum([c.memory_usage_bytes for c in all_containers]),
        memory_rss_bytes=_sum([c.memory_rss_bytes for c in all_containers]),
    )
    return {
        "node": {
            "nodeName": node_name,
            "startTime": _ts(node_start),
            "cpu": _cpu(
                sampled,
                _sum([c.cpu_usage_nano_cores for c in all_containers]) or 0,
                _sum([c.cpu_usage_core_nano_seconds for c in all_containers]) or 0,
            ),
            "memory": _memory(sampled, node_mem),
            "systemContainers": [],
        },
        "pods": pod_items,
    }


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


_HELP = {
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "resource_scrape_error": ("gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
}


def render_resource_metrics(pods: list[PodUsage] | None, now: datetime) -> str:
    """Prometheus text of /metrics/resource. ``pods=None`` means the scrape failed (resource_scrape_error 1)."""
    series: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: list[tuple[str, str]], value: float, ts: datetime | None) -> None:
        label_text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
        head = f"{name}{{{label_text}}}" if labels else name
        series[name].append(f"{head} {_num(value)}" + (f" {_ms(ts)}" if ts is not None else ""))

    node_cpu_ns = 0
    node_mem = 0
    for pod in pods or []:
        pod_cpu_ns: int | None = None
        pod_mem: int | None = None
        for c in pod.containers:
            labels = [("container", c.name), ("pod", pod.name), ("namespace", pod.namespace)]
            if c.cpu_usage_core_nano_seconds is not None:
                cpu_ns = max(1, c.cpu_usage_core_nano_seconds)  # see the module doc on zero values
                add("container_cpu_usage_seconds_total", labels, cpu_ns / 1e9, c.timestamp)
                pod_cpu_ns = (pod_cpu_ns or 0) + cpu_ns
            if c.memory_working_set_bytes is not None:
                mem = max(1, c.memory_working_set_bytes)
                add("container_memory_working_set_bytes", labels, mem, c.timestamp)
                pod_mem = (pod_mem or 0) + mem
            start = c.start_time or pod.start_time
            if start is not None:
                add("container_start_time_seconds", labels, start.timestamp(), c.timestamp)
        pod_labels = [("pod", pod.name), ("namespace", pod.namespace)]
        if pod_cpu_ns is not None:
            add("pod_cpu_usage_seconds_total", pod_labels, pod_cpu_ns / 1e9, pod.timestamp)
            node_cpu_ns += pod_cpu_ns
        if pod_mem is not None:
            add("pod_memory_working_set_bytes", pod_labels, pod_mem, pod.timestamp)
            node_mem += pod_mem
    if pods is not None:
        sampled = _sampled_at(pods, now)
        add("node_cpu_usage_seconds_total", [], max(1, node_cpu_ns) / 1e9, sampled)
        add("node_memory_working_set_bytes", [], max(1, node_mem), sampled)
    add("resource_scrape_error", [], 0 if pods is not None else 1, None)
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        if not series[name]:
            continue
        lines.append(f"# HELP {name} [STABLE] {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(series[name])
    return "\n".join(lines) + "\n"
