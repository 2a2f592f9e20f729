"""ECIClient: the real SDK against a scripted local endpoint — retries, error mapping, rate limit."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.auth.credentials import AccessKeyCredential, EcsRamRoleCredential, StsTokenCredential
from aliyunsdkcore.auth.signers.access_key_signer import AccessKeySigner
from aliyunsdkcore.auth.signers.ecs_ram_role_signer import EcsRamRoleSigner
from aliyunsdkcore.auth.signers.sts_token_signer import StsTokenSigner
from pydantic import SecretStr

from tests.eci.conftest import FakeECI, error, make_settings
from vk_provider.eci.client import ECIClient, credential_for, encode_value, error_code, map_sdk_error
from vk_provider.eci.ratelimit import per_minute_bucket
from vk_provider.errors import NotFound, PermanentError, TransientError
from vk_provider.metrics import ECI_CALLS, ECI_RETRIES
from vk_sandbox.eci.server import ECISimulator


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


async def test_every_call_is_a_post_with_its_parameters_in_the_body(fake_eci: FakeECI) -> None:
    """Action parameters travel in the signed form body, never in the URL: a 200 KB configuration fits."""
    fake_eci.script("CreateContainerGroup", (200, {"ContainerGroupId": "eci-1"}))
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": []}))
    big = base64.b64encode(b"x" * 150_000).decode()
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        await client.call("CreateContainerGroup", {"RegionId": "cn-hangzhou", "Volume.1.Content": big})
        await client.call("DescribeContainerGroups", {"RegionId": "cn-hangzhou", "Limit": 20})
    finally:
        await client.close()
    for method, query in fake_eci.wire:
        assert method == "POST"
        assert query["RegionId"] == "cn-hangzhou" and query["Signature"] and query["Action"]
        assert not {"Volume.1.Content", "Limit"} & query.keys()
    assert fake_eci.calls[0][1]["Volume.1.Content"] == big
    assert fake_eci.calls[1][1]["Limit"] == "20"


async def test_the_simulator_verifies_the_body_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    """The SDK's signature covers the form body: as sent it is accepted, one changed value is refused."""
    async with ECISimulator(directory=tmp_path / "eci", runtime="virtual") as sim:
        client = ECIClient(make_settings(sim.endpoint, region=sim.region))
        try:
            request = client._build("DescribeContainerGroups", {"RegionId": sim.region, "Limit": 5})
            url = sim.endpoint + request.get_url(sim.region, sim.access_key_id, sim.access_key_secret)
            body = request.get_body_params()
        finally:
            await client.close()
        assert request.get_method() == "POST" and body == {"Limit": "5"}
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data={"Limit": "6"}) as r:
                tampered = await r.json()
            async with session.post(url, data=body) as r:
                accepted = await r.json()
        assert tampered["Code"] == "SignatureDoesNotMatch"
        assert "ContainerGroups" in accepted


def test_service_messages_never_echo_the_request() -> None:
    """A string to sign, or a request line quoted by a gateway, carries every parameter: both are left out."""
    secret = "c2VjcmV0LXZhbHVl"
    to_sign = (
        "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&"
        f"AccessKeyId%3Dk%26Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content%3D{secret}"
    )
    assert (
        secret not in map_sdk_error("CreateContainerGroup", ServerException("SignatureDoesNotMatch", to_sign)).message
    )
    quoted = f"Got more than 8190 bytes when reading: bytearray(b'/?ContainerGroupName=a&Content={secret}')"
    err = map_sdk_error(
        "CreateContainerGroup", ClientException("SDK.UnknownServerError", "ServerResponseBody: " + quoted)
    )
    assert secret not in err.message and "ContainerGroupName" not in err.message
    assert "not an ECI response" in err.message
    plain = map_sdk_error("CreateContainerGroup", ServerException("InvalidParameter", "a=1&b=" + secret + " is wrong"))
    assert secret not in plain.message and plain.message.endswith("is wrong")


async def test_rate_limiter_spaces_calls(fake_eci: FakeECI) -> None:
    """With 20 qps and burst 1 for writes, six deletes take at least a quarter of a second."""
    fake_eci.script("DeleteContainerGroup", (200, {}))
    client = ECIClient(make_settings(fake_eci.endpoint, rate_limit_qps=20, rate_limit_burst=1))
    started = time.monotonic()
    try:
        for _ in range(6):
            await client.call("DeleteContainerGroup", {})
    finally:
        await client.close()
    assert time.monotonic() - started >= 0.24


