"""Fixtures for the ECI simulator tests: simulators on port 0 and an SDK caller."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkeci.request.v20180808.CreateContainerGroupRequest import CreateContainerGroupRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupsRequest import DescribeContainerGroupsRequest
from aliyunsdkeci.request.v20180808.ExecContainerCommandRequest import ExecContainerCommandRequest

from tests.waiting import eventually
from vk_sandbox.eci.server import ECISimulator


def sdk_client(sim: ECISimulator, key_id: str | None = None, secret: str | None = None) -> AcsClient:
    return AcsClient(
        key_id or sim.access_key_id,
        secret or sim.access_key_secret,
        sim.region,
        proxy={"http": "", "https": ""},
    )


async def call(sim: ECISimulator, request: RpcRequest, client: AcsClient | None = None) -> dict[str, Any]:
    """Send one SDK request to the simulator (in a thread: the SDK blocks) and parse the JSON answer. The client is
    for this call only: its kept-alive connection is closed after it (left to the collector, a ResourceWarning)."""
    request.set_endpoint(sim.endpoint.removeprefix("http://"))
    client = client or sdk_client(sim)
    try:
        raw = await asyncio.to_thread(client.do_action_with_exception, request)
    finally:
        client.session.close()
    return json.loads(raw)  # type: ignore[no-any-return]


async def call_error(sim: ECISimulator, request: RpcRequest, client: AcsClient | None = None) -> ServerException:
    try:
        await call(sim, request, client)
    except ServerException as exc:
        return exc
    raise AssertionError("the call succeeded but an error was expected")


def create_request(name: str = "grp", containers: list[dict[str, Any]] | None = None, **extra: Any) -> RpcRequest:
    req = CreateContainerGroupRequest()
    req.set_ContainerGroupName(name)
    req.set_Containers(containers or [{"Name": "main", "Image": "busybox", "Commands": ["sleep", "3600"]}])
    for key, value in extra.items():
        req.add_query_param(key, value)
    return req


async def exec_command(sim: ECISimulator, group_id: str, command: list[str], **params: Any) -> dict[str, Any]:
    """ExecContainerCommand in the group's "main" container; params (TTY, Stdin, Sync) go in as given."""
    req = ExecContainerCommandRequest()
    req.set_ContainerGroupId(group_id)
    req.set_ContainerName("main")
    req.set_Command(json.dumps(command))
    for key, value in params.items():
        req.add_query_param(key, value)
    return await call(sim, req)


async def describe(sim: ECISimulator, group_id: str) -> dict[str, Any]:
    req = DescribeContainerGroupsRequest()
    req.set_ContainerGroupIds(json.dumps([group_id]))
    groups = (await call(sim, req))["ContainerGroups"]
    assert len(groups) == 1, groups
    return groups[0]  # type: ignore[no-any-return]


async def wait_for(
    sim: ECISimulator, group_id: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """Poll DescribeContainerGroups (through the SDK) until ``pred(group)`` holds; bounded by ``timeout``."""
    last: dict[str, Any] = {}

    async def matching() -> dict[str, Any] | None:
        nonlocal last
        last = await describe(sim, group_id)
        return last if pred(last) else None

    def what() -> str:
        return f"{group_id} to match; last state {json.dumps(last)[:3000]}"

    return await eventually(matching, timeout=timeout, what=what)


def status_is(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda g: g["Status"] in statuses


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ECISimulator]:
    async with ECISimulator(directory=tmp_path / "eci", runtime="process", access_keys={"test-id": "test-secret"}) as s:
        yield s


@pytest.fixture
async def vsim(tmp_path: Path) -> AsyncIterator[ECISimulator]:
    async with ECISimulator(
        directory=tmp_path / "veci", runtime="virtual", access_keys={"test-id": "test-secret"}
    ) as s:
        yield s
