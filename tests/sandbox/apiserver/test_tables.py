"""Server-side Tables: durations and the pod STATUS column as kubectl computes them."""

from __future__ import annotations

import pytest

from vk_sandbox.apiserver.resources import RESOURCES
from vk_sandbox.apiserver.tables import human_duration, pod_status, table


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (10 * 3600, "10h"),
        (3 * 86400, "3d"),
        (3 * 86400 + 3600, "3d1h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    """AGE values use apimachinery's short human durations."""
    assert human_duration(seconds) == text


def test_pod_status_column() -> None:
    """Waiting reasons, init progress, Completed and Terminating show as kubectl shows them."""
    base = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    waiting = {
        **base,
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "c", "restartCount": 1, "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ],
        },
    }
    assert pod_status(waiting) == ("ImagePullBackOff", 0, 1, 1)
    init = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}], "initContainers": [{"name": "i"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}]},
    }
    assert pod_status(init)[0] == "Init:0/1"
    done = {
        **base,
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        },
    }
    assert pod_status(done)[0] == "Completed"
    deleting = {
        **base,
        "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"phase": "Running"},
    }
    assert pod_status(deleting)[0] == "Terminating"


def test_watch_tables_carry_headers_only_first() -> None:
    """A Table has its column definitions unless asked not to (later watch events), and rows carry metadata."""
    pod = {
        "metadata": {"name": "p", "namespace": "d", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Pending"},
    }
    first = table(RESOURCES["pods"], [pod], rv="5")
    later = table(RESOURCES["pods"], [pod], rv="6", headers=False)
    assert [c["name"] for c in first["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert later["columnDefinitions"] == []
    assert first["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert first["rows"][0]["object"]["metadata"]["namespace"] == "d"
