"""manifests/rbac.yaml's ClusterRole grants exactly vk_provider.permissions.REQUIRED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vk_provider.permissions import REQUIRED

RBAC = Path(__file__).resolve().parents[1] / "manifests" / "rbac.yaml"


def _granted() -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    role: dict[str, Any] = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "vk-eci")
    out: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule, "doctor's access reviews ask without resource names"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def test_cluster_role_grants_exactly_the_required_permissions() -> None:
    required = {(p.group, p.full_resource, p.verb) for p in REQUIRED}
    granted = _granted()
    assert required - granted == set(), "the ClusterRole misses permissions the daemon needs"
    assert granted - required == set(), "the ClusterRole grants more than the daemon needs (least privilege)"


def test_no_permission_is_listed_twice() -> None:
    assert len(set(REQUIRED)) == len(REQUIRED)


def test_permission_text_names_verb_and_resource() -> None:
    assert {str(p) for p in REQUIRED} >= {"list services", "patch nodes/status", "create leases.coordination.k8s.io"}
