"""Shared by the translation tests: a base pod, mutations of it, and the two table checks (wire
parameters present or absent, refusals naming the culprit)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.eci.conftest import make_settings
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import ProviderError
from vk_provider.provider import PodResources

SETTINGS = make_settings("http://127.0.0.1:1")

C = "spec.containers.0."
DOCKER = json.dumps({"auths": {"https://registry.example.com/v1/": {"username": "u", "password": "p4ss"}}}).encode()

Mut = Callable[[dict[str, Any], PodResources], None]


def base_pod() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "uid-1",
            "labels": {"app": "web"},
            "annotations": {"note": "hi"},
        },
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}], "serviceAccountName": "sa"},
    }


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def c0(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


def set_at(path: str, value: Any) -> Mut:
    """Set the dotted ``path`` of the pod (digits index lists) to ``value``."""

    def mut(pod: dict[str, Any], _: PodResources) -> None:
        target: Any = pod
        keys = path.split(".")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target.setdefault(k, {})
        target[keys[-1]] = value

    return mut


def resources(**kw: Any) -> Mut:
    """Add resolved references (config_maps, secrets, tokens, service_env) to the pod's resources."""

    def mut(_: dict[str, Any], res: PodResources) -> None:
        for k, v in kw.items():
            getattr(res, k).update(v)

    return mut


def all_of(*muts: Mut) -> Mut:
    def mut(pod: dict[str, Any], res: PodResources) -> None:
        for m in muts:
            m(pod, res)

    return mut


def check_fields(mutate: Mut, expected: dict[str, Any]) -> None:
    """The mutated base pod's wire parameters hold ``expected`` (a None value: the key must be absent)."""
    pod, res = base_pod(), PodResources()
    mutate(pod, res)
    params = translate_pod(pod, res, SETTINGS, "vk-node").request.to_params()
    for key, value in expected.items():
        if value is None:
            assert key not in params, key
        else:
            assert params.get(key) == value, (key, params.get(key))


def check_refusal(mutate: Mut, exc: type[ProviderError], text: str) -> None:
    """Translating the mutated base pod raises ``exc`` with ``text`` in its message."""
    pod, res = base_pod(), PodResources()
    mutate(pod, res)
    with pytest.raises(exc) as info:
        translate_pod(pod, res, SETTINGS, "vk-node")
    assert text in info.value.message
