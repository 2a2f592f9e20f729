"""env.py: a container's environment (literal values with $(VAR) expansion, ConfigMap and Secret keys,
the downward API, envFrom, service links), one table row per field, checked on the wire parameters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eci.translation import C, Mut, all_of, check_fields, check_refusal, resources, set_at
from vk_provider.errors import ProviderError, TransientError

CASES: list[tuple[str, Mut, dict[str, Any]]] = [
    (
        "env literal with expansion",
        set_at(C + "env", [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$$"}]),
        {"Container.1.EnvironmentVar.1.Key": "A", "Container.1.EnvironmentVar.2.Value": "x-$"},
    ),
    (
        "env configMapKeyRef",
        all_of(
            set_at(C + "env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
            resources(config_maps={"cm": {"k": "v"}}),
        ),
        {"Container.1.EnvironmentVar.1.Value": "v"},
    ),
    (
        "env secretKeyRef",
        all_of(
            set_at(C + "env", [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}}]),
            resources(secrets={"s": {"pw": b"sekrit"}}),
        ),
        {"Container.1.EnvironmentVar.1.Value": "sekrit"},
    ),
    (
        "env optional missing",
        set_at(
            C + "env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}}]
        ),
        {"Container.1.EnvironmentVar.1.Key": None},
    ),
    (
        "env fieldRef metadata",
        set_at(
            C + "env",
            [
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            ],
        ),
        {
            "Container.1.EnvironmentVar.1.Value": "web",
            "Container.1.EnvironmentVar.2.Value": "web",
            "Container.1.EnvironmentVar.3.Value": "vk-node",
            "Container.1.EnvironmentVar.4.Value": "sa",
        },
    ),
    (
        "env fieldRef podIP",
        set_at(C + "env", [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
        {"Container.1.EnvironmentVar.1.FieldRef.FieldPath": "status.podIP", "Container.1.EnvironmentVar.1.Value": None},
    ),
    (
        "env resourceFieldRef",
        all_of(
            set_at(C + "resources", {"limits": {"cpu": "1500m", "memory": "1Gi"}}),
            set_at(
                C + "env",
                [
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                ],
            ),
        ),
        {"Container.1.EnvironmentVar.1.Value": "2", "Container.1.EnvironmentVar.2.Value": "1024"},
    ),
    (
        "envFrom prefix",
        all_of(
            set_at(C + "envFrom", [{"prefix": "P_", "configMapRef": {"name": "cm"}}]),
            resources(config_maps={"cm": {"a": "1", "bad key": "2"}}),
        ),
        {"Container.1.EnvironmentVar.1.Key": "P_a", "Container.1.EnvironmentVar.2.Key": None},
    ),
    (
        "service links",
        resources(service_env={"DB_SERVICE_HOST": "10.0.0.5"}),
        {"Container.1.EnvironmentVar.1.Key": "DB_SERVICE_HOST"},
    ),
]


@pytest.mark.parametrize(("field", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_field(field: str, mutate: Mut, expected: dict[str, Any]) -> None:
    """Each environment source appears under its wire name (None = must be absent)."""
    check_fields(mutate, expected)


ERRORS: list[tuple[str, Mut, type[ProviderError], str]] = [
    (
        "mandatory configmap",
        set_at(C + "env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
        TransientError,
        "configmap 'cm' not found",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "exc", "text"), ERRORS, ids=[e[0] for e in ERRORS])
def test_refusals(case: str, mutate: Mut, exc: type[ProviderError], text: str) -> None:
    """A missing mandatory reference is a TransientError naming it (the kubelet retries those)."""
    check_refusal(mutate, exc, text)
