"""Every action through the real SDK request classes, with the service's validation errors."""

from __future__ import annotations

import base64
import json
from typing import Any

from aliyunsdkeci.request.v20180808.CreateContainerGroupRequest import CreateContainerGroupRequest
from aliyunsdkeci.request.v20180808.DeleteContainerGroupRequest import DeleteContainerGroupRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupEventsRequest import DescribeContainerGroupEventsRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupMetricRequest import DescribeContainerGroupMetricRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupsRequest import DescribeContainerGroupsRequest
from aliyunsdkeci.request.v20180808.DescribeContainerGroupStatusRequest import DescribeContainerGroupStatusRequest
from aliyunsdkeci.request.v20180808.DescribeMultiContainerGroupMetricRequest import (
    DescribeMultiContainerGroupMetricRequest,
)
from aliyunsdkeci.request.v20180808.ListUsageRequest import ListUsageRequest
from aliyunsdkeci.request.v20180808.RestartContainerGroupRequest import RestartContainerGroupRequest
from aliyunsdkeci.request.v20180808.UpdateContainerGroupRequest import UpdateContainerGroupRequest

from tests.sandbox.eci.conftest import call, call_error, create_request, describe, status_is, wait_for
from tests.waiting import eventually
from vk_sandbox.eci.server import ECISimulator

SLEEPER = [{"Name": "main", "Image": "busybox", "Commands": ["sleep", "3600"]}]


async def _create(sim: ECISimulator, name: str = "grp", **extra: Any) -> str:
    return str((await call(sim, create_request(name, **extra)))["ContainerGroupId"])


async def test_create_then_running_with_rounded_default_spec(vsim: ECISimulator) -> None:
    """A create with no size gets 2 vCPU / 4 GiB, passes Scheduling/Pending and reaches Running."""
    gid = await _create(vsim)
    group = await wait_for(vsim, gid, status_is("Running"))
    assert (group["Cpu"], group["Memory"]) == (2.0, 4.0)
    assert group["Containers"][0]["CurrentState"]["State"] == "Running"
    reasons = [e["Reason"] for e in group["Events"]]
    assert reasons[:2] == ["Scheduling", "Scheduled"]
    assert group["IntranetIp"] == "127.0.0.1"


async def test_spec_is_rounded_up_and_beyond_largest_is_refused(vsim: ECISimulator) -> None:
    """Cpu 1.5 / Memory 3 rounds to 2/4 in Describe; 65 vCPU is InvalidParameter."""
    gid = await _create(vsim, Cpu=1.5, Memory=3.0)
    assert ((await describe(vsim, gid))["Cpu"], (await describe(vsim, gid))["Memory"]) == (2.0, 4.0)
    gid = await _create(vsim, "small", Cpu=0.3, Memory=0.5)
    assert (await describe(vsim, gid))["Cpu"] == 0.5
    exc = await call_error(vsim, create_request(Cpu=65, Memory=8))
    assert exc.get_error_code() == "InvalidParameter"


async def test_container_sizes_sum_when_the_group_has_none(vsim: ECISimulator) -> None:
    """Without group Cpu/Memory the containers' sum is rounded: 0.5+1 vCPU, 1+2 GiB -> 2 vCPU / 4 GiB."""
    containers = [
        {"Name": "a", "Image": "busybox", "Cpu": 0.5, "Memory": 1.0},
        {"Name": "b", "Image": "busybox", "Cpu": 1.0, "Memory": 2.0},
    ]
    gid = (await call(vsim, create_request(containers=containers)))["ContainerGroupId"]
    group = await describe(vsim, gid)
    assert (group["Cpu"], group["Memory"]) == (2.0, 4.0)


async def test_name_pattern_is_enforced(vsim: ECISimulator) -> None:
    """Names with upper case, a leading '-' or one character are refused; a valid one passes."""
    for bad in ("Bad", "-abc", "a", "abc-", "a_b"):
        exc = await call_error(vsim, create_request(bad))
        assert exc.get_error_code() == "InvalidParameter.ContainerGroupName", bad
    await _create(vsim, "ok-name-1")


