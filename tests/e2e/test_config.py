"""ConfigMaps and Secrets end to end: the kubelet's missing-reference events, and values inside the container."""

from __future__ import annotations

import base64

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
    assert await stack.daemon.provider.list_pods() == []
    pod = await stack.pod("cm")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    await stack.create("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "later"}, "data": {"k": "v"}})
    data = {"k": base64.b64encode(b"v").decode()}
    await stack.create("/api/v1/namespaces/default/secrets", {"metadata": {"name": "later"}, "data": data})
    await stack.wait_pod("cm", running_ready, timeout=30)
    await stack.wait_pod("sec", running_ready, timeout=30)


async def test_config_map_env_and_secret_volume_visible_in_the_container(make_stack: StackFactory) -> None:
    """A configMap env var and a secret volume file are what the container prints in its log."""
    stack = await make_stack(runtime="process")
    await stack.create(
        "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "app"}, "data": {"greeting": "hello-from-cm"}}
    )
    secret = {"password": base64.b64encode(b"s3cret-from-secret").decode()}
    await stack.create("/api/v1/namespaces/default/secrets", {"metadata": {"name": "db"}, "data": secret})
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
