"""Spot release notices looked for with DescribeContainerGroupEvents (notices.py), against the scripted ECI
endpoint: only groups with a SpotToBeReleased event the index does not know yet are described and published."""

from __future__ import annotations

from typing import Any

from tests.eci.conftest import FakeECI, make_settings
from vk_provider.eci import names
from vk_provider.eci.models import ContainerGroup
from vk_provider.eci.provider import ECIProvider

NOTICE = {
    "Type": "Warning",
    "Reason": "SpotToBeReleased",
    "Message": "Spot ECI will be released in 3 minutes.",
    "FirstTimestamp": "2026-01-02T03:04:05Z",
}
STARTED = {"Type": "Normal", "Reason": "Started", "Message": "Started container app"}


def group(n: str, *events: dict[str, Any]) -> dict[str, Any]:
    tags = {
        names.TAG_CLUSTER: "test-cluster",
        names.TAG_NODE: "vk",
        names.TAG_NAMESPACE: "default",
        names.TAG_POD: f"p-{n}",
        names.TAG_UID: f"uid-{n}",
    }
    return {
        "ContainerGroupId": f"eci-{n}",
        "Status": "Running",
        "SpotStrategy": "SpotAsPriceGo",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "Events": list(events),
    }


async def test_only_new_notices_are_described_and_published(fake_eci: FakeECI) -> None:
    """One events call per round (tags and SinceSecond); a group with a new SpotToBeReleased event is described
    and published with its Interruption; a group with ordinary events is not; a known notice is not again."""
    provider = ECIProvider(make_settings(fake_eci.endpoint), node_name="vk")
    for n in ("a", "b"):
        provider.index.remember(ContainerGroup.model_validate(group(n)))
    events = {
        "Data": [{"ContainerGroupId": "eci-a", "Events": [NOTICE]}, {"ContainerGroupId": "eci-b", "Events": [STARTED]}]
    }
    fake_eci.script("DescribeContainerGroupEvents", (200, {**events, "NextToken": ""}))
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": [group("a", NOTICE)], "NextToken": ""}))
    try:
        assert await provider.notices.poll_once() == 1
        [(_, params)] = [c for c in fake_eci.calls if c[0] == "DescribeContainerGroupEvents"]
        assert int(params["SinceSecond"]) >= 10 and "test-cluster" in params.values()
        [(_, described)] = [c for c in fake_eci.calls if c[0] == "DescribeContainerGroups"]
        assert described["ContainerGroupIds"] == '["eci-a"]'
        bp = await anext(aiter(provider.status_changes()))
        assert bp.uid == "uid-a" and bp.interruption is not None and bp.interruption.reason == "SpotToBeReleased"
        assert await provider.notices.poll_once() == 0  # the index knows it now
        assert fake_eci.actions().count("DescribeContainerGroups") == 1
    finally:
        await provider.close()
