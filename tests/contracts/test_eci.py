"""ECI's documented responses (tests/contracts/eci/<Action>.json) against the product and the simulator.

For every action the daemon calls: (a) the product's model parses the documented response and reads no
field the documentation lacks; (b) the simulator answers with the documented shape: no key the service does
not document, the same JSON types, and every documented key the product reads. Each fixture names its source.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from tests.contracts.shapes import drift, model_paths, paths
from tests.waiting import eventually
from vk_provider.eci import models
from vk_provider.eci.client import ECIClient
from vk_provider.settings import ECISettings
from vk_sandbox.eci.server import ECISimulator

FIXTURES = Path(__file__).parent / "eci"
ACTIONS = sorted(p.stem for p in FIXTURES.glob("*.json"))

# The model the product parses each answer with (None: the product reads nothing but success).
MODELS: dict[str, type[BaseModel] | None] = {
    "CreateContainerGroup": models.CreateContainerGroupResponse,
    "DeleteContainerGroup": None,
    "UpdateContainerGroup": None,
    "DescribeContainerGroups": models.DescribeContainerGroupsResponse,
    "DescribeContainerGroupStatus": models.DescribeContainerGroupStatusResponse,
    "DescribeContainerGroupEvents": models.DescribeContainerGroupEventsResponse,
    "DescribeContainerLog": models.DescribeContainerLogResponse,
    "ExecContainerCommand": models.ExecContainerCommandResponse,
    "DescribeMultiContainerGroupMetric": models.DescribeMultiContainerGroupMetricResponse,
    "ListUsage": models.ListUsageResponse,
}

# Fields the product's models declare that the documentation does not have: read with a default, never relied on.
UNDOCUMENTED_READS = {
    # The request documents NextToken "obtained from the previous query"; the answer's model omits it.
    "DescribeContainerGroupEvents": {"NextToken"},
    "DescribeContainerGroups": {
        "ContainerGroups[].Containers[].ImageId",
        "ContainerGroups[].Containers[].ContainerId",
        "ContainerGroups[].InitContainers[].ImageId",
        "ContainerGroups[].InitContainers[].ContainerId",
    },
}

# Where the simulator knowingly differs from the documentation, and why. Anything else is a drift.
KNOWN_EXTRA: dict[str, set[str]] = {
    # NextToken: see UNDOCUMENTED_READS. Name: the simulator's events are those of DescribeContainerGroups.
    "DescribeContainerGroupEvents": {"NextToken", "Data[].Events[].Name"},
    # The API metadata documents ContainerState.Running as "StartedAtstartedAt" (evidently a typo); the
    # simulator sends Kubernetes' StartedAt. The product does not read PodStatus.
    "DescribeContainerGroupStatus": {
        "Data[].PodStatus.ContainerStatuses[].State.Running.StartedAt",
        "Data[].PodStatus.ContainerStatuses[].LastState.Running.StartedAt",
    },
}


def fixture(action: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{action}.json").read_text())
    assert data["_source"]["action"] == action and data["_source"]["reference"].startswith("https://")
    return dict(data["response"])


def test_every_action_the_daemon_calls_has_a_fixture() -> None:
    root = Path(__file__).resolve().parents[2] / "vk_provider" / "eci"
    text = "\n".join(p.read_text() for p in root.glob("*.py"))
    called = {a for a in MODELS if f'"{a}"' in text}
    assert called == set(MODELS) == set(ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
def test_the_product_parses_the_documented_response(action: str) -> None:
    model = MODELS[action]
    if model is None:
        assert set(fixture(action)) == {"RequestId"}
        return
    parsed = model.model_validate(fixture(action))
    assert parsed.model_dump()  # parsed without error, with content


@pytest.mark.parametrize("action", [a for a in ACTIONS if MODELS[a] is not None])
def test_the_product_reads_only_documented_fields(action: str) -> None:
    model = MODELS[action]
    assert model is not None
    documented = set(paths(fixture(action)))
    assert model_paths(model) - documented == UNDOCUMENTED_READS.get(action, set())


def test_documented_container_group_values_come_through() -> None:
    resp = models.DescribeContainerGroupsResponse.model_validate(fixture("DescribeContainerGroups"))
    group = resp.ContainerGroups[0]
    assert group.ContainerGroupId.startswith("eci-") and group.Status == "Running"
    assert group.Containers[0].CurrentState.StartTime is not None and group.CreationTime is not None
    assert group.Tags[0].Key and group.Events[0].FirstTimestamp is not None
    usage = models.ListUsageResponse.model_validate(fixture("ListUsage"))
    assert usage.capacity() == {"cpu": "1000"}


# --- the simulator's answers ----------------------------------------------------------------------------


@pytest.fixture
async def answers(tmp_path: Path) -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
    """One answer (or several, to cover each form) of the simulator to every action, for a running group."""
    async with ECISimulator(directory=tmp_path / "eci", runtime="virtual", access_keys={"id": "secret"}) as sim:
        client = ECIClient(
            ECISettings(
                endpoint=sim.endpoint, region=sim.region, access_key_id="id", access_key_secret=SecretStr("secret")
            )
        )
        try:
            yield await _collect(client, sim.region)
        finally:
            await client.close()


async def _collect(client: ECIClient, region: str) -> dict[str, list[dict[str, Any]]]:
    r = {"RegionId": region}
    created = await client.call(
        "CreateContainerGroup",
        {
            **r,
            "ContainerGroupName": "contract",
            "VSwitchId": "vsw-contract",
            "SecurityGroupId": "sg-contract",
            "Container.1.Name": "main",
            "Container.1.Image": "busybox",
            "Container.1.Command.1": "sleep",
            "Container.1.Arg.1": "600",
            "Container.1.Port.1.Port": 80,
            "Container.1.Port.1.Protocol": "TCP",
            "Container.1.EnvironmentVar.1.Key": "A",
            "Container.1.EnvironmentVar.1.Value": "b",
            "Container.1.VolumeMount.1.Name": "cfg",
            "Container.1.VolumeMount.1.MountPath": "/etc/cfg",
            "Container.1.ReadinessProbe.TcpSocket.Port": 80,
            "InitContainer.1.Name": "init",
            "InitContainer.1.Image": "busybox",
            "InitContainer.1.Command.1": "true",
            "Volume.1.Name": "cfg",
            "Volume.1.Type": "ConfigFileVolume",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Path": "a.txt",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": "aGk=",
            "Tag.1.Key": "vk-eci/cluster",
            "Tag.1.Value": "contract",
            "DnsConfig.NameServer.1": "10.96.0.10",
        },
    )
    gid = created["ContainerGroupId"]
    one = {**r, "ContainerGroupIds": [gid]}

    async def running() -> dict[str, Any] | None:
        described: dict[str, Any] = await client.call("DescribeContainerGroups", one)
        return described if described["ContainerGroups"][0]["Status"] == "Running" else None

    # the virtual runtime starts a group in well under a second
    described = await eventually(running, timeout=4, interval=0.02, what="the group to run")
    out: dict[str, list[dict[str, Any]]] = {"CreateContainerGroup": [created], "DescribeContainerGroups": [described]}
    out["DescribeContainerGroupStatus"] = [await client.call("DescribeContainerGroupStatus", one)]
    out["DescribeContainerGroupEvents"] = [await client.call("DescribeContainerGroupEvents", one)]
    target = {**r, "ContainerGroupId": gid, "ContainerName": "main"}
    out["DescribeContainerLog"] = [await client.call("DescribeContainerLog", target)]
    out["ExecContainerCommand"] = [
        await client.call("ExecContainerCommand", {**target, "Command": ["echo", "hi"], "Sync": True}),
        await client.call("ExecContainerCommand", {**target, "Command": ["sh"], "TTY": True}),
    ]
    out["DescribeMultiContainerGroupMetric"] = [await client.call("DescribeMultiContainerGroupMetric", one)]
    out["ListUsage"] = [await client.call("ListUsage", r)]
    out["UpdateContainerGroup"] = [
        await client.call(
            "UpdateContainerGroup",
            {**r, "ContainerGroupId": gid, "Container.1.Name": "main", "Container.1.Image": "busybox:1.36"},
        )
    ]
    out["DeleteContainerGroup"] = [await client.call("DeleteContainerGroup", {**r, "ContainerGroupId": gid})]
    return out


async def test_the_simulator_answers_in_the_documented_shape(answers: dict[str, list[dict[str, Any]]]) -> None:
    problems: dict[str, Any] = {}
    for action in ACTIONS:
        documented = fixture(action)
        for answer in answers[action]:
            extra, mismatched = drift(documented, answer)
            extra = sorted(set(extra) - KNOWN_EXTRA.get(action, set()))
            if extra or mismatched:
                problems[action] = {"undocumented": extra, "types": mismatched}
    assert problems == {}, json.dumps(problems, indent=1)


async def test_the_simulator_sends_everything_the_product_reads(answers: dict[str, list[dict[str, Any]]]) -> None:
    lacking: dict[str, list[str]] = {}
    for action, model in MODELS.items():
        if model is None:
            continue
        documented = fixture(action)
        reads = model_paths(model)
        sent: set[str] = set()
        for answer in answers[action]:
            sent |= set(paths(answer))
        gaps = sorted(p for p in reads & set(paths(documented)) if p not in sent and _reachable(p, sent))
        if gaps:
            lacking[action] = gaps
    assert lacking == {}, json.dumps(lacking, indent=1)


def _reachable(path: str, sent: set[str]) -> bool:
    """Whether the simulator's answers should have had ``path``: its parent was sent and was not empty (an
    empty PreviousState means "no previous instance", which the product reads as such)."""
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    return parent == "" or any(p.startswith((parent + ".", parent + "[]")) for p in sent)
