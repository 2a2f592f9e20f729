"""The wire protocol: signature 1.0 checks, error bodies, GET and POST, parameter decoding."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.request import RpcRequest
from aliyunsdkcore.utils import parameter_helper
from aliyunsdkeci.request.v20180808.DeleteContainerGroupRequest import DeleteContainerGroupRequest
from aliyunsdkeci.request.v20180808.DescribeRegionsRequest import DescribeRegionsRequest

from tests.sandbox.eci.conftest import call, call_error, sdk_client
from vk_sandbox.eci.server import ECISimulator
from vk_sandbox.eci.wire import ApiError, NonceCache, nest, parse_bool, sign, verify


def _signed_url(sim: ECISimulator, action: str, method: str = "GET", body: dict[str, str] | None = None) -> str:
    """A URL signed by the SDK's own signer, so replays and POSTs can be sent by hand."""
    params = {"Action": action, "Version": "2018-08-08", "RegionId": sim.region}
    url, _ = rpc_signature_composer.get_signed_url(
        params, sim.access_key_id, sim.access_key_secret, "JSON", method, body or {}
    )
    return sim.endpoint + url


def test_our_signature_matches_the_sdk_signer() -> None:
    """sign() computes exactly what aliyunsdkcore's RPC signer computes, including reserved characters."""
    params = {"Action": "X", "Value": "a b*c~d/é+", "Container.1.Arg.1": "--x=1&y"}
    url, _ = rpc_signature_composer.get_signed_url(dict(params), "kid", "secret", "JSON", "GET", {})
    from urllib.parse import parse_qsl

    sent = dict(parse_qsl(url[2:], keep_blank_values=True))
    assert sign("GET", sent, "secret") == sent["Signature"]


def test_nest_builds_lists_from_numbered_keys() -> None:
    """Container.1.Command.2 style keys become nested lists in index order."""
    tree = nest(
        {"Container.2.Name": "b", "Container.1.Name": "a", "Container.1.Command.2": "y", "Container.1.Command.1": "x"}
    )
    assert tree["Container"][0]["Name"] == "a"
    assert tree["Container"][0]["Command"] == ["x", "y"]
    assert tree["Container"][1]["Name"] == "b"


def test_booleans_are_case_insensitive() -> None:
    """True/true/TRUE parse as booleans; anything else is InvalidParameter."""
    assert parse_bool("x", "True") and parse_bool("x", "TRUE") and not parse_bool("x", "false")
    with pytest.raises(ApiError) as info:
        parse_bool("x", "yes")
    assert info.value.code == "InvalidParameter"


def test_nonce_cache_refuses_a_replay_inside_the_window() -> None:
    """A nonce is accepted once per window."""
    cache = NonceCache(ttl=10)
    assert cache.add("n", 100.0)
    assert not cache.add("n", 105.0)


def test_verify_rejects_stale_timestamp_before_looking_at_the_key() -> None:
    """A Timestamp more than 15 minutes off is InvalidTimeStamp.Expired (400)."""
    params = {
        "AccessKeyId": "k",
        "Signature": "s",
        "SignatureNonce": "n",
        "Timestamp": "2020-01-01T00:00:00Z",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
    }
    with pytest.raises(ApiError) as info:
        verify("GET", params, {"k": "s"}, NonceCache(), now=time.time())
    assert (info.value.code, info.value.status) == ("InvalidTimeStamp.Expired", 400)


async def test_bad_secret_is_signature_does_not_match(sim: ECISimulator) -> None:
    """A wrong secret gets SignatureDoesNotMatch (400) with the server's string to sign; the SDK compares that
    string with its own and, as they match, reports InvalidAccessKeySecret, as it does against the real service."""
    exc = await call_error(sim, DescribeRegionsRequest(), sdk_client(sim, secret="wrong"))
    assert exc.get_error_code() == "InvalidAccessKeySecret"
    assert sim.errors == {"SignatureDoesNotMatch": 1}
    assert exc.get_http_status() == 400
    assert exc.get_request_id()
    assert "test-secret" not in exc.get_error_msg()