async def test_container_and_tag_limits(vsim: ECISimulator) -> None:
    """21 containers or 21 tags exceed the limits (InvalidParameter.ValueExceeded)."""
    many = [{"Name": f"c{i}", "Image": "busybox"} for i in range(21)]
    exc = await call_error(vsim, create_request(containers=many))
    assert exc.get_error_code() == "InvalidParameter.ValueExceeded"
    req = create_request()
    req.set_Tags([{"Key": f"k{i}", "Value": "v"} for i in range(21)])
    assert (await call_error(vsim, req)).get_error_code() == "InvalidParameter.ValueExceeded"


async def test_enumerations_and_volume_types(vsim: ECISimulator) -> None:
    """Unknown RestartPolicy, SpotStrategy and volume Type are InvalidParameter; missing image is MissingParameter."""
    assert (await call_error(vsim, create_request(RestartPolicy="Sometimes"))).get_error_code() == "InvalidParameter"
    assert (await call_error(vsim, create_request(SpotStrategy="Cheap"))).get_error_code() == "InvalidParameter"
    req = create_request()
    req.set_Volumes([{"Name": "v", "Type": "MagicVolume"}])
    assert (await call_error(vsim, req)).get_error_code() == "InvalidParameter"
    req = create_request(containers=[{"Name": "main"}])
    assert (await call_error(vsim, req)).get_error_code() == "MissingParameter"
    exc = await call_error(vsim, create_request(SpotStrategy="SpotWithPriceLimit"))
    assert exc.get_error_code() == "MissingParameter"


async def test_booleans_accept_any_case(vsim: ECISimulator) -> None:
    """Container Stdin sent as the SDK's 'True' or as 'TRUE' is accepted; 'yes' is not."""
    await call(vsim, create_request(containers=[{**SLEEPER[0], "Stdin": True}]))
    await call(vsim, create_request(**{"Container.1.Tty": "TRUE"}))
    assert (await call_error(vsim, create_request(**{"Container.1.Tty": "yes"}))).get_error_code() == "InvalidParameter"


async def test_client_token_is_idempotent(vsim: ECISimulator) -> None:
    """The same ClientToken returns the same id and makes no second group; other params with it are refused."""
    a = await _create(vsim, ClientToken="tok-1")
    b = await _create(vsim, ClientToken="tok-1")
    assert a == b
    assert vsim.stats()["total_groups"] == 1
    exc = await call_error(vsim, create_request("other", ClientToken="tok-1"))
    assert exc.get_error_code() == "IdempotentParameterMismatch"
    assert (await call_error(vsim, create_request(ClientToken="x" * 65))).get_error_code() == "InvalidParameter"


async def test_describe_pages_and_filters(vsim: ECISimulator) -> None:
    """45 groups page as 20+20+5 with NextToken; tag, name, status and id filters narrow the list."""
    ids = []
    for i in range(45):
        req = create_request(f"g{i}")
        req.set_Tags([{"Key": "team", "Value": "a" if i % 3 == 0 else "b"}])
        ids.append((await call(vsim, req))["ContainerGroupId"])
    seen: list[str] = []
    token = ""
    for _ in range(5):
        req = DescribeContainerGroupsRequest()
        req.set_Limit(20)
        if token:
            req.set_NextToken(token)
        page = await call(vsim, req)
        seen += [g["ContainerGroupId"] for g in page["ContainerGroups"]]
        assert page["TotalCount"] == 45
        token = page["NextToken"]
        if not token:
            break
    assert seen == ids
    req = DescribeContainerGroupsRequest()
    req.set_Tags([{"Key": "team", "Value": "a"}])
    assert (await call(vsim, req))["TotalCount"] == 15
    req = DescribeContainerGroupsRequest()
    req.set_ContainerGroupName("g7")
    assert [g["ContainerGroupId"] for g in (await call(vsim, req))["ContainerGroups"]] == [ids[7]]
    req = DescribeContainerGroupsRequest()
    req.set_ContainerGroupIds(json.dumps(ids[:3]))
    assert len((await call(vsim, req))["ContainerGroups"]) == 3
    req = DescribeContainerGroupsRequest()
    req.set_ContainerGroupIds(json.dumps(ids[:21]))
    assert (await call_error(vsim, req)).get_error_code() == "InvalidParameter.ValueExceeded"
    req = DescribeContainerGroupsRequest()
    req.set_Limit(21)
    assert (await call_error(vsim, req)).get_error_code() == "InvalidParameter"
    await wait_for(vsim, ids[-1], status_is("Running"))
    req = DescribeContainerGroupsRequest()
    req.set_Status("Running")
    req.set_Limit(1)
    assert (await call(vsim, req))["TotalCount"] == 45


