"""The control loop: workers keep going through failures, with backoff and a warning after max_retries."""

from __future__ import annotations

import asyncio

from tests.pods.fakes import make_pod
from tests.pods.harness import Env
from vk_provider.errors import TransientError


async def test_transient_error_is_retried_and_warned_after_max_retries() -> None:
    """Transient failures requeue with backoff; after max_retries a ReconcileRetrying Warning says so."""
    env = Env(max_retries=2, workers=1)
    await env.ready()
    env.provider.fail["create"] = [TransientError("503"), TransientError("503")]
    env.add(make_pod("web"))
    worker = asyncio.create_task(env.ctl.run_worker())
    try:
        async with asyncio.timeout(5):
            while env.provider.actions("create") != ["uid-web"] * 3:
                await asyncio.sleep(0.01)
            while "ReconcileRetrying" not in env.kube.reasons():
                await asyncio.sleep(0.01)
    finally:
        await env.ctl.drain()
        await worker
    assert "uid-web" in env.provider.groups


async def test_one_worker_survives_many_failures() -> None:
    """A single worker keeps going through repeated Requeue and plain errors (missing ConfigMap, then a crash)."""
    env = Env(workers=1)
    await env.ready()
    env_ref = [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]
    env.add(make_pod("a", containers=[{"name": "main", "image": "busybox", "env": env_ref}]))
    env.provider.fail["create"] = [RuntimeError("unexpected"), RuntimeError("unexpected")]
    env.add(make_pod("b"))
    worker = asyncio.create_task(env.ctl.run_worker())
    try:
        async with asyncio.timeout(5):
            while env.kube.reasons().count("MandatoryConfigMapNotFound") < 1 or "uid-b" not in env.provider.groups:
                assert not worker.done(), worker
                await asyncio.sleep(0.01)
            env.kube.put("/api/v1/namespaces/default/configmaps/cfg", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
            while "uid-a" not in env.provider.groups:
                assert not worker.done(), worker
                await asyncio.sleep(0.01)
    finally:
        await env.ctl.drain()
        await worker
