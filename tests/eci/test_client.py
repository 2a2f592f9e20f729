"""ECIClient: the real SDK against a scripted local endpoint — retries, error mapping, rate limit."""

from __future__ import annotations

import json
import time

import pytest

from tests.eci.conftest import FakeECI, error, make_settings
from vk_provider.eci.client import ECIClient, encode_value, error_code
from vk_provider.errors import NotFound, PermanentError, TransientError
from vk_provider.metrics import ECI_CALLS, ECI_RETRIES


def _sample(metric: object, **labels: str) -> float:
    return float(metric.labels(**labels)._value.get())  # type: ignore[attr-defined]


async def test_throttling_is_retried_until_success(fake_eci: FakeECI) -> None:
    """Throttling.User twice, then success: the call succeeds after exactly three attempts and counts two retries."""
    fake_eci.script("DescribeRegions", error("Throttling.User"), error("Throttling.User"), (200, {"Regions": {}}))
    before = _sample(ECI_RETRIES, action="DescribeRegions", code="Throttling.User")
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        data = await client.call("DescribeRegions", {})
    finally:
        await client.close()
    assert data["Regions"] == {}
    assert fake_eci.actions() == ["DescribeRegions"] * 3
    assert _sample(ECI_RETRIES, action="DescribeRegions", code="Throttling.User") - before == 2


async def test_5xx_gives_up_after_max_retries(fake_eci: FakeECI) -> None:
    """A persistent 503 ServiceUnavailable is retried max_retries times, then raised as TransientError."""
    fake_eci.script("DescribeRegions", error("ServiceUnavailable", "down", 503))
    client = ECIClient(make_settings(fake_eci.endpoint, max_retries=2))
    try:
        with pytest.raises(TransientError) as info:
            await client.call("DescribeRegions", {})
    finally:
        await client.close()
    assert len(fake_eci.calls) == 3
    assert "ServiceUnavailable" in info.value.message
    assert error_code(info.value) == "ServiceUnavailable"


async def test_invalid_parameter_is_permanent_and_not_retried(fake_eci: FakeECI) -> None:
    """InvalidParameter is a PermanentError carrying the service's message, after a single attempt."""
    fake_eci.script("CreateContainerGroup", error("InvalidParameter", "The specified parameter Cpu is not valid"))
    before = _sample(ECI_CALLS, action="CreateContainerGroup", result="InvalidParameter")
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        with pytest.raises(PermanentError) as info:
            await client.call("CreateContainerGroup", {"ImageRegistryCredential.1.Password": "hunter2-secret"})
    finally:
        await client.close()
    assert len(fake_eci.calls) == 1
    assert "The specified parameter Cpu is not valid" in info.value.message
    assert "hunter2-secret" not in info.value.message
    assert _sample(ECI_CALLS, action="CreateContainerGroup", result="InvalidParameter") - before == 1


async def test_not_found_code_maps_to_not_found(fake_eci: FakeECI) -> None:
    """InvalidContainerGroup.NotFound (404) becomes NotFound without retries."""
    fake_eci.script("DeleteContainerGroup", error("InvalidContainerGroup.NotFound", "no such group", 404))
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        with pytest.raises(NotFound):
            await client.call("DeleteContainerGroup", {"ContainerGroupId": "eci-1"})
    finally:
        await client.close()
    assert len(fake_eci.calls) == 1


async def test_connection_refused_is_transient() -> None:
    """An endpoint nobody listens on gives TransientError after the retries, not an SDK exception."""
    client = ECIClient(make_settings("http://127.0.0.1:9", max_retries=1))
    try:
        with pytest.raises(TransientError) as info:
            await client.call("DescribeRegions", {})
    finally:
        await client.close()
    assert info.value.reason == "ECIUnavailable"


async def test_read_timeout_is_retried(fake_eci: FakeECI) -> None:
    """A response slower than read_timeout is abandoned and the call retried; the retry succeeds."""
    fake_eci.script("DescribeRegions", (200, {"ok": 1}))
    fake_eci.delay["DescribeRegions"] = 1.5
    client = ECIClient(make_settings(fake_eci.endpoint, read_timeout_seconds=0.3))
    try:
        data = await client.call("DescribeRegions", {})
    finally:
        await client.close()
    assert data["ok"] == 1
    assert len(fake_eci.calls) == 2


async def test_parameters_are_encoded_for_the_wire(fake_eci: FakeECI) -> None:
    """Booleans go out lower-case, lists as JSON arrays, and the SDK's own signing parameters are present."""
    fake_eci.script("ExecContainerCommand", (200, {"WebSocketUri": "ws://x"}))
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        await client.call("ExecContainerCommand", {"Command": ["sh", "-c", "echo hi"], "TTY": False, "Cpu": 0.5})
    finally:
        await client.close()
    _, params = fake_eci.calls[0]
    assert json.loads(params["Command"]) == ["sh", "-c", "echo hi"]
    assert params["TTY"] == "false"
    assert params["Cpu"] == "0.5"
    assert params["AccessKeyId"] == "test-id"
    assert params["SignatureMethod"] == "HMAC-SHA1" and params["Signature"]
    assert "test-secret" not in json.dumps(params)


async def test_rate_limiter_spaces_calls(fake_eci: FakeECI) -> None:
    """With 20 qps and burst 1, six calls take at least a quarter of a second."""
    fake_eci.script("DescribeRegions", (200, {}))
    client = ECIClient(make_settings(fake_eci.endpoint, rate_limit_qps=20, rate_limit_burst=1))
    started = time.monotonic()
    try:
        for _ in range(6):
            await client.call("DescribeRegions", {})
    finally:
        await client.close()
    assert time.monotonic() - started >= 0.24


def test_encode_value() -> None:
    """encode_value: bool -> true/false, list -> compact JSON, numbers as str()."""
    assert encode_value(True) == "true"
    assert encode_value(["a", "b"]) == '["a","b"]'
    assert encode_value(2.0) == "2.0"
    assert encode_value(3) == "3"


async def test_closed_client_refuses_calls(fake_eci: FakeECI) -> None:
    """After close(), a call fails fast with TransientError instead of touching the thread pool."""
    client = ECIClient(make_settings(fake_eci.endpoint))
    await client.close()
    with pytest.raises(TransientError):
        await client.call("DescribeRegions", {})
    assert fake_eci.calls == []


async def test_no_secret_in_logs_or_errors(fake_eci: FakeECI) -> None:
    """A create with a registry password that is throttled then refused logs and raises nothing secret."""
    from structlog.testing import capture_logs

    fake_eci.script("CreateContainerGroup", error("Throttling"), error("InvalidParameter", "bad Cpu"))
    client = ECIClient(make_settings(fake_eci.endpoint))
    with capture_logs() as logs:
        try:
            with pytest.raises(PermanentError) as info:
                await client.call("CreateContainerGroup", {"ImageRegistryCredential.1.Password": "hunter2-secret"})
        finally:
            await client.close()
    assert logs, "the retry is logged"
    text = repr(logs) + info.value.message
    assert "hunter2-secret" not in text and "test-secret" not in text


@pytest.mark.parametrize("code", ["InvalidAccessKeyId.NotFound", "InvalidAction.NotFound"])
async def test_other_not_found_codes_are_permanent(fake_eci: FakeECI, code: str) -> None:
    """A bad AccessKey or unknown action (404 too) is a PermanentError, never NotFound ("group gone")."""
    fake_eci.script("DeleteContainerGroup", error(code, "nope", 404))
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        with pytest.raises(PermanentError):
            await client.call("DeleteContainerGroup", {"ContainerGroupId": "eci-1"})
    finally:
        await client.close()
