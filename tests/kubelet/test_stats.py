"""/stats/summary and /metrics/resource bodies from PodUsage, against the shapes in kubelet-notes.md
("/stats/summary and /metrics/resource"); the Prometheus text is also read back with prometheus_client's parser."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from vk_provider.kubelet.stats import build_summary, render_resource_metrics
from vk_provider.provider import ContainerUsage, PodUsage

NOW = datetime(2026, 3, 1, 12, 0, 30, 250000, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 12, 0, 20, 125000, tzinfo=UTC)
T2 = datetime(2026, 3, 1, 12, 0, 25, tzinfo=UTC)
POD_START = datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)
C_START = datetime(2026, 3, 1, 11, 0, 5, tzinfo=UTC)
NODE_START = datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC)


def usage(
    name: str,
    *,
    cpu: int | None = None,
    cpu_total: int | None = None,
    ws: int | None = None,
    used: int | None = None,
    rss: int | None = None,
    avail: int | None = None,
    start: datetime | None = None,
    ts: datetime = T1,
) -> ContainerUsage:
    return ContainerUsage(
        name=name,
        start_time=start,
        timestamp=ts,
        cpu_usage_nano_cores=cpu,
        cpu_usage_core_nano_seconds=cpu_total,
        memory_working_set_bytes=ws,
        memory_usage_bytes=used,
        memory_rss_bytes=rss,
        memory_available_bytes=avail,
    )


def pod(name: str, *containers: ContainerUsage, ns: str = "default", start: datetime | None = POD_START) -> PodUsage:
    return PodUsage(
        namespace=ns, name=name, uid=f"uid-{name}", start_time=start, timestamp=T2, containers=list(containers)
    )


# --- /stats/summary ------------------------------------------------------------------------------------


def test_summary_of_one_full_pod() -> None:
    p = pod(
        "web",
        usage("app", cpu=250_000_000, cpu_total=5_000_000_000, ws=100, used=150, rss=80, avail=900, start=C_START),
        usage("side", cpu=50_000_000, cpu_total=1_000_000_000, ws=20, used=30, rss=10),
    )
    out = build_summary("vk", NODE_START, [p], NOW)
    assert out == {
        "node": {
            "nodeName": "vk",
            "startTime": "2026-02-01T00:00:00Z",
            "cpu": {
                "time": "2026-03-01T12:00:25Z",  # the pod's sample, not the scrape (see the node test below)
                "usageNanoCores": 300_000_000,
                "usageCoreNanoSeconds": 6_000_000_000,
            },
            "memory": {
                "time": "2026-03-01T12:00:25Z",
                "usageBytes": 180,
                "workingSetBytes": 120,
                "rssBytes": 90,
                "pageFaults": 0,
                "majorPageFaults": 0,
            },
            "systemContainers": [],
        },
        "pods": [
            {
                "podRef": {"name": "web", "namespace": "default", "uid": "uid-web"},
                "startTime": "2026-03-01T11:00:00Z",
                "containers": [
                    {
                        "name": "app",
                        "startTime": "2026-03-01T11:00:05Z",
                        "cpu": {
                            "time": "2026-03-01T12:00:20Z",
                            "usageNanoCores": 250_000_000,
                            "usageCoreNanoSeconds": 5_000_000_000,
                        },
                        "memory": {
                            "time": "2026-03-01T12:00:20Z",
                            "availableBytes": 900,
                            "usageBytes": 150,
                            "workingSetBytes": 100,
                            "rssBytes": 80,
                            "pageFaults": 0,
                            "majorPageFaults": 0,
                        },
                    },
                    {
                        "name": "side",
                        "startTime": "2026-03-01T11:00:00Z",  # no start of its own: the pod's
                        "cpu": {
                            "time": "2026-03-01T12:00:20Z",
                            "usageNanoCores": 50_000_000,
                            "usageCoreNanoSeconds": 1_000_000_000,
                        },
                        "memory": {
                            "time": "2026-03-01T12:00:20Z",
                            "usageBytes": 30,
                            "workingSetBytes": 20,
                            "rssBytes": 10,
                            "pageFaults": 0,
                            "majorPageFaults": 0,
                        },
                    },
                ],
                "cpu": {
                    "time": "2026-03-01T12:00:25Z",
                    "usageNanoCores": 300_000_000,
                    "usageCoreNanoSeconds": 6_000_000_000,
                },
                "memory": {
                    "time": "2026-03-01T12:00:25Z",
                    "usageBytes": 180,
                    "workingSetBytes": 120,
                    "rssBytes": 90,
                    "pageFaults": 0,
                    "majorPageFaults": 0,
                },
            }
        ],
    }


def test_summary_node_sums_over_every_pod() -> None:
    pods = [
        pod("a", usage("c", cpu=1, cpu_total=10, ws=100)),
        pod("b", usage("c", cpu=2, cpu_total=20, ws=200), usage("d", cpu=4, cpu_total=40, ws=400), ns="team"),
    ]
    node = build_summary("vk", NODE_START, pods, NOW)["node"]
    assert node["cpu"]["usageNanoCores"] == 7 and node["cpu"]["usageCoreNanoSeconds"] == 70
    assert node["memory"]["workingSetBytes"] == 700
    assert [p["podRef"]["namespace"] for p in build_summary("vk", NODE_START, pods, NOW)["pods"]] == ["default", "team"]


def test_summary_leaves_out_what_was_not_reported_and_keeps_measured_zeros() -> None:
    p = pod("p", usage("idle", cpu=0, cpu_total=0, ws=0), usage("unknown"), start=None)
    out = build_summary("vk", NODE_START, [p], NOW)
    [item] = out["pods"]
    assert item["startTime"] is None
    idle, unknown = item["containers"]
    assert idle["cpu"] == {"time": "2026-03-01T12:00:20Z", "usageNanoCores": 0, "usageCoreNanoSeconds": 0}
    assert idle["memory"]["workingSetBytes"] == 0
    assert unknown["startTime"] is None
    assert unknown["cpu"] == {"time": "2026-03-01T12:00:20Z"}
    assert unknown["memory"] == {"time": "2026-03-01T12:00:20Z", "pageFaults": 0, "majorPageFaults": 0}
    # The pod sums only what is known.
    assert item["cpu"] == {"time": "2026-03-01T12:00:25Z", "usageNanoCores": 0, "usageCoreNanoSeconds": 0}
    assert item["memory"]["workingSetBytes"] == 0 and "usageBytes" not in item["memory"]


def test_summary_of_a_pod_with_nothing_reported() -> None:
    item = build_summary("vk", NODE_START, [pod("p", usage("c"))], NOW)["pods"][0]
    assert item["cpu"] == {"time": "2026-03-01T12:00:25Z"}
    assert item["memory"] == {"time": "2026-03-01T12:00:25Z", "pageFaults": 0, "majorPageFaults": 0}


def test_summary_of_an_empty_node() -> None:
    out = build_summary("vk", NODE_START, [], NOW)
    assert out["pods"] == []
    assert out["node"]["cpu"] == {"time": "2026-03-01T12:00:30Z", "usageNanoCores": 0, "usageCoreNanoSeconds": 0}
    assert out["node"]["memory"] == {
        "time": "2026-03-01T12:00:30Z",
        "workingSetBytes": 0,
        "pageFaults": 0,
        "majorPageFaults": 0,
    }


def test_summary_times_are_utc_seconds() -> None:
    local = datetime(2026, 3, 1, 14, 0, 30, 999999, tzinfo=timezone(timedelta(hours=2)))
    out = build_summary("vk", local, [], local)
    assert out["node"]["startTime"] == "2026-03-01T12:00:30Z"
    assert out["node"]["cpu"]["time"] == "2026-03-01T12:00:30Z"


# --- /metrics/resource ---------------------------------------------------------------------------------


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def test_resource_metrics_exact_text() -> None:
    p = pod("web", usage("app", cpu_total=1_500_000_000, ws=1024, start=C_START))
    text = render_resource_metrics([p], NOW)
    c = 'container="app",pod="web",namespace="default"'
    assert text == "\n".join(
        [
            "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds",
            "# TYPE node_cpu_usage_seconds_total counter",
            f"node_cpu_usage_seconds_total 1.5 {ms(T2)}",
            "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes",
            "# TYPE node_memory_working_set_bytes gauge",
            f"node_memory_working_set_bytes 1024 {ms(T2)}",
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in "
            "core-seconds",
            "# TYPE container_cpu_usage_seconds_total counter",
            f"container_cpu_usage_seconds_total{{{c}}} 1.5 {ms(T1)}",
            "# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes",
            "# TYPE container_memory_working_set_bytes gauge",
            f"container_memory_working_set_bytes{{{c}}} 1024 {ms(T1)}",
            "# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds",
            "# TYPE container_start_time_seconds gauge",
            f"container_start_time_seconds{{{c}}} {C_START.timestamp()!r} {ms(T1)}",
            "# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds",
            "# TYPE pod_cpu_usage_seconds_total counter",
            f'pod_cpu_usage_seconds_total{{pod="web",namespace="default"}} 1.5 {ms(T2)}',
            "# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes",
            "# TYPE pod_memory_working_set_bytes gauge",
            f'pod_memory_working_set_bytes{{pod="web",namespace="default"}} 1024 {ms(T2)}',
            "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, "
            "0 otherwise",
            "# TYPE resource_scrape_error gauge",
            "resource_scrape_error 0",
            "",
        ]
    )
    assert ms(NOW) == 1772366430250 and ms(T1) == 1772366420125  # milliseconds, not seconds


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float, float | None]]:
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                ts = s.timestamp
                out.append((dict(s.labels), s.value, None if ts is None else float(ts)))
    return out


def test_resource_metrics_parse_and_sum_over_pods_and_containers() -> None:
    pods = [
        pod("a", usage("x", cpu_total=1_000_000_000, ws=100), usage("y", cpu_total=2_000_000_000, ws=200)),
        pod("b", usage("x", cpu_total=4_000_000_000, ws=400), ns="team"),
    ]
    text = render_resource_metrics(pods, NOW)
    fams = families(text)
    assert fams["node_cpu_usage_seconds"].type == "counter"  # the parser strips _total from a counter's name
    assert fams["node_memory_working_set_bytes"].type == "gauge"
    assert samples(text, "node_cpu_usage_seconds_total") == [({}, 7.0, T2.timestamp())]
    assert samples(text, "node_memory_working_set_bytes") == [({}, 700.0, T2.timestamp())]
    assert samples(text, "pod_memory_working_set_bytes") == [
        ({"pod": "a", "namespace": "default"}, 300.0, T2.timestamp()),
        ({"pod": "b", "namespace": "team"}, 400.0, T2.timestamp()),
    ]
    assert [s[0] for s in samples(text, "container_cpu_usage_seconds_total")] == [
        {"container": "x", "pod": "a", "namespace": "default"},
        {"container": "y", "pod": "a", "namespace": "default"},
        {"container": "x", "pod": "b", "namespace": "team"},
    ]
    assert samples(text, "resource_scrape_error") == [({}, 0.0, None)]


def test_node_totals_carry_the_time_of_the_newest_pod_sample_not_the_scrape() -> None:
    """The backend's usage is cached (kubelet.stats_cache_seconds): two scrapes within one sample must give the node
    the same (time, value), or metrics-server's node CPU rate reads 0 and then too much (found on the real tier)."""
    old, new = replace(pod("a", usage("x", cpu_total=10**9, ws=1)), timestamp=T1), pod("b", usage("y", cpu_total=1))
    text = render_resource_metrics([old, new], NOW)
    assert samples(text, "node_cpu_usage_seconds_total") == [({}, 1.000000001, T2.timestamp())]
    assert render_resource_metrics([old, new], NOW + timedelta(seconds=10)) == text
    node = build_summary("vk", NODE_START, [old, new], NOW)["node"]
    assert node["cpu"]["time"] == node["memory"]["time"] == "2026-03-01T12:00:25Z"


