"""volumes.py: each volume type on the wire, and the refusals of the types ECI does not have."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eci.translation import C, Mut, all_of, b64, check_fields, check_refusal, resources, set_at
from vk_provider.errors import NotSupported, ProviderError, TransientError

CASES: list[tuple[str, Mut, dict[str, Any]]] = [
    (
        "configMap volume items mode",
        all_of(
            set_at(
                "spec.volumes",
                [
                    {
                        "name": "cfg",
                        "configMap": {
                            "name": "cm",
                            "items": [{"key": "a", "path": "x/a.conf", "mode": 0o600}],
                            "defaultMode": 0o444,
                        },
                    }
                ],
            ),
            set_at(C + "volumeMounts", [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}]),
            resources(config_maps={"cm": {"a": "hello", "b": "no"}}),
        ),
        {
            "Volume.1.Type": "ConfigFileVolume",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Path": "x/a.conf",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64("hello"),
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode": 0o600,
            "Volume.1.ConfigFileVolume.ConfigFileToPath.2.Path": None,
            "Volume.1.ConfigFileVolume.DefaultModel": 0o444,
            "Container.1.VolumeMount.1.MountPath": "/etc/cfg",
            "Container.1.VolumeMount.1.ReadOnly": True,
        },
    ),
    (
        "secret volume",
        all_of(
            set_at("spec.volumes", [{"name": "s", "secret": {"secretName": "tls"}}]),
            resources(secrets={"tls": {"tls.crt": b"CERT"}}),
        ),
        {
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Path": "tls.crt",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64("CERT"),
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode": 0o644,
        },
    ),
    (
        "optional missing configMap volume",
        set_at("spec.volumes", [{"name": "o", "configMap": {"name": "gone", "optional": True}}]),
        {"Volume.1.Type": "EmptyDirVolume"},
    ),
    (
        "downwardAPI volume",
        set_at(
            "spec.volumes",
            [
                {
                    "name": "d",
                    "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
                }
            ],
        ),
        {"Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64('app="web"')},
    ),
    (
        "projected token",
        all_of(
            set_at(
                "spec.volumes",
                [
                    {
                        "name": "kube-api-access",
                        "projected": {
                            "sources": [
                                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                                {
                                    "configMap": {
                                        "name": "kube-root-ca.crt",
                                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                    }
                                },
                            ]
                        },
                    }
                ],
            ),
            resources(tokens={"kube-api-access/token": "jwt"}, config_maps={"kube-root-ca.crt": {"ca.crt": "CA"}}),
        ),
        {
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64("jwt"),
            "Volume.1.ConfigFileVolume.ConfigFileToPath.2.Path": "ca.crt",
        },
    ),
    (
        "emptyDir",
        set_at("spec.volumes", [{"name": "e", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]),
        {
            "Volume.1.Type": "EmptyDirVolume",
            "Volume.1.EmptyDirVolume.Medium": "Memory",
            "Volume.1.EmptyDirVolume.SizeLimit": "64Mi",
        },
    ),
    (
        "nfs",
        set_at("spec.volumes", [{"name": "n", "nfs": {"server": "nas.example", "path": "/share", "readOnly": True}}]),
        {"Volume.1.Type": "NFSVolume", "Volume.1.NFSVolume.Server": "nas.example", "Volume.1.NFSVolume.ReadOnly": True},
    ),
]


@pytest.mark.parametrize(("field", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_field(field: str, mutate: Mut, expected: dict[str, Any]) -> None:
    """Each volume type appears under its wire names (None = must be absent)."""
    check_fields(mutate, expected)


ERRORS: list[tuple[str, Mut, type[ProviderError], str]] = [
    ("hostPath", set_at("spec.volumes", [{"name": "host", "hostPath": {"path": "/var"}}]), NotSupported, "volume host"),
    (
        "pvc",
        set_at("spec.volumes", [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]),
        NotSupported,
        "volume data",
    ),
    (
        "mandatory secret volume",
        set_at("spec.volumes", [{"name": "s", "secret": {"secretName": "nope"}}]),
        TransientError,
        "secret 'nope' not found",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "exc", "text"), ERRORS, ids=[e[0] for e in ERRORS])
def test_refusals(case: str, mutate: Mut, exc: type[ProviderError], text: str) -> None:
    """Unsupported volume types and missing mandatory sources are refused with a typed error naming the volume."""
    check_refusal(mutate, exc, text)
