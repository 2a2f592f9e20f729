"""ConfigMaps and Secrets end to end: the kubelet's missing-reference events, and values inside the container."""

from __future__ import annotations

import base64
import hashlib
import random
import string

import pytest

from tests.e2e.conftest import StackFactory, phase_is, running_ready

pytestmark = pytest.mark.e2e


def env_pod(name: str, ref: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "env": [{"name": "X", "valueFrom": ref}],
                }
            ]
        },
    }


async def test_optional_missing_references_start_the_pod(make_stack: StackFactory) -> None:
    """Optional missing ConfigMap and Secret: Optional*NotFound events, and the pod runs anyway."""
    stack = await make_stack()
    await stack.create_pod(env_pod("cm", {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}))
    await stack.create_pod(env_pod("sec", {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}))
    await stack.wait_event("cm", "OptionalConfigMapNotFound")
    await stack.wait_event("sec", "OptionalSecretNotFound")
    await stack.wait_pod("cm", running_ready, timeout=20)
    await stack.wait_pod("sec", running_ready, timeout=20)


async def test_mandatory_missing_references_block_until_created(make_stack: StackFactory) -> None:
    """Required missing ConfigMap/Secret: Mandatory*NotFound, no group; once created the pod starts."""
    stack = await make_stack()
    await stack.create_pod(env_pod("cm", {"configMapKeyRef": {"name": "later", "key": "k"}}))
    await stack.create_pod(env_pod("sec", {"secretKeyRef": {"name": "later", "key": "k"}}))
    await stack.wait_event("cm", "MandatoryConfigMapNotFound")
    await stack.wait_event("sec", "MandatorySecretNotFound")
    assert stack.daemon is not None
    assert await stack.daemon.provider.backend_pods() == []
    pod = await stack.pod("cm")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    await stack.create(
        f"/api/v1/namespaces/{stack.namespace}/configmaps", {"metadata": {"name": "later"}, "data": {"k": "v"}}
    )
    data = {"k": base64.b64encode(b"v").decode()}
    await stack.create(f"/api/v1/namespaces/{stack.namespace}/secrets", {"metadata": {"name": "later"}, "data": data})
    await stack.wait_pod("cm", running_ready, timeout=30)
    await stack.wait_pod("sec", running_ready, timeout=30)


@pytest.mark.kubelet_proxy
async def test_config_map_env_and_secret_volume_visible_in_the_container(make_stack: StackFactory) -> None:
    """A configMap env var and a secret volume file are what the container prints in its log."""
    stack = await make_stack(runtime="process")
    await stack.create(
        f"/api/v1/namespaces/{stack.namespace}/configmaps",
        {"metadata": {"name": "app"}, "data": {"greeting": "hello-from-cm"}},
    )
    secret = {"password": base64.b64encode(b"s3cret-from-secret").decode()}
    await stack.create(f"/api/v1/namespaces/{stack.namespace}/secrets", {"metadata": {"name": "db"}, "data": secret})
    await stack.create_pod(
        {
            "metadata": {"name": "show"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", 'echo "GREETING=$GREETING"; cat /etc/db/password; echo'],
                        "env": [
                            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}}
                        ],
                        "volumeMounts": [{"name": "db", "mountPath": "/etc/db"}],
                    }
                ],
                "volumes": [{"name": "db", "secret": {"secretName": "db"}}],
            },
        }
    )
    await stack.wait_pod("show", phase_is("Succeeded"), timeout=30)
    log = await stack.logs("show")
    assert "GREETING=hello-from-cm" in log
    assert "s3cret-from-secret" in log


def _text(size: int, seed: int) -> str:
    """Printable text of ``size`` bytes that differs from line to line (so a truncated or reordered copy shows)."""
    rng = random.Random(seed)
    line = string.ascii_letters + string.digits + " =:#/.-_"
    out = []
    while sum(map(len, out)) < size:
        out.append("".join(rng.choice(line) for _ in range(79)) + "\n")
    return "".join(out)[:size]


@pytest.mark.kubelet_proxy
async def test_a_pod_with_large_configuration_runs_and_sees_it_byte_for_byte(make_stack: StackFactory) -> None:
    """Two 30 KiB config files (60 KiB: ECI's per-volume limit), a 30 KiB binary Secret and 300 variables:
    far past what a URL carries (the request is sent as a POST body), and every byte arrives."""
    stack = await make_stack(runtime="process")
    files = {"a.conf": _text(30 * 1024, 1), "b.conf": _text(30 * 1024, 2)}
    blob = random.Random(3).randbytes(30 * 1024)
    await stack.create(
        f"/api/v1/namespaces/{stack.namespace}/configmaps", {"metadata": {"name": "bigconf"}, "data": files}
    )
    secret = {"metadata": {"name": "blob"}, "data": {"blob.bin": base64.b64encode(blob).decode()}}
    await stack.create(f"/api/v1/namespaces/{stack.namespace}/secrets", secret)
    env = [{"name": f"VAR_{i}", "value": f"{i}-" + "v" * 90} for i in range(300)]
    await stack.create_pod(
        {
            "metadata": {"name": "big"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", "sha256sum /etc/conf/*.conf /etc/sec/blob.bin; env | grep -c '^VAR_'"],
                        "env": env,
                        "volumeMounts": [
                            {"name": "conf", "mountPath": "/etc/conf"},
                            {"name": "sec", "mountPath": "/etc/sec"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "conf", "configMap": {"name": "bigconf"}},
                    {"name": "sec", "secret": {"secretName": "blob"}},
                ],
            },
        }
    )
    await stack.wait_pod("big", phase_is("Succeeded"), timeout=30)
    log = await stack.logs("big")
    for name, text in files.items():
        assert f"{hashlib.sha256(text.encode()).hexdigest()}  /etc/conf/{name}" in log
    assert f"{hashlib.sha256(blob).hexdigest()}  /etc/sec/blob.bin" in log
    assert log.strip().endswith("300")


@pytest.mark.simulator
async def test_a_configuration_over_ecis_limit_fails_clearly_before_any_call(make_stack: StackFactory) -> None:
    """A 200 KiB ConfigMap file is over ECI's 32 KiB per file: ConfigTooLarge with the names and numbers,
    no CreateContainerGroup sent, and no byte of the content in the event or the status."""
    stack = await make_stack()
    content = _text(200 * 1024, 4)
    await stack.create(
        f"/api/v1/namespaces/{stack.namespace}/configmaps",
        {"metadata": {"name": "huge"}, "data": {"app.conf": content}},
    )
    await stack.create_pod(
        {
            "metadata": {"name": "huge"},
            "spec": {
                "containers": [
                    {"name": "main", "image": "busybox", "volumeMounts": [{"name": "c", "mountPath": "/etc/app"}]}
                ],
                "volumes": [{"name": "c", "configMap": {"name": "huge"}}],
            },
        }
    )
    pod = await stack.wait_pod("huge", phase_is("Failed"), timeout=30)
    assert pod is not None
    status = pod["status"]
    assert status["reason"] == "ConfigTooLarge"
    assert 'volume "c" (ConfigMap huge): file app.conf is 200.0 KiB' in status["message"]
    event = await stack.wait_event("huge", "ProviderCreateFailed", contains="ConfigTooLarge")
    assert "32.0 KiB per file" in event["message"]
    assert content[:40] not in status["message"] + event["message"]
    assert stack.sim.calls.get("CreateContainerGroup", 0) == 0