async def test_status_is_kubernetes_shaped_and_incremental(vsim: ECISimulator) -> None:
    """DescribeContainerGroupStatus returns PodStatus; SinceSecond leaves out groups unchanged for longer."""
    gid = await _create(vsim, "pod-a", **{"Tag.1.Key": "k8s.aliyun.com/pod-namespace", "Tag.1.Value": "ns1"})
    await wait_for(vsim, gid, status_is("Running"))
    req = DescribeContainerGroupStatusRequest()
    req.set_ContainerGroupIds(json.dumps([gid]))
    data = (await call(vsim, req))["Data"][0]
    pod = data["PodStatus"]
    assert data["Namespace"] == "ns1" and data["Status"] == "Running"
    assert pod["Phase"] == "Running"
    assert {c["type"]: c["status"] for c in pod["Conditions"]}["Ready"] == "True"
    assert "Running" in pod["ContainerStatuses"][0]["State"]
    assert pod["PodIp"] == "127.0.0.1"
    vsim.engine.groups[gid].changed -= 100  # as if nothing happened for 100 s
    req = DescribeContainerGroupStatusRequest()
    req.set_SinceSecond(10)
    assert (await call(vsim, req))["Data"] == []
    req.set_SinceSecond(200)
    assert len((await call(vsim, req))["Data"]) == 1


async def test_delete_is_asynchronous(vsim: ECISimulator) -> None:
    """DeleteContainerGroup answers at once; the group shows Terminating, then is gone; unknown ids are 404."""
    gid = await _create(vsim)
    await wait_for(vsim, gid, status_is("Running"))
    req = DeleteContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    await call(vsim, req)
    listing = DescribeContainerGroupsRequest()
    listing.set_ContainerGroupIds(json.dumps([gid]))
    # Terminating lasts only the fast delete latency here (the process runtime test holds it open).
    assert [g["Status"] for g in (await call(vsim, listing))["ContainerGroups"]] in (["Terminating"], [])

    async def removed() -> bool:
        listing = DescribeContainerGroupsRequest()
        listing.set_ContainerGroupIds(json.dumps([gid]))
        return not (await call(vsim, listing))["ContainerGroups"]

    await eventually(removed, timeout=2, interval=0.02, what="the group to be removed")
    again = DeleteContainerGroupRequest()
    again.set_ContainerGroupId(gid)
    exc = await call_error(vsim, again)
    assert (exc.get_error_code(), exc.get_http_status()) == ("InvalidContainerGroup.NotFound", 404)


async def test_restart_only_when_running(vsim: ECISimulator) -> None:
    """RestartContainerGroup brings the group back to Running with RestartCount+1 and a Restarting event;
    a group that is not Running yet is refused with IncorrectStatus."""
    gid = await _create(vsim)
    req = RestartContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    exc = await call_error(vsim, req)
    assert (exc.get_error_code(), exc.get_http_status()) == ("IncorrectStatus", 403)
    await wait_for(vsim, gid, status_is("Running"))
    req = RestartContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    await call(vsim, req)
    # Restarting lasts only the fast pull latency here; the process runtime test holds it open and checks it.
    group = await wait_for(vsim, gid, lambda g: g["Status"] == "Running" and g["Containers"][0]["RestartCount"] == 1)
    assert group["Containers"][0]["RestartCount"] == 1
    assert "Restarting" in [e["Reason"] for e in group["Events"]]


