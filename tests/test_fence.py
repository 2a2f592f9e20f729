"""The write fence: a deadline, and the two writers that consult it (KubeAPI, ECIClient)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from vk_provider.eci.client import ECIClient, changes_something
from vk_provider.fence import Fence, NotLeader
from vk_provider.kube.client import KubeAPI
from vk_provider.metrics import REGISTRY
from vk_provider.settings import ECISettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fence_starts_closed_and_closes_by_itself_at_the_deadline() -> None:
    clock = Clock()
    fence = Fence(clock)
    assert not fence.allowed()
    fence.grant(110.0)
    assert fence.allowed() and fence.remaining() == 10.0
    clock.now = 110.0  # e.g. the process was stopped until past the deadline: nothing had to run
    assert not fence.allowed()
    with pytest.raises(NotLeader):
        fence.check("kube", "PATCH /api/v1/nodes/x")
    fence.open()
    assert fence.allowed()
    fence.revoke()
    assert not fence.allowed()


def test_only_reads_and_exec_pass_a_closed_fence() -> None:
    for action in ("CreateContainerGroup", "DeleteContainerGroup", "UpdateContainerGroup", "RestartContainerGroup"):
        assert changes_something(action)
    for action in ("DescribeContainerGroups", "DescribeContainerGroupStatus", "ListUsage", "ExecContainerCommand"):
        assert not changes_something(action)


class _Api:
    """The ApiClient under KubeAPI (its auth, and its session as the transport): records what would have
    been sent."""

    default_headers: dict[str, str] = {}
    cookie = None

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.configuration = SimpleNamespace(host="https://api")
        self.rest_client = SimpleNamespace(server_hostname=None, pool_manager=self)

    async def update_params_for_auth(self, headers: dict[str, str], *_: Any) -> None:
        headers["Authorization"] = "Bearer t"

    async def request(self, method: str, url: str, **_: Any) -> Any:
        self.sent.append(f"{method} {url.removeprefix(self.configuration.host)}")
        raise AssertionError("only reads may reach the transport in this test")


async def test_kube_writes_are_refused_before_anything_is_sent() -> None:
    api = _Api()
    kube = KubeAPI(api, write_gate=Fence().check)  # type: ignore[arg-type]
    before = REGISTRY.get_sample_value("vk_fenced_writes_total", {"target": "kube"}) or 0.0
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(NotLeader):
            await kube.request(method, "/api/v1/namespaces/default/pods/p/status", body={})
    assert api.sent == []
    assert REGISTRY.get_sample_value("vk_fenced_writes_total", {"target": "kube"}) == before + 4
    with pytest.raises(AssertionError):  # a read goes through
        await kube.get("/api/v1/nodes")
    assert api.sent == ["GET /api/v1/nodes"]


async def test_eci_changing_actions_are_refused_without_a_call_or_a_retry() -> None:
    client = ECIClient(ECISettings(access_key_id="a", endpoint="http://127.0.0.1:9"), fence=Fence())
    sent: list[str] = []
    client._do = lambda action, params: sent.append(action) or b"{}"  # type: ignore[method-assign,func-returns-value]
    try:
        before = REGISTRY.get_sample_value("vk_eci_calls_total", {"action": "CreateContainerGroup", "result": "ok"})
        with pytest.raises(NotLeader):
            await client.call("CreateContainerGroup", {"ClientToken": "t"})
        assert sent == []
        after = REGISTRY.get_sample_value("vk_eci_calls_total", {"action": "CreateContainerGroup", "result": "ok"})
        assert after == before
        assert await client.call("DescribeContainerGroups", {}) == {}
        assert sent == ["DescribeContainerGroups"]
    finally:
        await client.close()
