"""Benchmark (not a test): the ECI simulator in virtual mode at scale, driven through the real SDK.

Creates N container groups (default 10,000), waits until all run, then lists them page by page with
DescribeContainerGroups (Limit 20) and DescribeContainerGroupStatus (Limit 200). Any error fails the run.

    .venv/bin/python bench/eci_sim.py [--groups 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkeci.request.v20180808.CreateContainerGroupRequest import CreateContainerGroupRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupsRequest import DescribeContainerGroupsRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupStatusRequest import DescribeContainerGroupStatusRequest

from vk_sandbox.eci.server import ECISimulator


async def run(groups: int, concurrency: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        async with ECISimulator(directory=tmp, runtime="virtual") as sim:
            client = AcsClient(sim.access_key_id, sim.access_key_secret, sim.region, proxy={"http": "", "https": ""})
            host = sim.endpoint.removeprefix("http://")
            pool = ThreadPoolExecutor(concurrency)
            loop = asyncio.get_running_loop()

            async def send(req: RpcRequest) -> dict[str, Any]:
                req.set_endpoint(host)
                raw = await loop.run_in_executor(pool, client.do_action_with_exception, req)
                return json.loads(raw)  # type: ignore[no-any-return]

            sem = asyncio.Semaphore(concurrency * 2)

            async def create(i: int) -> str:
                async with sem:
                    req = CreateContainerGroupRequest()
                    req.set_ContainerGroupName(f"bench-{i}")
                    req.set_Containers([{"Name": "main", "Image": "busybox", "Commands": ["sleep", "infinity"]}])
                    req.set_Tags([{"Key": "bench", "Value": "1"}])
                    req.set_ClientToken(f"bench-{i}")
                    return str((await send(req))["ContainerGroupId"])

            started = time.perf_counter()
            ids = await asyncio.gather(*(create(i) for i in range(groups)))
            created = time.perf_counter() - started
            assert len(set(ids)) == groups

            deadline = time.monotonic() + 120
            while sim.stats()["groups"].get("Running", 0) < groups:
                assert time.monotonic() < deadline, sim.stats()
                await asyncio.sleep(0.2)

            started = time.perf_counter()
            seen, token, pages = 0, "", 0
            while True:
                req = DescribeContainerGroupsRequest()
                req.set_Limit(20)
                req.set_Tags([{"Key": "bench", "Value": "1"}])
                if token:
                    req.set_NextToken(token)
                page = await send(req)
                pages += 1
                seen += len(page["ContainerGroups"])
                assert all(g["Status"] == "Running" for g in page["ContainerGroups"])
                token = page["NextToken"]
                if not token:
                    break
            described = time.perf_counter() - started
            assert seen == groups, (seen, groups)

            started = time.perf_counter()
            status_seen, token = 0, ""
            while True:
                sreq = DescribeContainerGroupStatusRequest()
                sreq.set_Limit(200)
                if token:
                    sreq.set_NextToken(token)
                spage = await send(sreq)
                status_seen += len(spage["Data"])
                token = spage["NextToken"]
                if not token:
                    break
            status_time = time.perf_counter() - started
            assert status_seen == groups
            stats = sim.stats()
            pool.shutdown()
            errors = sum(stats["errors"].values())
            print(f"groups: {groups}, SDK threads: {concurrency}")
            print(f"create:   {created:7.1f} s  {groups / created:8.0f} groups/s")
            print(f"describe: {described:7.1f} s  {pages} pages of 20, {pages / described:6.0f} pages/s, "
                  f"{groups / described:8.0f} groups/s")  # fmt: skip
            print(f"status:   {status_time:7.1f} s  {groups / status_time:8.0f} groups/s (pages of 200)")
            print(f"calls: {json.dumps(stats['calls'])}  errors: {errors}")
            return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    return asyncio.run(run(args.groups, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