async def test_update_renew_and_incremental(vsim: ECISimulator) -> None:
    """RenewUpdate replaces the sent lists; IncrementalUpdate merges containers by name and env by key."""
    gid = await _create(vsim, **{"Tag.1.Key": "a", "Tag.1.Value": "1"})
    await wait_for(vsim, gid, status_is("Running"))
    req = UpdateContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    req.set_Containers(
        [
            {
                "Name": "main",
                "Image": "alpine",
                "Commands": ["sleep", "1"],
                "EnvironmentVars": [{"Key": "A", "Value": "1"}],
            }
        ]
    )
    req.set_Tags([{"Key": "b", "Value": "2"}])
    await call(vsim, req)
    group = await wait_for(vsim, gid, status_is("Running"))
    assert group["Containers"][0]["Image"] == "alpine"
    assert group["Tags"] == [{"Key": "b", "Value": "2"}]
    req = UpdateContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    req.add_query_param("UpdateType", "IncrementalUpdate")
    req.set_Containers([{"Name": "main", "EnvironmentVars": [{"Key": "B", "Value": "2"}], "Image": "alpine:3"}])
    req.set_Tags([{"Key": "c", "Value": "3"}])
    req.set_Cpu(4.0)
    req.set_Memory(8.0)
    await call(vsim, req)
    group = await wait_for(vsim, gid, lambda g: g["Status"] == "Running" and g["Cpu"] == 4.0)
    main = group["Containers"][0]
    assert main["Commands"] == ["sleep", "1"]
    assert main["EnvironmentVars"] == [{"Key": "A", "Value": "1"}, {"Key": "B", "Value": "2"}]
    assert {t["Key"] for t in group["Tags"]} == {"b", "c"}
    assert group["Memory"] == 8.0
    req = UpdateContainerGroupRequest()
    req.set_ContainerGroupId(gid)
    req.add_query_param("UpdateType", "Sideways")
    assert (await call_error(vsim, req)).get_error_code() == "InvalidParameter"


async def test_events_action(vsim: ECISimulator) -> None:
    """DescribeContainerGroupEvents returns each group's events in the service's shape."""
    gid = await _create(vsim)
    await wait_for(vsim, gid, status_is("Running"))
    req = DescribeContainerGroupEventsRequest()
    req.set_ContainerGroupIds(json.dumps([gid]))
    data = (await call(vsim, req))["Data"]
    assert data[0]["ContainerGroupId"] == gid
    event = data[0]["Events"][0]
    assert set(event) >= {"Count", "Type", "Reason", "Message", "FirstTimestamp", "LastTimestamp", "Name"}


async def test_virtual_metrics_and_usage(vsim: ECISimulator) -> None:
    """Metrics return CPU/Memory records for one or many groups; ListUsage counts live groups."""
    gid = await _create(vsim)
    await wait_for(vsim, gid, status_is("Running"))
    req = DescribeContainerGroupMetricRequest()
    req.set_ContainerGroupId(gid)
    record = (await call(vsim, req))["Records"][-1]
    assert record["CPU"]["Limit"] == 2000 and record["CPU"]["UsageNanoCores"] > 0
    assert record["Memory"]["WorkingSet"] > 0 and record["Containers"][0]["Name"] == "main"
    bad = DescribeContainerGroupMetricRequest()
    bad.set_ContainerGroupId(gid)
    bad.set_Period(7)
    assert (await call_error(vsim, bad)).get_error_code() == "InvalidParameter"
    multi = DescribeMultiContainerGroupMetricRequest()
    multi.set_ContainerGroupIds(json.dumps([gid]))
    assert (await call(vsim, multi))["MonitorDatas"][0]["ContainerGroupId"] == gid
    usage = (await call(vsim, ListUsageRequest()))["Attributes"]
    assert usage["UsedCpu"] > 0 and usage["MaxCpu"] == 100000


