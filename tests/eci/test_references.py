"""references.py: the downward API values (fieldRef, resourceFieldRef) and the ConfigMap/Secret lookups
that env.py and volumes.py share."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eci.translation import SETTINGS, base_pod, c0
from vk_provider.eci.references import TranslateContext, config_map, field_value, resource_value, secret
from vk_provider.eci.specs import SizeChoice
from vk_provider.errors import InvalidInput, TransientError
from vk_provider.provider import PodResources


def _ctx(pod: dict[str, Any] | None = None, **res: Any) -> TranslateContext:
    ctx = TranslateContext(pod or base_pod(), PodResources(**res), SETTINGS, "vk-node")
    ctx.group_size = SizeChoice(cpu=2, memory=4)
    return ctx


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.namespace", "default"),
        ("metadata.uid", "uid-1"),
        ("metadata.annotations['note']", "hi"),
        ("metadata.labels['absent']", ""),
        ("metadata.annotations", 'note="hi"'),
        ("spec.nodeName", "vk-node"),
    ],
)
def test_field_value(path: str, value: str) -> None:
    """fieldRef paths read the pod's metadata and the virtual node's name, as the kubelet does."""
    assert field_value(_ctx(), path, "env X") == value


def test_service_account_defaults() -> None:
    """spec.serviceAccountName reads "default" when the pod names none."""
    pod = base_pod()
    del pod["spec"]["serviceAccountName"]
    assert field_value(_ctx(pod), "spec.serviceAccountName", "env SA") == "default"


def test_unsupported_field_path_is_refused() -> None:
    """A fieldRef path ECI cannot provide is InvalidInput naming the path and where it was used."""
    with pytest.raises(InvalidInput, match=r"env X: fieldRef 'status.phase'"):
        field_value(_ctx(), "status.phase", "env X")


@pytest.mark.parametrize(
    ("resources", "ref", "value"),
    [
        ({"limits": {"cpu": "250m"}}, {"resource": "limits.cpu"}, "1"),
        ({"limits": {"cpu": "250m"}}, {"resource": "requests.cpu", "divisor": "1m"}, "250"),
        ({}, {"resource": "limits.cpu"}, "2"),
        ({}, {"resource": "limits.memory", "divisor": "1Mi"}, "4096"),
        ({"requests": {"memory": "1Gi"}}, {"resource": "requests.memory", "divisor": "1Gi"}, "1"),
    ],
)
def test_resource_value(resources: dict[str, Any], ref: dict[str, Any], value: str) -> None:
    """resourceFieldRef rounds up to whole divisors; requests fall back to limits, then to the group's size."""
    pod = base_pod()
    c0(pod)["resources"] = resources
    assert resource_value(_ctx(pod), c0(pod), ref, "env R") == value


def test_resource_value_of_another_container() -> None:
    """containerName picks another container's resources."""
    pod = base_pod()
    pod["spec"]["containers"].append({"name": "side", "image": "x", "resources": {"limits": {"cpu": "3"}}})
    ref = {"resource": "limits.cpu", "containerName": "side"}
    assert resource_value(_ctx(pod), c0(pod), ref, "env R") == "3"


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        ({"resource": "limits.nvidia.com/gpu"}, "'limits.nvidia.com/gpu' is not supported"),
        ({"resource": "limits.cpu", "divisor": "0"}, "divisor must be positive"),
        ({"resource": "limits.cpu", "divisor": "lots"}, "bad quantity"),
    ],
)
def test_bad_resource_ref_is_refused(ref: dict[str, Any], text: str) -> None:
    """An unsupported resource or a bad divisor is InvalidInput."""
    with pytest.raises(InvalidInput, match=text):
        resource_value(_ctx(), c0(base_pod()), ref, "env R")


def test_missing_mandatory_references_are_transient() -> None:
    """A missing ConfigMap or Secret is a TransientError with the kubelet's reason; an optional one is None."""
    ctx = _ctx(config_maps={"cm": {"k": "v"}}, secrets={"s": {"k": b"v"}})
    assert config_map(ctx, "cm", False, "env") == {"k": "v"} and secret(ctx, "s", False, "env") == {"k": b"v"}
    assert config_map(ctx, "gone", True, "env") is None and secret(ctx, "gone", True, "env") is None
    with pytest.raises(TransientError) as info:
        config_map(ctx, "gone", False, "container app")
    assert info.value.reason == "MandatoryConfigMapNotFound" and "configmap 'gone'" in info.value.message
    with pytest.raises(TransientError) as info:
        secret(ctx, "gone", False, "container app")
    assert info.value.reason == "MandatorySecretNotFound"