def test_resource_metrics_label_order_is_container_pod_namespace() -> None:
    text = render_resource_metrics([pod("p", usage("c", ws=1))], NOW)
    [line] = [ln for ln in text.splitlines() if ln.startswith("container_memory_working_set_bytes{")]
    assert line.startswith('container_memory_working_set_bytes{container="c",pod="p",namespace="default"} ')


def test_resource_metrics_escape_label_values() -> None:
    odd = 'we"ird\\na\nme'
    text = render_resource_metrics([pod(odd, usage("c", ws=5), ns="n")], NOW)
    assert 'pod="we\\"ird\\\\na\\nme"' in text
    assert samples(text, "pod_memory_working_set_bytes") == [({"pod": odd, "namespace": "n"}, 5.0, T2.timestamp())]


def test_resource_metrics_zero_is_the_smallest_non_zero_and_none_is_left_out() -> None:
    pods = [pod("p", usage("idle", cpu_total=0, ws=0), usage("unknown"), start=None)]
    text = render_resource_metrics(pods, NOW)
    assert samples(text, "container_cpu_usage_seconds_total") == [
        ({"container": "idle", "pod": "p", "namespace": "default"}, 1e-9, T1.timestamp())
    ]
    assert [s[1] for s in samples(text, "container_memory_working_set_bytes")] == [1.0]
    assert "container_start_time_seconds" not in text, "no start time known, none written"
    assert "unknown" not in text
    assert [s[1] for s in samples(text, "pod_cpu_usage_seconds_total")] == [1e-9]


