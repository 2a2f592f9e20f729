"""Per-pod memory of the daemon's per-pod structures, as held now and as dicts (not a test).

    .venv/bin/python bench/state_sizes.py --pods 1000

Creates --pods pods in the sandbox API server the way bench/daemon_steady.py does (so with its defaults:
service-account volume, tolerations ...), gives each a described Running group shaped like the simulator's
answer, puts them through the daemon's own code (the ECI index, the status mapping, the pod controller's
``hold``, the watch cache) and prints the deep size per pod (``sys.getsizeof`` over dicts, lists, models and
slots; an object shared by several pods counted once) and what that makes at 10,000 pods, the CPU a
read costs now that all three are decoded on every read, and what the GC's listing of every group takes at
its peak. "As dicts" is the
form held before: the pod decoded with its short strings interned, the status as an interned dict in a
``BackendPod``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from pydantic import BaseModel

from vk_provider.eci import names
from vk_provider.eci.feed import Feed
from vk_provider.eci.index import Index
from vk_provider.eci.models import ContainerGroup
from vk_provider.kube.client import KubeAPI
from vk_provider.kube.watch import JSONCache, for_cache
from vk_provider.pods.state import hold
from vk_sandbox.apiserver.server import SandboxAPIServer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_burst import NODE, bench_pod


def deep(obj: Any, seen: set[int]) -> int:
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep(k, seen) + deep(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep(v, seen) for v in obj)
    elif isinstance(obj, BaseModel):
        size += deep(obj.__dict__, seen) + deep(obj.__pydantic_fields_set__, seen)
    elif is_dataclass(obj) and not isinstance(obj, type):
        size += sum(deep(getattr(obj, f.name), seen) for f in fields(obj))
        if hasattr(obj, "__dict__"):
            size += sys.getsizeof(obj.__dict__)
    elif isinstance(obj, JSONCache):
        size += deep(obj._data, seen)
    return size


def interned(value: Any) -> Any:
    """The pod cache's old form: decoded JSON with keys and strings up to 40 characters interned."""
    if isinstance(value, dict):
        return {sys.intern(k): interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interned(v) for v in value]
    return sys.intern(value) if isinstance(value, str) and len(value) <= 40 else value


def described(pod: dict[str, Any], i: int) -> dict[str, Any]:
    """A Running group as DescribeContainerGroups gives it (the simulator's fields)."""
    m = pod["metadata"]
    tags = names.identity_tags(pod, cluster="bench", node=NODE)
    when = f"2026-12-03T10:{i // 60 % 60:02d}:{i % 60:02d}Z"
    return {
        "ContainerGroupId": f"eci-bench{i:011d}",
        "ContainerGroupName": names.group_name(m["namespace"], m["name"]),
        "Status": "Running",
        "Cpu": 2.0,
        "Memory": 4.0,
        "ZoneId": "cn-hangzhou-k",
        "VSwitchId": "vsw-bench",
        "SecurityGroupId": "sg-bench",
        "IntranetIp": f"10.1.{i // 250}.{i % 250}",
        "RestartPolicy": "Always",
        "SpotStrategy": "NoSpot",
        "CreationTime": when,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "Events": [{"Count": 1, "Type": "Normal", "Reason": "Started", "Message": "Started container main"}],
        "Containers": [
            {
                "Name": "main",
                "Image": "busybox",
                "ContainerId": f"containerd://{i:064d}",
                "Ready": True,
                "CurrentState": {"State": "Running", "StartTime": when},
                "PreviousState": {},
            }
        ],
    }


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vk-sizes-") as tmp:
        async with SandboxAPIServer(directory=Path(tmp)) as apiserver:
            cfg = k8s_client.Configuration()
            await k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig_path), client_configuration=cfg)
            kube = KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=60)
            pods = []
            for i in range(count):
                pods.append(await kube.request("POST", "/api/v1/namespaces/default/pods", body=bench_pod(i)))
            await kube.close()
    index = Index(cluster="bench", node=NODE)
    feed = Feed(index)
    cache, held, as_dicts, bps = JSONCache(), [], [], []
    for i, pod in enumerate(pods):
        entry = index.remember(ContainerGroup.model_validate(described(pod, i)))
        assert entry is not None
        bp = feed.backend_pod(entry, pod)
        pod["status"] = bp.status  # as the status write leaves it
        m = pod["metadata"]
        m["annotations"] = {
            "k8s.aliyun.com/eci-instance-id": entry.group_id,
            "k8s.aliyun.com/eci-instance-spec": bp.size,
        }
        cache[f"{m['namespace']}/{m['name']}"] = pod
        as_dicts.append(interned(for_cache(json.loads(json.dumps(pod)))))
        bps.append(bp)
        held.append(hold(bp))
        group = entry.group
        assert group is not None
        index.mark_published(entry, group)
    for bp in bps:  # the old hold(): status interned, events dropped
        bp.status, bp.events = interned(bp.status), []
    rows = [
        ("pod watch cache", deep(cache, set()), deep(as_dicts, set())),
        ("pod controller: last group of each pod", deep(held, set()), deep(bps, set())),
        ("ECI index: entries (group held as compact JSON)", deep(list(index.entries()), set()), None),
    ]
    print(f"## Per-pod structures ({count} pods, deep sizes)\n")
    print("| structure | now, bytes/pod | at 10,000 pods | as dicts, bytes/pod | at 10,000 pods |")
    print("|---|---|---|---|---|")
    for name, now, before in rows:
        old = f"{before / count:,.0f} | {before / count * 10000 / 2**20:,.0f} MB" if before else "- | -"
        print(f"| {name} | {now / count:,.0f} | {now / count * 10000 / 2**20:,.0f} MB | {old} |")
    started = time.process_time()
    for _ in cache.values():
        pass
    per_read = (time.process_time() - started) / count
    started = time.process_time()
    for h in held:
        _ = h.status
    per_status = (time.process_time() - started) / count
    started = time.process_time()
    for entry in index.entries():
        _ = entry.group
    per_group = (time.process_time() - started) / count
    print(
        f"\nCPU: a read of the pod cache {per_read * 1e6:.0f} us, of a held status {per_status * 1e6:.0f} us, "
        f"of an index entry's group {per_group * 1e6:.0f} us"
    )
    feed.pods = _Lookup(cache)
    print("\n## The GC's listing of every group, one call (tracemalloc peak; CPU)\n")
    print("| call | peak, bytes/pod | at 10,000 pods | CPU per pod |")
    print("|---|---|---|---|")
    for name, call in (("backend_pods()", feed.backend_pods), ("backend_groups()", feed.backend_groups)):
        peak, cpu = _peak(call)
        print(f"| {name} | {peak / count:,.0f} | {peak / count * 10000 / 2**20:,.0f} MB | {cpu / count * 1e6:.0f} us |")


class _Lookup:
    """The pod controller's watch cache as the feed reads it (PodLookup)."""

    def __init__(self, cache: JSONCache) -> None:
        self._cache = cache

    def cached_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._cache.get(f"{namespace}/{name}")

    def cached_pods(self) -> Iterator[dict[str, Any]]:
        return iter(self._cache.values())


def _peak(call: Callable[[], list[Any]]) -> tuple[int, float]:
    """The memory a call's result and its transients took at their peak, and its CPU time."""
    started = time.process_time()
    call()
    cpu = time.process_time() - started
    tracemalloc.start()
    result = call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return peak, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=1000)
    asyncio.run(run(ap.parse_args().pods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