async def test_unknown_access_key_is_404(sim: ECISimulator) -> None:
    """An AccessKeyId we do not know is InvalidAccessKeyId.NotFound, HTTP 404."""
    exc = await call_error(sim, DescribeRegionsRequest(), sdk_client(sim, key_id="nobody", secret="x"))
    assert (exc.get_error_code(), exc.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


async def test_replayed_nonce_is_refused(sim: ECISimulator) -> None:
    """The same signed URL sent twice: the first succeeds, the second is SignatureNonceUsed (400)."""
    url = _signed_url(sim, "DescribeRegions")
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r1:
            assert r1.status == 200, await r1.text()
        async with s.get(url) as r2:
            body: dict[str, Any] = await r2.json()
            assert r2.status == 400
    assert body["Code"] == "SignatureNonceUsed"
    assert set(body) == {"RequestId", "HostId", "Code", "Message"}


async def test_stale_timestamp_is_refused(sim: ECISimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request the SDK signs with a clock an hour behind is InvalidTimeStamp.Expired."""
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: old)
    exc = await call_error(sim, DescribeRegionsRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("InvalidTimeStamp.Expired", 400)


async def test_post_with_form_body_is_accepted_and_signed(sim: ECISimulator) -> None:
    """POST with a form body works, and form fields take part in the signature."""
    body = {"ContainerGroupId": "eci-missing"}
    url = _signed_url(sim, "DeleteContainerGroup", method="POST", body=body)
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body) as r:
            answer = await r.json()
            assert r.status == 404
        assert answer["Code"] == "InvalidContainerGroup.NotFound"
        async with s.post(url.replace("SignatureNonce=", "SignatureNonce=x"), data={"ContainerGroupId": "other"}) as r:
            assert (await r.json())["Code"] == "SignatureDoesNotMatch"


async def test_unknown_action_is_404(sim: ECISimulator) -> None:
    """An action the service does not have is InvalidAction.NotFound, HTTP 404."""
    exc = await call_error(sim, RpcRequest("Eci", "2018-08-08", "LaunchRocket", "eci"))
    assert (exc.get_error_code(), exc.get_http_status()) == ("InvalidAction.NotFound", 404)


async def test_missing_parameter_is_400(sim: ECISimulator) -> None:
    """DeleteContainerGroup without ContainerGroupId is MissingParameter (400)."""
    exc = await call_error(sim, DeleteContainerGroupRequest())
    assert (exc.get_error_code(), exc.get_http_status()) == ("MissingParameter", 400)
    assert "ContainerGroupId" in exc.get_error_msg()


async def test_describe_regions(sim: ECISimulator) -> None:
    """DescribeRegions lists the served region with its zones and endpoint."""
    regions = (await call(sim, DescribeRegionsRequest()))["Regions"]
    assert regions[0]["RegionId"] == "cn-hangzhou"
    assert regions[0]["Zones"] and regions[0]["RegionEndpoint"] == "eci.cn-hangzhou.aliyuncs.com"


async def test_signature_error_masks_secret_values(sim: ECISimulator) -> None:
    """The string to sign echoed in SignatureDoesNotMatch masks registry passwords and env values."""
    from tests.sandbox.eci.conftest import create_request

    req = create_request(
        containers=[{"Name": "main", "Image": "busybox", "EnvironmentVars": [{"Key": "TOKEN", "Value": "env-s3cret"}]}]
    )
    req.set_ImageRegistryCredentials([{"Server": "r.example.com", "UserName": "u", "Password": "reg-s3cret"}])
    exc = await call_error(sim, req, sdk_client(sim, secret="wrong"))
    assert exc.get_error_code() == "SignatureDoesNotMatch"
    assert "s3cret" not in exc.get_error_msg()
    assert "ImageRegistryCredential.1.Password%3D%252A%252A%252A" in exc.get_error_msg()
