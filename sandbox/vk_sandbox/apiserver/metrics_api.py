"""metrics.k8s.io/v1beta1 (NodeMetrics, PodMetrics): what metrics-server serves, computed on request.

A request scrapes the kubelets it needs (every Ready node for a node list, the nodes running the selected pods for
a pod list) at ``/metrics/resource``, through the same client certificate and address choice as the kubelet proxy,
and answers from the two newest points per series, as metrics-server does:

- a series is the node (``node_cpu_usage_seconds_total``, ``node_memory_working_set_bytes``) or one container
  (``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes``, keyed by the ``namespace``,
  ``pod`` and ``container`` labels); a point's time is the sample's own timestamp (the scrape time when it has
  none);
- CPU is the rate between the previous and the last point of a series:
  ``(cpu_last - cpu_prev) / (t_last - t_prev)`` in nanocores; ``window`` is ``t_last - t_prev`` and ``timestamp``
  is ``t_last``. Memory is the last working set. A new point replaces the last one only when it is newer; a
  container that restarted (start time after the last point, or a smaller cumulative CPU) starts over;
- a pod is served only when every container it reported has a usage, with the earliest container's timestamp and
  window; only Running pods are served.

Rate limiting. A node is scraped at most once per ``RESOLUTION`` (15 s, metrics-server's default
``--metric-resolution``); requests in between answer from the stored points. Our kubelet caches backend usage for
the same 15 s, so scraping more often would only produce zero-CPU windows.

First scrape. A series seen for the first time (or restarted) has no rate yet. metrics-server would leave it out
until its next scrape; here the same scrape also reads the kubelet's ``/stats/summary`` and reports
``usageNanoCores`` there (the backend's own rate), with the window set to ``FIRST_WINDOW`` (15 s, the interval
the backend averages over is not published). A second scrape a second later would not work: the kubelet would
return the same cached points.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from prometheus_client.parser import text_string_to_metric_families

from vk_sandbox.apiserver import proxy
from vk_sandbox.apiserver.context import KubeletContext
from vk_sandbox.apiserver.errors import ApiError, method_not_allowed, not_found
from vk_sandbox.apiserver.handlers.request import Target
from vk_sandbox.apiserver.resources import METRICS_GROUP
from vk_sandbox.apiserver.selectors import combine, field_predicate, label_predicate

log = structlog.get_logger("vk_sandbox.apiserver.metrics")

API_VERSION = f"{METRICS_GROUP}/v1beta1"
RESOLUTION = 15.0
FIRST_WINDOW = 15.0
SCRAPE_TIMEOUT = 10.0  # metrics-server's default --kubelet-request-timeout
MAX_SCRAPE_BYTES = 32 * 1024 * 1024

ContainerKey = tuple[str, str, str]  # (namespace, pod, container)
PodKey = tuple[str, str]  # (namespace, pod)
NODE: ContainerKey = ("", "", "")  # the node's own series


# ---- formatting, as the Go types print ------------------------------------------------------------------------

_DECIMAL_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIX = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def cpu_quantity(nano_cores: int) -> str:
    """A resource.Quantity of ``nano_cores`` x 10^-9 in canonical DecimalSI form: 0, 250m, 1500m, 2, 12345n."""
    if nano_cores <= 0:
        return "0"
    amount, exponent = nano_cores, -9
    while amount % 10 == 0:
        amount //= 10
        exponent += 1
    down = exponent % 3  # Go moves the exponent down to a multiple of three
    amount, exponent = amount * 10**down, exponent - down
    if exponent > 18:
        amount, exponent = amount * 10 ** (exponent - 18), 18
    return f"{amount}{_DECIMAL_SUFFIX[exponent]}"


def memory_quantity(size: int) -> str:
    """A resource.Quantity of bytes in canonical BinarySI form: 512, 1536, 2Ki, 3Mi."""
    if size < 1024:
        return str(max(0, size))
    amount, power = size, 0
    while amount % 1024 == 0 and power < len(_BINARY_SUFFIX) - 1:
        amount //= 1024
        power += 1
    return f"{amount}{_BINARY_SUFFIX[power]}"


def _frac(value: int, precision: int) -> str:
    whole, rest = divmod(value, 10**precision)
    digits = f"{rest:0{precision}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_duration(seconds: float) -> str:
    """time.Duration.String(): 15s, 1.5s, 1m0s, 1h0m5s, 500ms, 0s."""
    ns = round(seconds * 1e9)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_frac(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_frac(ns, 6)}ms"
    total_s, sub = divmod(ns, 1_000_000_000)
    minutes, secs = divmod(total_s, 60)
    out = f"{_frac(secs * 1_000_000_000 + sub, 9)}s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        out = f"{minutes}m{out}"
        if hours:
            out = f"{hours}h{out}"
    return sign + out


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- points, rates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One series' sample: cumulative CPU (core-seconds), working set (bytes), when, and the start time if known."""

    timestamp: float
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    start_time: float | None = None


