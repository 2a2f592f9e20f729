"""Injected faults: throttling, 5xx, latency, stock exhaustion, spot reclamation, crashes, and /_sim/stats."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import aiohttp
from aliyunsdkeci.request.v20180808.DescribeContainerGroupsRequest import DescribeContainerGroupsRequest
from aliyunsdkeci.request.v20180808.DescribeRegionsRequest import DescribeRegionsRequest

from tests.sandbox.eci.conftest import call, call_error, create_request, describe, status_is, wait_for
from vk_sandbox.eci.faults import Faults
from vk_sandbox.eci.server import ECISimulator


async def test_throttling_at_a_random_rate(vsim: ECISimulator) -> None:
    """throttle rate 1.0 refuses every call with Throttling.User; clearing it lets calls through again."""
    await vsim.set_faults({"throttle": {"rate": 1.0, "code": "Throttling.User"}})
    exc = await call_error(vsim, DescribeRegionsRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("Throttling.User", 400)
    await vsim.set_faults({"throttle": None})
    await call(vsim, DescribeRegionsRequest())
    assert vsim.stats()["faults_injected"] == {"Throttling.User": 1}


async def test_per_action_qps_token_bucket(vsim: ECISimulator) -> None:
    """qps 0.5 for DescribeContainerGroups: one call passes, the next within 2 s is Throttling; other actions pass."""
    await vsim.set_faults({"qps": {"DescribeContainerGroups": 0.5}})
    await call(vsim, DescribeContainerGroupsRequest())
    exc = await call_error(vsim, DescribeContainerGroupsRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("Throttling", 400)
    await call(vsim, DescribeRegionsRequest())


def test_token_bucket_refills_over_time() -> None:
    """A drained bucket admits a call again after 1/qps seconds."""
    faults = Faults()
    faults.update({"qps": {"*": 20}})
    admitted = 0
    for _ in range(40):
        try:
            faults.check("X")
            admitted += 1
        except Exception:
            break
    assert admitted == 20
    time.sleep(0.06)  # time passing is what refills the bucket: the subject of the test, not synchronisation
    faults.check("X")


async def test_server_errors(vsim: ECISimulator) -> None:
    """errors InternalError -> 500 and ServiceUnavailable -> 503, limited to the listed actions."""
    await vsim.set_faults({"errors": {"rate": 1.0, "code": "ServiceUnavailable", "actions": ["DescribeRegions"]}})
    exc = await call_error(vsim, DescribeRegionsRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("ServiceUnavailable", 503)
    await call(vsim, DescribeContainerGroupsRequest())
    await vsim.set_faults({"errors": {"rate": 1.0, "code": "InternalError"}})
    exc = await call_error(vsim, DescribeContainerGroupsRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("InternalError", 500)


async def test_added_latency(vsim: ECISimulator) -> None:
    """latency adds the configured delay to the chosen action only."""
    await vsim.set_faults({"latency": {"seconds": 0.8, "actions": ["DescribeRegions"]}})
    started = time.monotonic()
    await call(vsim, DescribeRegionsRequest())
    assert time.monotonic() - started >= 0.8
    started = time.monotonic()
    await call(vsim, DescribeContainerGroupsRequest())
    assert time.monotonic() - started < 0.8


async def test_no_stock_for_zone_vswitch_and_spec(vsim: ECISimulator) -> None:
    """Creates succeed, then groups in an exhausted zone, vSwitch or spec go ScheduleFailed with a NoStock
    event; a multi-vSwitch create falls through to a vSwitch with stock."""
    zone = f"{vsim.region}-h"
    await vsim.set_faults({"no_stock": {"zones": [zone], "vswitches": ["vsw-empty"], "specs": ["4-8"]}})
    by_zone = (await call(vsim, create_request("za", ZoneId=zone)))["ContainerGroupId"]
    by_vsw = (await call(vsim, create_request("zb", VSwitchId="vsw-empty")))["ContainerGroupId"]
    by_spec = (await call(vsim, create_request("zc", Cpu=4.0, Memory=8.0, ZoneId=f"{vsim.region}-i")))[
        "ContainerGroupId"
    ]
    for gid in (by_zone, by_vsw, by_spec):
        group = await wait_for(vsim, gid, status_is("ScheduleFailed"))
        assert any(e["Reason"] == "NoStock" and e["Type"] == "Warning" for e in group["Events"])
    fallback = await call(vsim, create_request("zd", VSwitchId="vsw-empty,vsw-full", ZoneId=f"{vsim.region}-j"))
    group = await wait_for(vsim, fallback["ContainerGroupId"], status_is("Running"))
    assert group["VSwitchId"] == "vsw-full"


async def test_spot_reclamation(vsim: ECISimulator) -> None:
    """A spot group gets a SpotToBeReleased warning, then is released (Expired)."""
    gid = (await call(vsim, create_request(SpotStrategy="SpotAsPriceGo")))["ContainerGroupId"]
    await wait_for(vsim, gid, status_is("Running"))
    await vsim.set_faults({"spot_reclaim": {"notice_seconds": 1.5}})
    group = await describe(vsim, gid)
    assert any(e["Reason"] == "SpotToBeReleased" for e in group["Events"])
    assert group["Status"] == "Running"
    group = await wait_for(vsim, gid, status_is("Expired"))
    assert group["ExpiredTime"]


async def test_crash_of_a_chosen_container(vsim: ECISimulator) -> None:
    """crash ends the chosen container with the given code; RestartPolicy Always restarts it."""
    containers = [
        {"Name": "main", "Image": "busybox", "Commands": ["sleep", "3600"]},
        {"Name": "side", "Image": "busybox", "Commands": ["sleep", "3600"]},
    ]
    gid = (await call(vsim, create_request(containers=containers)))["ContainerGroupId"]
    await wait_for(vsim, gid, status_is("Running"))
    await vsim.set_faults({"crash": {"group_id": gid, "container": "side", "exit_code": 139}})
    group = await wait_for(vsim, gid, lambda g: g["Containers"][1]["CurrentState"]["State"] == "Running"
                           and g["Containers"][1]["RestartCount"] == 1)  # fmt: skip
    assert group["Containers"][1]["PreviousState"]["ExitCode"] == 139
    assert group["Containers"][0]["RestartCount"] == 0


async def test_faults_and_stats_over_http(vsim: ECISimulator) -> None:
    """POST /_sim/faults sets faults (bad JSON is 400); GET /_sim/stats counts calls per action and groups."""
    await call(vsim, create_request())
    await call(vsim, DescribeRegionsRequest())
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{vsim.endpoint}/_sim/faults", json={"latency": {"seconds": 0.01}}) as r:
            assert r.status == 200
            assert (await r.json())["latency"]["seconds"] == 0.01
        async with s.post(f"{vsim.endpoint}/_sim/faults", json={"errors": {"rate": 2}}) as r:
            assert r.status == 400
        async with s.get(f"{vsim.endpoint}/_sim/stats") as r:
            stats = await r.json()
    assert stats["calls"] == {"CreateContainerGroup": 1, "DescribeRegions": 1}
    assert sum(stats["groups"].values()) == 1


async def test_expire_fault(vsim: ECISimulator) -> None:
    """expire stops the chosen groups and marks them Expired with a Warning event."""
    gid = (await call(vsim, create_request()))["ContainerGroupId"]
    await wait_for(vsim, gid, status_is("Running"))
    await vsim.set_faults({"expire": {"group_ids": [gid]}})
    group = await wait_for(vsim, gid, status_is("Expired"))
    assert any(e["Reason"] == "Expired" and e["Type"] == "Warning" for e in group["Events"])


async def test_network_fault_and_id_prefixes_refuse_unknown_vswitches_and_security_groups(vsim: ECISimulator) -> None:
    """Ids that cannot be a vSwitch or security group are refused; with the network fault, so is any id it does
    not list. A DryRun create runs the same checks and creates nothing."""
    exc = await call_error(vsim, create_request(VSwitchId="subnet-1"))
    assert (exc.get_error_code(), exc.get_http_status()) == ("InvalidVSwitchId.NotFound", 404)
    await vsim.set_faults({"network": {"vswitches": ["vsw-a"], "security_groups": ["sg-a"]}})
    exc = await call_error(vsim, create_request(VSwitchId="vsw-a,vsw-b", SecurityGroupId="sg-a", DryRun="true"))
    assert exc.get_error_code() == "InvalidVSwitchId.NotFound" and "vsw-b" in exc.get_error_msg()
    exc = await call_error(vsim, create_request(VSwitchId="vsw-a", SecurityGroupId="sg-b"))
    assert exc.get_error_code() == "InvalidSecurityGroupId.NotFound"
    exc = await call_error(vsim, create_request(VSwitchId="vsw-a", SecurityGroupId="sg-a", DryRun="true"))
    assert exc.get_error_code() == "DryRunOperation"
    assert vsim.stats()["total_groups"] == 0


async def test_dry_run_checks_stock(vsim: ECISimulator) -> None:
    """DryRun fails with NoStock only when no listed vSwitch has stock."""
    await vsim.set_faults({"no_stock": {"vswitches": ["vsw-empty"]}})
    exc = await call_error(vsim, create_request(VSwitchId="vsw-empty", DryRun="true"))
    assert (exc.get_error_code(), exc.get_http_status()) == ("NoStock", 403)
    exc = await call_error(vsim, create_request(VSwitchId="vsw-empty,vsw-full", DryRun="true"))
    assert exc.get_error_code() == "DryRunOperation"


async def test_deny_refuses_an_action_as_ram_would(vsim: ECISimulator) -> None:
    await vsim.set_faults({"deny": ["DescribeRegions"]})
    exc = await call_error(vsim, DescribeRegionsRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("Forbidden.RAM", 403)
    await call(vsim, DescribeContainerGroupsRequest())
    await vsim.set_faults({"deny": []})
    await call(vsim, DescribeRegionsRequest())


async def test_clock_offset_moves_the_date_header_and_the_timestamp_check(vsim: ECISimulator) -> None:
    """Within 15 minutes calls pass and the Date header shows the offset; beyond, every call is refused."""
    await vsim.set_faults({"clock_offset_seconds": 600})
    async with aiohttp.ClientSession() as session, session.get(vsim.endpoint + "/") as resp:
        date = parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert 590 < date - time.time() < 610
    await call(vsim, DescribeRegionsRequest())
    await vsim.set_faults({"clock_offset_seconds": -1000})
    exc = await call_error(vsim, DescribeRegionsRequest())
    assert exc.get_error_code() == "InvalidTimeStamp.Expired"


async def test_no_stock_for_spot_only(vsim: ECISimulator) -> None:
    """no_stock.spot: spot groups go ScheduleFailed/NoStock, pay-as-you-go groups run."""
    await vsim.set_faults({"no_stock": {"spot": True}})
    spot = (await call(vsim, create_request("sp", SpotStrategy="SpotAsPriceGo")))["ContainerGroupId"]
    payg = (await call(vsim, create_request("pg")))["ContainerGroupId"]
    group = await wait_for(vsim, spot, status_is("ScheduleFailed"))
    assert any(e["Reason"] == "NoStock" and "spot" in e["Message"] for e in group["Events"])
    await wait_for(vsim, payg, status_is("Running"))
