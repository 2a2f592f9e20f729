"""pods/shared_reads.py: one GET serves every caller it is fresh enough for (sent after the caller's
``not_before``), in flight or answered; never a read sent before it; failures and cancellations are not kept."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.kube.fakes import FakeKube
from tests.waiting import eventually
from vk_provider.kube.client import KubeError
from vk_provider.pods.shared_reads import SharedReads

PATH = "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"


class GatedKube(FakeKube):
    """FakeKube whose GETs wait for ``gate`` (so reads overlap), and fail with ``fail`` when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.fail: Exception | None = None
        self.started = 0
        self.put(PATH, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "v1"}})

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if method == "GET":
            self.started += 1
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            return await super().request(method, path, **kw)
        return await super().request(method, path, **kw)

    def gets(self) -> int:
        return self.started


def value(obj: dict[str, Any] | None) -> str:
    assert obj is not None
    return str(obj["data"]["ca.crt"])


async def test_concurrent_reads_share_one_get() -> None:
    """Twenty pods seen before the read: one GET in flight serves all of them."""
    kube = GatedKube()
    reads = SharedReads(kube)  # type: ignore[arg-type]
    seen = time.monotonic()
    waiting = [asyncio.ensure_future(reads.get(PATH, not_before=seen)) for _ in range(20)]
    await eventually(lambda: kube.gets() == 1, timeout=5, what="the first GET")
    kube.gate.set()
    assert [value(v) for v in await asyncio.gather(*waiting)] == ["v1"] * 20
    assert await reads.get(PATH, not_before=seen) is not None  # answered, still fresh enough for them
    assert kube.gets() == 1


async def test_a_pod_seen_after_a_read_gets_a_new_read() -> None:
    """The object changes, then a pod is seen: the read kept from before is not fresh enough for it."""
    kube = GatedKube()
    kube.gate.set()
    reads = SharedReads(kube)  # type: ignore[arg-type]
    assert value(await reads.get(PATH, not_before=time.monotonic())) == "v1"
    kube.objects[PATH]["data"]["ca.crt"] = "v2"
    seen = time.monotonic()
    assert value(await reads.get(PATH, not_before=seen)) == "v2"
    assert kube.gets() == 2
    assert value(await reads.get(PATH, not_before=seen)) == "v2"  # the new read serves it again
    assert kube.gets() == 2


async def test_a_read_in_flight_sent_before_the_pod_was_seen_is_not_joined() -> None:
    kube = GatedKube()
    reads = SharedReads(kube)  # type: ignore[arg-type]
    first = asyncio.ensure_future(reads.get(PATH, not_before=time.monotonic()))
    await eventually(lambda: kube.gets() == 1, timeout=5, what="the first GET")
    later = asyncio.ensure_future(reads.get(PATH, not_before=time.monotonic()))
    await eventually(lambda: kube.gets() == 2, timeout=5, what="a GET of its own")
    kube.gate.set()
    await asyncio.gather(first, later)


async def test_a_failure_is_shared_with_those_waiting_and_kept_by_nobody() -> None:
    kube = GatedKube()
    kube.fail = KubeError(500, "InternalError", "etcd is sad")
    reads = SharedReads(kube)  # type: ignore[arg-type]
    seen = time.monotonic()
    waiting = [asyncio.ensure_future(reads.get(PATH, not_before=seen)) for _ in range(3)]
    await eventually(lambda: kube.gets() == 1, timeout=5, what="the first GET")
    kube.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, KubeError) for r in results) and kube.gets() == 1
    kube.fail = None
    assert value(await reads.get(PATH, not_before=seen)) == "v1"
    assert kube.gets() == 2


async def test_the_sender_cancelled_leaves_the_others_to_read_again() -> None:
    kube = GatedKube()
    reads = SharedReads(kube)  # type: ignore[arg-type]
    seen = time.monotonic()
    sender = asyncio.ensure_future(reads.get(PATH, not_before=seen))
    await eventually(lambda: kube.gets() == 1, timeout=5, what="the first GET")
    joined = asyncio.ensure_future(reads.get(PATH, not_before=seen))
    await asyncio.sleep(0)
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    await eventually(lambda: kube.gets() == 2, timeout=5, what="the joiner's own GET")
    kube.gate.set()
    assert value(await joined) == "v1"


async def test_missing_objects_are_shared_and_reads_are_dropped_after_retain() -> None:
    kube = GatedKube()
    kube.gate.set()
    reads = SharedReads(kube, retain=0.05)  # type: ignore[arg-type]
    seen = time.monotonic()
    gone = "/api/v1/namespaces/default/secrets/nope"
    assert await reads.get(gone, not_before=seen) is None
    assert await reads.get(gone, not_before=seen) is None
    assert kube.gets() == 1 and len(reads) == 1
    await eventually(lambda: len(reads) == 0, timeout=5, what="the read dropped")
    assert await reads.get(gone, not_before=seen) is None
    assert kube.gets() == 2