async def test_rate_limits_are_per_action(fake_eci: FakeECI) -> None:
    """A create backlog on an empty write bucket does not hold up a status poll: each action has its bucket;
    a quota per minute lets a tenth of itself through at once, then spaces calls."""
    fake_eci.script("CreateContainerGroup", (200, {}))
    fake_eci.script("DescribeContainerGroupStatus", (200, {}))
    fake_eci.script("DescribeRegions", (200, {}))
    settings = make_settings(
        fake_eci.endpoint, rate_limit_qps=1, rate_limit_burst=1, rate_limits_per_minute={"*": 1200}
    )
    client = ECIClient(settings)
    try:
        creates = [asyncio.ensure_future(client.call("CreateContainerGroup", {})) for _ in range(3)]
        started = time.monotonic()
        await client.call("DescribeContainerGroupStatus", {})
        assert time.monotonic() - started < 0.9
        assert not all(c.done() for c in creates)
        for c in creates:
            c.cancel()
        started = time.monotonic()
        for _ in range(121):  # a burst of 120, then one more token at 1080/60 = 18/s
            await client.call("DescribeRegions", {})
        assert time.monotonic() - started >= 0.05
    finally:
        await client.close()


def test_per_minute_bucket_never_exceeds_the_quota() -> None:
    """Burst plus a minute of refill is the quota: no 60 s window holds more calls."""
    for quota in (1, 7, 200, 500, 2000):
        rate, burst = per_minute_bucket(quota)
        assert burst >= 1 and math.floor(burst + 60 * rate) <= quota


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


# --- credentials ----------------------------------------------------------------------------------------


def test_credential_for_each_way_to_sign() -> None:
    """An AccessKey pair, a pair with an STS token, or an ECS RAM role: the SDK's own credential objects."""
    pair = credential_for(make_settings("http://x"))
    assert isinstance(pair, AccessKeyCredential)
    assert (pair.access_key_id, pair.access_key_secret) == ("test-id", "test-secret")
    sts = credential_for(make_settings("http://x", access_key_id="STS.id", security_token=SecretStr("tok")))
    assert isinstance(sts, StsTokenCredential)
    assert (sts.sts_access_key_id, sts.sts_access_key_secret, sts.sts_token) == ("STS.id", "test-secret", "tok")
    role = credential_for(make_settings("http://x", access_key_id=None, access_key_secret=None, ram_role_name="r"))
    assert isinstance(role, EcsRamRoleCredential) and role.role_name == "r"


