"""Authentication and authorization: attributes, caches, client certificates, anonymous access."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.kubelet.conftest import start_kubelet
from tests.kubelet.doubles import FakeAuthAPI, TestCA, insecure_client_ssl
from vk_provider.kubelet.auth import TTLCache, request_attributes, user_from_peercert


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/stats/summary", ("get", "stats")),
        ("GET", "/metrics/resource", ("get", "metrics")),
        ("GET", "/logs/syslog", ("get", "log")),
        ("GET", "/containerLogs/a/b/c", ("get", "proxy")),
        ("POST", "/exec/a/b/c", ("create", "proxy")),
        ("GET", "/exec/a/b/c", ("get", "proxy")),
        ("PUT", "/pods", ("update", "proxy")),
        ("PATCH", "/pods", ("patch", "proxy")),
        ("DELETE", "/pods", ("delete", "proxy")),
        ("GET", "/statsfoo", ("get", "proxy")),
    ],
)
def test_request_attributes(method: str, path: str, expected: tuple[str, str]) -> None:
    """Verb comes from the method, subresource from the path prefix, as the kubelet does it."""
    assert request_attributes(method, path) == expected


def test_ttl_cache_expires_entries_and_stays_bounded() -> None:
    """Entries vanish after their own TTL; the oldest entries are evicted past the bound."""
    now = [0.0]
    cache: TTLCache[str, bool] = TTLCache(max_entries=2, clock=lambda: now[0])
    cache.put("a", True, 10)
    cache.put("b", False, 1)
    assert cache.get("a") is True and cache.get("b") is False
    now[0] = 2
    assert cache.get("b") is None and cache.get("a") is True
    cache.put("c", True, 10)
    cache.put("d", True, 10)
    assert len(cache) == 2 and cache.get("a") is None


def test_user_from_peercert() -> None:
    """CN is the user name and every O a group; no CN means no user."""
    cert = {"subject": ((("organizationName", "g1"),), (("organizationName", "g2"),), (("commonName", "bob"),))}
    user = user_from_peercert(cert)
    assert user is not None and user.name == "bob" and user.groups[:2] == ("g1", "g2")
    assert user_from_peercert({"subject": ((("organizationName", "g"),),)}) is None
    assert user_from_peercert(None) is None


async def test_client_certificate_authenticates_without_a_token(
    tmp_path: Path, auth_api: FakeAuthAPI, echo_server: int
) -> None:
    """A client certificate from the client CA authenticates (CN as user, SAR asked for it);
    one from an unknown CA is refused at the handshake."""
    client_ca, other_ca = TestCA("clients"), TestCA("other")
    server, _, api = await start_kubelet(tmp_path, auth_api, echo_server, client_ca_pem=client_ca.pem)
    try:
        for ca, name in ((client_ca, "good"), (other_ca, "bad")):
            cert, key = ca.issue_client("cert-user", ["team"])
            (tmp_path / f"{name}.pem").write_bytes(cert + key)
        good = insecure_client_ssl()
        good.load_cert_chain(tmp_path / "good.pem")
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=good)) as s,
            s.get(f"https://127.0.0.1:{server.port}/pods") as r,
        ):
            assert r.status == 200
        assert auth_api.sars[-1]["user"] == "cert-user" and "team" in auth_api.sars[-1]["groups"]
        assert auth_api.token_reviews == 0
        bad = insecure_client_ssl()
        bad.load_cert_chain(tmp_path / "bad.pem")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=bad)) as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"https://127.0.0.1:{server.port}/pods") as r:
                    await r.read()
    finally:
        await server.stop()
        await api.close()


async def test_anonymous_requests_are_authorized_as_system_anonymous_when_enabled(
    tmp_path: Path, auth_api: FakeAuthAPI, echo_server: int
) -> None:
    """With anonymous_auth, no credentials reach authorization as system:anonymous (403 here, not 401)."""
    server, _, api = await start_kubelet(tmp_path, auth_api, echo_server, anonymous_auth=True)
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s,
            s.get(f"https://127.0.0.1:{server.port}/pods") as r,
        ):
            assert r.status == 403
        assert auth_api.sars[-1]["user"] == "system:anonymous"
    finally:
        await server.stop()
        await api.close()


async def test_malformed_authorization_header_is_401(tmp_path: Path, auth_api: FakeAuthAPI, echo_server: int) -> None:
    """A non-bearer or empty Authorization header is unauthenticated, and no TokenReview is spent on it."""
    server, _, api = await start_kubelet(tmp_path, auth_api, echo_server)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s:
            for value in ("Basic abc", "Bearer ", "Bearer"):
                async with s.get(f"https://127.0.0.1:{server.port}/pods", headers={"Authorization": value}) as r:
                    assert r.status == 401
        assert auth_api.token_reviews == 0
    finally:
        await server.stop()
        await api.close()
