"""pull_secrets.py: imagePullSecrets become registry credentials on the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.eci.translation import DOCKER, Mut, all_of, b64, check_fields, resources, set_at

CASES: list[tuple[str, Mut, dict[str, Any]]] = [
    (
        "imagePullSecrets",
        all_of(
            set_at("spec.imagePullSecrets", [{"name": "reg"}]),
            resources(secrets={"reg": {".dockerconfigjson": DOCKER}}),
        ),
        {
            "ImageRegistryCredential.1.Server": "registry.example.com",
            "ImageRegistryCredential.1.UserName": "u",
            "ImageRegistryCredential.1.Password": "p4ss",
        },
    ),
    (
        "dockercfg auth",
        all_of(
            set_at("spec.imagePullSecrets", [{"name": "old"}]),
            resources(secrets={"old": {".dockercfg": json.dumps({"r.io": {"auth": b64("me:pw")}}).encode()}}),
        ),
        {"ImageRegistryCredential.1.UserName": "me", "ImageRegistryCredential.1.Password": "pw"},
    ),
]


@pytest.mark.parametrize(("field", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_field(field: str, mutate: Mut, expected: dict[str, Any]) -> None:
    """Each docker config form becomes an ImageRegistryCredential (None = must be absent)."""
    check_fields(mutate, expected)