@dataclass(frozen=True)
class Usage:
    nano_cores: int
    memory_bytes: int
    timestamp: float
    window: float


@dataclass
class Series:
    last: Point
    prev: Point | None = None


def parse_resource_metrics(text: str, scrape_time: float) -> dict[ContainerKey, Point]:
    """The node point (key ``NODE``) and one point per container from /metrics/resource text. ValueError if bad."""
    raw: dict[ContainerKey, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.startswith("node_"):
                key = NODE
            elif name.startswith("container_"):
                labels = sample.labels
                key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
                if not all(key):
                    continue
            else:
                continue
            entry = raw.setdefault(key, {})
            ts = float(sample.timestamp) if sample.timestamp is not None else scrape_time
            if name in ("node_cpu_usage_seconds_total", "container_cpu_usage_seconds_total"):
                entry["cpu"] = float(sample.value)
                entry["ts"] = ts  # CPU's time is the point's time, as metrics-server
            elif name in ("node_memory_working_set_bytes", "container_memory_working_set_bytes"):
                entry["memory"] = int(sample.value)
                entry.setdefault("ts", ts)
            elif name == "container_start_time_seconds":
                entry["start"] = float(sample.value)
    return {
        key: Point(e.get("ts", scrape_time), e.get("cpu"), e.get("memory"), e.get("start"))
        for key, e in raw.items()
        if "cpu" in e or "memory" in e
    }


def advance(old: Mapping[ContainerKey, Series], points: Mapping[ContainerKey, Point]) -> dict[ContainerKey, Series]:
    """The stored series after a scrape. Series absent from the scrape are dropped (the pod is gone)."""
    out: dict[ContainerKey, Series] = {}
    for key, new in points.items():
        stored = old.get(key)
        prev: Point | None = None
        if stored is not None:
            last = stored.last
            restarted = new.start_time is not None and new.start_time > last.timestamp
            if not restarted:
                if new.timestamp > last.timestamp:
                    prev = last
                elif stored.prev is not None and stored.prev.timestamp < new.timestamp:
                    prev = stored.prev
        out[key] = Series(new, prev)
    return out


def rate(series: Series) -> Usage | None:
    """The usage of a series from its two points, or None (no previous point, counter reset, no memory)."""
    last, prev = series.last, series.prev
    if prev is None or last.cpu_seconds is None or prev.cpu_seconds is None or last.memory_bytes is None:
        return None
    window = round(last.timestamp - prev.timestamp, 3)  # the exposition's timestamps are milliseconds
    used_ns = round(last.cpu_seconds * 1e9) - round(prev.cpu_seconds * 1e9)
    if window <= 0 or used_ns < 0:
        return None
    return Usage(int(used_ns / window), last.memory_bytes, last.timestamp, window)


def summary_rates(summary: Mapping[str, Any]) -> dict[ContainerKey, int]:
    """``usageNanoCores`` per series from a /stats/summary document (node under ``NODE``)."""
    out: dict[ContainerKey, int] = {}
    node_nano = ((summary.get("node") or {}).get("cpu") or {}).get("usageNanoCores")
    if isinstance(node_nano, int):
        out[NODE] = node_nano
    for pod in summary.get("pods") or []:
        ref = pod.get("podRef") or {}
        for c in pod.get("containers") or []:
            nano = (c.get("cpu") or {}).get("usageNanoCores")
            if isinstance(nano, int):
                out[(str(ref.get("namespace", "")), str(ref.get("name", "")), str(c.get("name", "")))] = nano
    return out


@dataclass
class NodeState:
    """A node's stored series and the usages computed at its last scrape."""

    scraped_at: float = 0.0  # monotonic
    series: dict[ContainerKey, Series] = field(default_factory=dict)
    node: Usage | None = None
    pods: dict[PodKey, list[tuple[str, Usage]] | None] = field(default_factory=dict)


def usages(series: Mapping[ContainerKey, Series], first: Mapping[ContainerKey, int]) -> NodeState:
    """Node and pod usages: the rate where there is one, else ``first`` (summary nanocores) over FIRST_WINDOW."""
    state = NodeState(series=dict(series))
    for key, s in series.items():
        u = rate(s)
        if u is None and key in first and s.last.memory_bytes is not None:
            u = Usage(first[key], s.last.memory_bytes, s.last.timestamp, FIRST_WINDOW)
        if key == NODE:
            state.node = u
            continue
        pod_key = (key[0], key[1])
        containers = state.pods.get(pod_key, [])
        if u is None or containers is None:
            state.pods[pod_key] = None  # every container or none, as metrics-server
        else:
            containers.append((key[2], u))
            state.pods[pod_key] = containers
    return state


# ---- the API ---------------------------------------------------------------------------------------------------


def request_verb(method: str, name: str | None, query: Mapping[str, str]) -> str:
    """The RBAC verb of a request (authorization comes before the 405 for what the API does not serve)."""
    # As the real server reads query booleans: only absent, "0" and "false" are false.
    watch = "watch" in query and query["watch"].lower() not in ("0", "false")
    if method in ("GET", "HEAD"):
        return "watch" if watch else ("get" if name else "list")
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}
    return verbs.get(method, "get")


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _meta(obj: Mapping[str, Any], *, namespaced: bool) -> dict[str, Any]:
    m = obj.get("metadata") or {}
    out: dict[str, Any] = {"name": m.get("name", "")}
    if namespaced:
        out["namespace"] = m.get("namespace", "")
    out["creationTimestamp"] = rfc3339(time.time())
    if m.get("labels"):
        out["labels"] = dict(m["labels"])
    return out