@pytest.mark.parametrize(
    ("overrides", "signer"),
    [
        ({}, AccessKeySigner),
        ({"security_token": SecretStr("tok")}, StsTokenSigner),
        ({"access_key_id": None, "access_key_secret": None, "ram_role_name": "worker-role"}, EcsRamRoleSigner),
    ],
)
async def test_the_sdk_signs_with_the_configured_credential(
    overrides: dict[str, Any], signer: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AcsClient picks the signer for the configured credential, with no request made to build it."""
    for var in ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(var, raising=False)
    client = ECIClient(make_settings("http://127.0.0.1:9", **overrides))
    try:
        acs_signer = client._acs._signer
        assert type(acs_signer) is signer
        if signer is EcsRamRoleSigner:
            assert acs_signer._credential.role_name == "worker-role"
    finally:
        await client.close()


async def test_sts_token_against_the_simulator(tmp_path: Path) -> None:
    """An STS pair and its token: the simulator checks the signature over every parameter, SecurityToken
    included, so the call succeeds only if the SDK sent the token and signed with the STS secret."""
    keys = {"STS.NUexample": "sts-secret"}
    async with ECISimulator(directory=tmp_path / "eci", runtime="virtual", access_keys=keys) as sim:
        good = make_settings(
            sim.endpoint,
            access_key_id="STS.NUexample",
            access_key_secret=SecretStr("sts-secret"),
            security_token=SecretStr("CAIS-token"),
            region=sim.region,
        )
        client = ECIClient(good)
        try:
            data = await client.call("DescribeContainerGroupStatus", {"Limit": 1})
        finally:
            await client.close()
        assert "Data" in data
        bad = good.model_copy(update={"access_key_secret": SecretStr("wrong")})
        client = ECIClient(bad)
        try:
            with pytest.raises(PermanentError) as info:
                await client.call("DescribeContainerGroupStatus", {"Limit": 1})
        finally:
            await client.close()
        assert error_code(info.value) == "SignatureDoesNotMatch"
        assert "CAIS-token" not in info.value.message and "sts-secret" not in info.value.message


async def test_sts_token_goes_on_the_wire(fake_eci: FakeECI) -> None:
    """The SDK adds SecurityToken to the signed parameters of every call."""
    fake_eci.script("DescribeRegions", (200, {}))
    client = ECIClient(make_settings(fake_eci.endpoint, security_token=SecretStr("CAIS-token")))
    try:
        await client.call("DescribeRegions", {})
    finally:
        await client.close()
    _, params = fake_eci.calls[0]
    assert params["SecurityToken"] == "CAIS-token" and params["AccessKeyId"] == "test-id"


async def test_security_token_is_masked_in_errors(fake_eci: FakeECI) -> None:
    """The gateway's SignatureDoesNotMatch echoes its string to sign, token included: left out of our error."""
    echoed = (
        "Specified signature is not matched with our calculation. server string to sign is:GET&%2F&"
        "AccessKeyId%3DSTS.x%26Action%3DDescribeRegions%26SecurityToken%3DCAIS%252Btok%252Fen%253D%253D"
        "%26SignatureMethod%3DHMAC-SHA1"
    )
    fake_eci.script("DescribeRegions", error("SignatureDoesNotMatch", echoed))
    client = ECIClient(make_settings(fake_eci.endpoint, security_token=SecretStr("CAIS+tok/en==")))
    try:
        with pytest.raises(PermanentError) as info:
            await client.call("DescribeRegions", {})
    finally:
        await client.close()
    msg = info.value.message
    assert "SignatureDoesNotMatch" in msg and "string to sign is: [not shown" in msg
    assert (
        "SecurityToken" not in msg
        and "AccessKeyId" not in msg
        and "CAIS" not in msg
        and "tok" not in msg.replace("Token", "")
    )


async def test_expired_security_token_is_retried_not_permanent(fake_eci: FakeECI) -> None:
    """An expired STS token must not fail pods for good: it is a TransientError (a RAM role's token renews)."""
    fake_eci.script(
        "CreateContainerGroup", error("InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
    )
    client = ECIClient(make_settings(fake_eci.endpoint, max_retries=1, security_token=SecretStr("tok")))
    try:
        with pytest.raises(TransientError) as info:
            await client.call("CreateContainerGroup", {})
    finally:
        await client.close()
    assert len(fake_eci.calls) == 2
    assert info.value.reason == "ECICredentials"
    assert error_code(info.value) == "InvalidSecurityToken.Expired"


def test_metadata_server_failure_is_transient_and_says_so() -> None:
    """The RAM role signer's urllib errors (no such role: 404) name the metadata server, and are retried."""
    url = "http://100.100.100.200/latest/meta-data/ram/security-credentials/nope"
    err = map_sdk_error("DescribeRegions", urllib.error.HTTPError(url, 404, "Not Found", Message(), None))
    assert isinstance(err, TransientError)
    assert error_code(err) == "MetadataUnavailable"
    assert "ECS metadata server" in err.message and "404" in err.message


class FakeMetadata:
    """The ECS metadata server, reached as an HTTP proxy: the SDK's signer asks http://100.100.100.200/...
    with urllib, which honours http_proxy, so a test can answer it on 127.0.0.1."""

    def __init__(self, role: str, creds: dict[str, str]) -> None:
        self.role, self.creds, self.asked = role, creds, []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append(str(request.url))
        if (
            request.url.host != "100.100.100.200"
            or request.path != f"/latest/meta-data/ram/security-credentials/{self.role}"
        ):
            return web.Response(status=404, text="Not Found")
        return web.json_response({"Code": "Success", "Expiration": "2099-01-01T00:00:00Z", **self.creds})


async def test_ecs_ram_role_end_to_end_through_a_fake_metadata_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With eci.ram_role_name the SDK fetches the role's STS credentials from the metadata server and signs
    with them; the simulator accepts the call only if the session key, secret and token are all right."""
    meta = FakeMetadata(
        "worker-role", {"AccessKeyId": "STS.role", "AccessKeySecret": "role-secret", "SecurityToken": "tok"}
    )
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", meta.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    for var in ("no_proxy", "NO_PROXY", "ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen builds its opener (and proxies) once
    try:
        async with ECISimulator(
            directory=tmp_path / "eci", runtime="virtual", access_keys={"STS.role": "role-secret"}
        ) as sim:
            settings = make_settings(
                sim.endpoint, access_key_id=None, access_key_secret=None, ram_role_name="worker-role", region=sim.region
            )
            client = ECIClient(settings)
            try:
                await client.call("DescribeContainerGroupStatus", {"Limit": 1})
                await client.call("DescribeContainerGroupStatus", {"Limit": 1})
            finally:
                await client.close()
            assert len(meta.asked) == 1, "the credentials are cached by the SDK between calls"
            wrong = settings.model_copy(update={"ram_role_name": "not-attached"})
            client = ECIClient(wrong)
            try:
                with pytest.raises(TransientError) as info:
                    await client.call("DescribeContainerGroupStatus", {"Limit": 1}, retries=0)
            finally:
                await client.close()
            assert error_code(info.value) == "MetadataUnavailable"
    finally:
        await runner.cleanup()


async def test_probe_is_one_attempt_with_the_answers_date(fake_eci: FakeECI) -> None:
    """probe() never retries, never raises a service error, and reads the Date header of error answers too."""
    fake_eci.script("DescribeRegions", error("ServiceUnavailable", status=503), (200, {"Regions": {}}))
    client = ECIClient(make_settings(fake_eci.endpoint))
    try:
        probe = await client.probe("DescribeRegions", {"RegionId": "cn-hangzhou"})
        assert isinstance(probe.error, TransientError) and error_code(probe.error) == "ServiceUnavailable"
        assert probe.data is None and fake_eci.actions() == ["DescribeRegions"]
        assert probe.server_date is not None
        assert abs(probe.server_date.timestamp() - probe.finished) < 5
        ok = await client.probe("DescribeRegions", {"RegionId": "cn-hangzhou"})
        assert ok.error is None and ok.data == {"RequestId": "r", "Regions": {}}
    finally:
        await client.close()