async def test_virtual_exit_codes_follow_restart_policy(vsim: ECISimulator) -> None:
    """Virtual containers ending with 'exit N' end the group: Never+exit 3 is Failed, Never+true is Succeeded."""
    failing = [{"Name": "main", "Image": "busybox", "Commands": ["sh", "-c", "exit 3"]}]
    gid = (await call(vsim, create_request(containers=failing, RestartPolicy="Never")))["ContainerGroupId"]
    group = await wait_for(vsim, gid, status_is("Failed"))
    assert group["Containers"][0]["CurrentState"]["ExitCode"] == 3
    ok = [{"Name": "main", "Image": "busybox", "Commands": ["true"]}]
    gid = (await call(vsim, create_request("ok", containers=ok, RestartPolicy="Never")))["ContainerGroupId"]
    assert (await wait_for(vsim, gid, status_is("Succeeded")))["SucceededTime"]


def _post_create(name: str, params: dict[str, str]) -> CreateContainerGroupRequest:
    """A CreateContainerGroup sent as the product sends it: POST, every parameter in the signed form body."""
    req = CreateContainerGroupRequest()
    req.set_method("POST")
    base = {"ContainerGroupName": name, "Container.1.Name": "main", "Container.1.Image": "busybox"}
    for key, value in {**base, **params}.items():
        req.add_body_params(key, value)
    return req


def _config_volume(files: dict[str, int], index: int = 1) -> dict[str, str]:
    out = {f"Volume.{index}.Name": f"v{index}", f"Volume.{index}.Type": "ConfigFileVolume"}
    for j, (path, size) in enumerate(files.items(), start=1):
        out[f"Volume.{index}.ConfigFileVolume.ConfigFileToPath.{j}.Path"] = path
        out[f"Volume.{index}.ConfigFileVolume.ConfigFileToPath.{j}.Content"] = base64.b64encode(b"c" * size).decode()
    return out


async def test_a_large_configuration_in_a_post_body_is_accepted(sim: ECISimulator) -> None:
    """60 KiB of ConfigFiles and 300 variables (a ~120 KB body) are accepted and kept byte for byte."""
    params = _config_volume({"a.conf": 30 * 1024, "b.conf": 30 * 1024})
    for i in range(1, 301):
        params[f"Container.1.EnvironmentVar.{i}.Key"] = f"VAR_{i}"
        params[f"Container.1.EnvironmentVar.{i}.Value"] = "v" * 100
    gid = (await call(sim, _post_create("big", params)))["ContainerGroupId"]
    group = sim.engine.groups[gid]
    assert [len(base64.b64decode(f.content)) for f in group.volumes[0].config_files] == [30 * 1024, 30 * 1024]
    assert len(group.containers[0].env) == 300


async def test_configfile_limits_are_enforced(sim: ECISimulator) -> None:
    """ECI's documented limits: 32 KiB per file, 60 KiB per volume, 20 volumes per group."""
    file_err = await call_error(sim, _post_create("file-big", _config_volume({"a": 32 * 1024 + 1})))
    assert file_err.get_error_code() == "InvalidParameter.ValueExceeded"
    assert "ConfigFileToPath.1.Content" in file_err.get_error_msg()
    volume_err = await call_error(sim, _post_create("vol-big", _config_volume({"a": 31 * 1024, "b": 30 * 1024})))
    assert volume_err.get_error_code() == "InvalidParameter.ValueExceeded"
    assert "Volume.1.ConfigFileVolume" in volume_err.get_error_msg()
    many: dict[str, str] = {}
    for i in range(1, 22):
        many |= {f"Volume.{i}.Name": f"e{i}", f"Volume.{i}.Type": "EmptyDirVolume"}
    count_err = await call_error(sim, _post_create("many-vols", many))
    assert count_err.get_error_code() == "InvalidParameter.ValueExceeded" and "20 volumes" in count_err.get_error_msg()
    assert "ccccc" not in file_err.get_error_msg() + volume_err.get_error_msg()