class MetricsAPI:
    """The metrics.k8s.io/v1beta1 endpoints of one sandbox API server, with the points kept between requests."""

    def __init__(self, ctx: KubeletContext) -> None:
        self.ctx = ctx
        self._nodes: dict[str, NodeState] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- scraping

    async def _get(self, node: Mapping[str, Any], path: str) -> bytes:
        host, port = proxy.kubelet_location(dict(node))
        url = f"https://{proxy._host_for_url(host)}:{port}{path}"
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT, sock_connect=proxy.CONNECT_TIMEOUT)
        connector = aiohttp.TCPConnector(ssl=self.ctx.client_ssl, force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get(url) as response,
        ):
            body = await response.content.read(MAX_SCRAPE_BYTES + 1)
            if response.status != 200:
                raise ValueError(f"GET {url}: {response.status} {body[:200]!r}")
            if len(body) > MAX_SCRAPE_BYTES:
                raise ValueError(f"GET {url}: more than {MAX_SCRAPE_BYTES} bytes")
            return body

    async def _scrape(self, node: Mapping[str, Any], old: NodeState | None) -> NodeState:
        body = await self._get(node, "/metrics/resource")
        try:
            points = parse_resource_metrics(body.decode(), time.time())
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable /metrics/resource: {exc!r}") from exc
        series = advance(old.series if old is not None else {}, points)
        missing = [k for k, s in series.items() if rate(s) is None]
        first: dict[ContainerKey, int] = {}
        if missing:
            try:
                first = summary_rates(json.loads(await self._get(node, "/stats/summary")))
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, AttributeError) as exc:
                log.info("stats summary unavailable", node=_name(node), error=str(exc) or type(exc).__name__)
        return usages(series, first)

    async def node_state(self, node: Mapping[str, Any]) -> NodeState:
        """The node's usages, scraped now unless its last scrape is younger than the resolution."""
        name = _name(node)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            state = self._nodes.get(name)
            if state is not None and time.monotonic() - state.scraped_at < RESOLUTION:
                return state
            try:
                fresh = await self._scrape(node, state)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, proxy.KubeletDialError) as exc:
                log.warning("kubelet scrape failed", node=name, error=str(exc) or type(exc).__name__)
                fresh = NodeState()  # nothing known until the next scrape, as metrics-server drops the node
            fresh.scraped_at = time.monotonic()
            self._nodes[name] = fresh
            return fresh

    async def _states(self, names: Iterable[str]) -> dict[str, NodeState]:
        """The states of the named nodes that are Ready (scraped as needed, concurrently)."""
        nodes = [n for name in sorted(set(names)) if (n := self.ctx.store.get("nodes", None, name)) and _ready(n)]
        for gone in [name for name in self._nodes if self.ctx.store.get("nodes", None, name) is None]:
            self._nodes.pop(gone, None)
            self._locks.pop(gone, None)
        states = await asyncio.gather(*(self.node_state(n) for n in nodes))
        return {_name(n): s for n, s in zip(nodes, states, strict=True)}

    # -- requests

    async def serve(self, verb: str, t: Target, query: Mapping[str, str], *, table: bool) -> dict[str, Any]:
        if verb not in ("get", "list"):
            raise method_not_allowed()
        if t.rt.namespaced and t.namespace is None and verb == "get":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if t.rt.plural == "nodes":
            kind = "NodeMetrics"
            found = await self._nodes_with_usage(t.name, query)
        else:
            kind = "PodMetrics"
            found = await self._pods_with_usage(t.namespace, t.name, query)
        if t.name is not None and not found:
            shown = t.name if t.rt.plural == "nodes" else f"{t.namespace}/{t.name}"
            raise not_found(t.rt.plural, METRICS_GROUP, shown)
        is_pod = kind == "PodMetrics"
        if table:
            return _table(found, is_pod=is_pod)
        items = [_item(obj, containers, is_pod=is_pod) for obj, containers in found]
        if t.name is not None:
            return {"kind": kind, "apiVersion": API_VERSION, **items[0]}
        return {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items}

    def _select(self, key: str, namespace: str | None, query: Mapping[str, str]) -> list[dict[str, Any]]:
        objs, _ = self.ctx.store.list(key, namespace)
        # Only metadata.name and metadata.namespace, as metrics-server.
        pred = combine(
            label_predicate(query.get("labelSelector")), field_predicate(query.get("fieldSelector"), key, ())
        )
        return [o for o in objs if pred is None or pred(o)]

    async def _nodes_with_usage(self, name: str | None, query: Mapping[str, str]) -> list[Found]:
        if name is not None:
            node = self.ctx.store.get("nodes", None, name)
            if node is None:
                raise not_found("node", "", name)  # the lister's error, which metrics-server passes on
            nodes = [node]
        else:
            nodes = self._select("nodes", None, query)
        states = await self._states(_name(n) for n in nodes)
        found: list[Found] = []
        for node in sorted(nodes, key=_name):
            state = states.get(_name(node))
            if state is not None and state.node is not None:
                found.append((node, [("", state.node)]))
        return found

    async def _pods_with_usage(self, namespace: str | None, name: str | None, query: Mapping[str, str]) -> list[Found]:
        if name is not None:
            pod = self.ctx.store.get("pods", namespace, name)
            if pod is None:
                raise not_found("pod", "", name)
            pods = [pod]
        else:
            pods = self._select("pods", namespace, query)
        pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Running" and _node_of(p)]
        states = await self._states(_node_of(p) for p in pods)
        found: list[Found] = []
        for pod in sorted(pods, key=lambda p: (_namespace(p), _name(p))):
            state = states.get(_node_of(pod))
            containers = state.pods.get((_namespace(pod), _name(pod))) if state is not None else None
            if containers:
                found.append((pod, sorted(containers)))
        return found


