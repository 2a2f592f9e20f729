"""request.py: the CreateContainerGroup request's wire form, and how ECIClient sends it."""

from __future__ import annotations

from tests.eci.conftest import FakeECI, make_settings
from tests.eci.translation import DOCKER, SETTINGS, base_pod, c0
from vk_provider.eci.client import ECIClient
from vk_provider.eci.specs import SizeChoice
from vk_provider.eci.translate import translate_pod
from vk_provider.provider import PodResources


def test_registry_password_not_in_repr() -> None:
    """The request's repr never shows a registry password."""
    pod = base_pod()
    pod["spec"]["imagePullSecrets"] = [{"name": "reg"}]
    req = translate_pod(pod, PodResources(secrets={"reg": {".dockerconfigjson": DOCKER}}), SETTINGS, "n").request
    assert "p4ss" not in repr(req) and "p4ss" not in str(req.model_dump())


async def test_sent_by_the_eci_client(fake_eci: FakeECI) -> None:
    """ECIClient puts every parameter of to_params on CreateContainerGroup, encoded for the wire."""
    pod = base_pod()
    c0(pod)["stdin"] = True
    params = translate_pod(pod, PodResources(), SETTINGS, "n").request.to_params()
    fake_eci.script("CreateContainerGroup", (200, {"ContainerGroupId": "eci-1"}))
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        await client.call("CreateContainerGroup", params)
    finally:
        await client.close()
    [(_, q)] = fake_eci.calls
    assert q["Container.1.Image"] == "nginx:1.25" and q["Container.1.Stdin"] == "true" and q["Cpu"] == "2.0"
    assert q.keys() >= params.keys()


def test_size_and_vswitches_override_the_first_choice() -> None:
    """to_params(size=, vswitch_ids=) replaces the first size and the vSwitches, as a NoStock retry needs."""
    req = translate_pod(base_pod(), PodResources(), SETTINGS, "n").request
    params = req.to_params(size=SizeChoice(instance_type="ecs.c6.large"), vswitch_ids=["vsw-b", "vsw-c"])
    assert params["InstanceType"] == "ecs.c6.large" and "Cpu" not in params and "Memory" not in params
    assert params["VSwitchId"] == "vsw-b,vsw-c"
    assert "VSwitchId" not in req.to_params(vswitch_ids=[])


def test_container_params_keep_only_containers_and_volumes() -> None:
    """container_params (UpdateContainerGroup) holds the container, init container and volume lists and
    RestartPolicy, nothing of the group's identity or placement."""
    pod = base_pod()
    pod["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    pod["spec"]["volumes"] = [{"name": "e", "emptyDir": {}}]
    params = translate_pod(pod, PodResources(), SETTINGS, "n").request.container_params()
    assert params["Container.1.Image"] == "nginx:1.25" and params["InitContainer.1.Name"] == "init"
    assert params["Volume.1.Type"] == "EmptyDirVolume" and params["RestartPolicy"] == "Always"
    assert not {"ContainerGroupName", "ClientToken", "Cpu", "VSwitchId", "Tag.1.Key", "HostName"} & params.keys()
