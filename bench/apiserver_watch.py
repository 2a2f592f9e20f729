"""Benchmark: create N pods over HTTPS while 3 watchers watch; every watcher must see every event in order.

Run: .venv/bin/python bench/apiserver_watch.py [--pods 10000] [--watchers 3] [--concurrency 32]

The API server runs as its own process (`vk-provider sandbox apiserver --no-controllers`), so the numbers are the
server's, not shared with this client's event loop. Prints a short Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml


def _ssl_from_kubeconfig(path: Path, workdir: Path) -> ssl.SSLContext:
    import base64

    cfg = yaml.safe_load(path.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    (workdir / "bench.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (workdir / "bench.key").write_bytes(base64.b64decode(user["client-key-data"]))
    ctx.load_cert_chain(workdir / "bench.crt", workdir / "bench.key")
    return ctx


async def _watcher(
    session: aiohttp.ClientSession, url: str, rv: str, expected: int, ctx: ssl.SSLContext, out: dict[str, Any]
) -> None:
    last = int(rv)
    count = 0
    in_order = True
    async with session.get(
        f"{url}/api/v1/namespaces/bench/pods",
        params={"watch": "1", "resourceVersion": rv},
        ssl=ctx,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
    ) as resp:
        async for line in resp.content:
            ev = json.loads(line)
            if ev["type"] == "ERROR":
                raise RuntimeError(f"watch error: {ev['object'].get('message')}")
            if ev["type"] != "ADDED":
                continue
            now = int(ev["object"]["metadata"]["resourceVersion"])
            if now <= last:
                in_order = False
            last = now
            count += 1
            if count == expected:
                break
    out["count"] = count
    out["in_order"] = in_order
    out["done"] = time.perf_counter()


async def run(pods: int, watchers: int, concurrency: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vk-bench-"))
    ready = workdir / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vk_provider.cli",
        "sandbox",
        "apiserver",
        "--no-controllers",
        "--dir",
        str(workdir / "srv"),
        "--ready-file",
        str(ready),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if ready.exists():
                break
            await asyncio.sleep(0.05)
        info = json.loads(ready.read_text())
        url = info["url"]
        ctx = _ssl_from_kubeconfig(Path(info["kubeconfig"]), workdir)
        conn = aiohttp.TCPConnector(limit=concurrency + watchers + 4)
        async with aiohttp.ClientSession(connector=conn) as session:
            async with session.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": "bench"}}, ssl=ctx) as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            results: list[dict[str, Any]] = [{} for _ in range(watchers)]
            watch_tasks = [
                asyncio.create_task(_watcher(session, url, rv, pods, ctx, results[i])) for i in range(watchers)
            ]
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(pods):
                queue.put_nowait(i)

            async def writer() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    body = {
                        "metadata": {"name": f"pod-{i:05d}", "labels": {"bench": "yes"}},
                        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
                    }
                    async with session.post(f"{url}/api/v1/namespaces/bench/pods", json=body, ssl=ctx) as r:
                        if r.status != 201:
                            raise RuntimeError(f"create failed: {r.status} {await r.text()}")

            await asyncio.sleep(0.2)  # let the watches attach
            start = time.perf_counter()
            await asyncio.gather(*(writer() for _ in range(concurrency)))
            written = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*watch_tasks), 300)
        write_s = written - start
        watch_s = max(r["done"] for r in results) - start
        ok = all(r["count"] == pods and r["in_order"] for r in results)
        print("| metric | value |")
        print("|---|---|")
        print(f"| pods created | {pods} |")
        print(f"| watchers | {watchers} (all saw every event in resourceVersion order: {'yes' if ok else 'NO'}) |")
        print(f"| writes/s | {pods / write_s:,.0f} |")
        print(f"| watch events/s (all watchers) | {watchers * pods / watch_s:,.0f} |")
        print(f"| last watcher done after | {watch_s:.1f} s |")
        print(f"| CPUs | {os.cpu_count()} |")
        return 0 if ok else 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    return asyncio.run(run(args.pods, args.watchers, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
