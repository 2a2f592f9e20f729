"""What `kubectl describe pod` shows for ECI decisions, through the whole daemon and the API server:
the size and zone a group was scheduled with, and a pod failed for lack of stock."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StackFactory, make_stack, phase_is, running_ready  # noqa: F401 (fixture)
from tests.eci.conftest import FakeECI, error

pytestmark = pytest.mark.e2e


async def test_pod_gets_an_event_naming_its_size_and_zone(make_stack: StackFactory) -> None:  # noqa: F811
    """A pod that runs has a Normal ContainerGroupScheduled event with the vCPU, GiB and zone of its group."""
    stack = await make_stack()
    await stack.create_pod(
        {
            "metadata": {"name": "sized"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sleep", "3600"],
                        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                    }
                ]
            },
        }
    )
    await stack.wait_pod("sized", running_ready, timeout=20)
    event = await stack.wait_event("sized", "ContainerGroupScheduled")
    group = next(iter(stack.sim.engine.groups.values()))
    assert event["type"] == "Normal"
    assert (
        event["message"] == f"container group {group.id} runs as 0.5 vCPU, 1 GiB in zone {group.zone}, vSwitch vsw-e2e"
    )


async def test_pod_refused_for_lack_of_stock_fails_with_reason_no_stock(
    make_stack: StackFactory,  # noqa: F811
    fake_eci: FakeECI,
) -> None:
    """CreateContainerGroup answering NoStock for every planned size: the pod is Failed with reason NoStock
    (not ProviderFailed), and the message and the ProviderCreateFailed event list what was tried."""
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": [], "TotalCount": 0, "NextToken": ""}))
    fake_eci.script("DescribeContainerGroupStatus", (200, {"Data": [], "NextToken": ""}))
    fake_eci.script("CreateContainerGroup", error("RecommendEmpty.InstanceTypeNoStock", "no stock", 403))
    stack = await make_stack(**{"eci.endpoint": fake_eci.endpoint})
    await stack.create_pod(
        {
            "metadata": {"name": "nostock", "annotations": {"k8s.aliyun.com/eci-use-specs": "1-2Gi,2-4Gi"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }
    )
    pod = await stack.wait_pod("nostock", phase_is("Failed"), timeout=20)
    assert pod is not None
    assert pod["status"]["reason"] == "NoStock"
    assert pod["status"]["message"].endswith("; tried 1-2Gi in vsw-e2e; 2-4Gi in vsw-e2e, no attempt left")
    event = await stack.wait_event("nostock", "ProviderCreateFailed", contains="NoStock: ")
    assert "tried 1-2Gi in vsw-e2e; 2-4Gi in vsw-e2e" in event["message"]