# An object with its usages: [("", usage)] for a node, [(container, usage), ...] for a pod.
Found = tuple[dict[str, Any], list[tuple[str, Usage]]]


def _usage(u: Usage) -> dict[str, str]:
    return {"cpu": cpu_quantity(u.nano_cores), "memory": memory_quantity(u.memory_bytes)}


def _item(obj: dict[str, Any], containers: list[tuple[str, Usage]], *, is_pod: bool) -> dict[str, Any]:
    """A NodeMetrics or PodMetrics (without kind and apiVersion, as list items are encoded)."""
    earliest = min((u for _, u in containers), key=lambda u: u.timestamp)  # a pod's time is its earliest container's
    out: dict[str, Any] = {
        "metadata": _meta(obj, namespaced=is_pod),
        "timestamp": rfc3339(earliest.timestamp),
        "window": go_duration(earliest.window),
    }
    if is_pod:
        out["containers"] = [{"name": c, "usage": _usage(u)} for c, u in containers]
    else:
        out["usage"] = _usage(earliest)
    return out


def _table(found: list[Found], *, is_pod: bool) -> dict[str, Any]:
    """metrics-server's Table: Name, cpu, memory (summed over a pod's containers), Window."""
    rows = []
    for obj, containers in found:
        item = _item(obj, containers, is_pod=is_pod)
        cpu = cpu_quantity(sum(u.nano_cores for _, u in containers))
        memory = memory_quantity(sum(u.memory_bytes for _, u in containers))
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}
        rows.append({"cells": [item["metadata"]["name"], cpu, memory, item["window"]], "object": partial})
    columns = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name of the resource", "priority": 0},
        {"name": "cpu", "type": "string", "format": "quantity", "description": "", "priority": 0},
        {"name": "memory", "type": "string", "format": "quantity", "description": "", "priority": 0},
        {"name": "Window", "type": "string", "format": "duration", "description": "", "priority": 0},
    ]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _node_of(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")
