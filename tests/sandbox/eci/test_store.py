"""SQLite state: a restarted (virtual) simulator remembers its groups and ClientTokens."""

from __future__ import annotations

from pathlib import Path

from tests.sandbox.eci.conftest import call, create_request, describe, status_is, wait_for
from vk_sandbox.eci.server import ECISimulator


async def test_virtual_groups_survive_a_restart(tmp_path: Path) -> None:
    """Groups, their status and ClientTokens are reloaded from SQLite after a restart of the simulator."""
    keys = {"k": "s"}
    async with ECISimulator(directory=tmp_path, runtime="virtual", access_keys=keys) as first:
        gid = (await call(first, create_request(ClientToken="t1")))["ContainerGroupId"]
        await wait_for(first, gid, status_is("Running"))
    async with ECISimulator(directory=tmp_path, runtime="virtual", access_keys=keys) as second:
        assert (await describe(second, gid))["ContainerGroupName"] == "grp"
        await wait_for(second, gid, status_is("Running"))
        again = (await call(second, create_request(ClientToken="t1")))["ContainerGroupId"]
        assert again == gid
        assert second.stats()["total_groups"] == 1