def test_resource_metrics_of_a_pod_without_any_usage_has_no_pod_series() -> None:
    text = render_resource_metrics([pod("p", usage("c"))], NOW)
    assert "pod_cpu_usage_seconds_total" not in text and "pod_memory_working_set_bytes" not in text
    assert samples(text, "container_start_time_seconds") == [
        ({"container": "c", "pod": "p", "namespace": "default"}, POD_START.timestamp(), T1.timestamp())
    ]


def test_resource_metrics_of_an_empty_node_keep_the_node_above_zero() -> None:
    text = render_resource_metrics([], NOW)
    assert samples(text, "node_cpu_usage_seconds_total") == [({}, 1e-9, NOW.timestamp())]
    assert samples(text, "node_memory_working_set_bytes") == [({}, 1.0, NOW.timestamp())]
    assert samples(text, "resource_scrape_error") == [({}, 0.0, None)]


def test_a_failed_scrape_is_only_the_error_series() -> None:
    text = render_resource_metrics(None, NOW)
    assert text == (
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n"
        "# TYPE resource_scrape_error gauge\n"
        "resource_scrape_error 1\n"
    )


def test_every_family_has_help_and_type_once_before_its_samples() -> None:
    pods = [pod("a", usage("x", cpu_total=1, ws=1, start=C_START)), pod("b", usage("y", cpu_total=2, ws=2))]
    lines = render_resource_metrics(pods, NOW).splitlines()
    seen: list[str] = []
    current = ""
    for i, line in enumerate(lines):
        if line.startswith("# HELP "):
            current = line.split()[2]
            assert current not in seen, f"{current} split in two groups"
            seen.append(current)
            assert lines[i + 1].startswith(f"# TYPE {current} ")
        elif not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] == current, line
    assert seen == [
        "node_cpu_usage_seconds_total",
        "node_memory_working_set_bytes",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_start_time_seconds",
        "pod_cpu_usage_seconds_total",
        "pod_memory_working_set_bytes",
        "resource_scrape_error",
    ]
