"""virtual-kubelet's own e2e cases: a pod becomes Ready with a podIP; graceful and force delete."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.conftest import NODE, Stack, StackFactory, phase_is, running_ready
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def sleeper(name: str, **spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}], **spec},
    }


async def groups_of(stack: Stack) -> list[str]:
    assert stack.daemon is not None
    return [bp.group_id for bp in await stack.daemon.provider.backend_pods()]


async def no_groups(stack: Stack) -> bool:
    return not await groups_of(stack)


async def test_pod_becomes_ready_with_a_pod_ip(make_stack: StackFactory) -> None:
    """A pod bound to the virtual node runs as one group and reports Running, Ready=True and a podIP."""
    stack = await make_stack()
    node = await stack.kube.get(f"/api/v1/nodes/{NODE}")
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    await stack.create_pod(sleeper("web"))
    pod = await stack.wait_pod("web", running_ready, timeout=20)
    assert pod is not None
    assert pod["status"]["podIP"]
    assert pod["status"]["containerStatuses"][0]["state"].get("running")
    await stack.wait_event("web", "ProviderCreateSuccess")
    assert len(await groups_of(stack)) == 1
    lease = await stack.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
    assert lease["spec"]["holderIdentity"] == NODE


async def test_graceful_delete_removes_group_then_pod(make_stack: StackFactory) -> None:
    """A graceful delete deletes the group, then the pod object disappears (grace 0 + UID precondition)."""
    stack = await make_stack()
    await stack.create_pod(sleeper("web", terminationGracePeriodSeconds=5))
    await stack.wait_pod("web", running_ready, timeout=20)
    await stack.delete_pod("web")
    await stack.wait_pod("web", lambda p: p is None, timeout=30)
    await eventually(lambda: no_groups(stack), timeout=20, interval=0.2, what="the group to be deleted")


async def test_force_delete_still_deletes_the_group(make_stack: StackFactory) -> None:
    """A force delete (grace 0) removes the pod at once; the daemon still deletes its group."""
    stack = await make_stack()
    await stack.create_pod(sleeper("web"))
    await stack.wait_pod("web", running_ready, timeout=20)
    assert len(await groups_of(stack)) == 1
    await stack.delete_pod("web", grace=0)
    await stack.wait_pod("web", lambda p: p is None, timeout=10)
    await eventually(lambda: no_groups(stack), timeout=20, interval=0.2, what="the group to be deleted")


async def test_translation_warning_becomes_an_event(make_stack: StackFactory) -> None:
    """A startupProbe (which ECI lacks) gives a Warning event naming it, and the pod still runs."""
    stack = await make_stack()
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    pod = sleeper("web")
    pod["spec"]["containers"][0]["startupProbe"] = probe  # type: ignore[index]
    await stack.create_pod(pod)
    await stack.wait_pod("web", running_ready, timeout=20)
    ev = await stack.wait_event("web", "NotSupported", contains="startup")
    assert ev["type"] == "Warning"


async def test_metrics_and_health_endpoints(make_stack: StackFactory) -> None:
    """The plain-HTTP port serves Prometheus metrics (pods by phase), /healthz and /readyz."""
    stack = await make_stack()
    assert stack.daemon is not None
    await stack.create_pod(sleeper("web"))
    await stack.wait_pod("web", running_ready, timeout=20)
    base = stack.daemon.metrics_url.rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.daemon.metrics_url) as r:
            text = await r.text()
        assert r.status == 200
        assert 'vk_pods{phase="Running"}' in text and "vk_node_ready 1.0" in text
        for path in ("/healthz", "/readyz"):
            async with http.get(base + path) as r:
                assert r.status == 200, path


async def test_unsupported_volume_fails_fast_with_an_event(make_stack: StackFactory) -> None:
    """A hostPath volume cannot run on ECI: the pod goes Failed at once and the event names the volume."""
    stack = await make_stack()
    pod = sleeper("host", volumes=[{"name": "hostdir", "hostPath": {"path": "/var/log"}}])
    await stack.create_pod(pod)
    failed = await stack.wait_pod("host", phase_is("Failed"), timeout=20)
    assert failed is not None and "hostdir" in failed["status"]["message"]
    ev = await stack.wait_event("host", "ProviderCreateFailed")
    assert ev["type"] == "Warning" and "hostdir" in ev["message"]
    assert stack.daemon is not None and await stack.daemon.provider.backend_pods() == []
