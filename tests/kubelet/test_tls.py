"""Serving certificates: self-signed, files, and the CSR flow with live swap, reuse and renewal."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from kubernetes_asyncio import client as k8s

from tests.kubelet.doubles import FakeAuthAPI, FakeCSRAPI, FakePods, FakeStreams, TestCA, insecure_client_ssl
from tests.waiting import eventually
from vk_provider.kubelet import tls
from vk_provider.kubelet.server import KubeletServer
from vk_provider.settings import KubeletSettings


def test_csr_has_node_identity_and_sans() -> None:
    """The CSR names system:node:<node> in system:nodes and carries IP and DNS SANs for the addresses."""
    csr_pem, key_pem = tls.make_csr("vk-node", ["10.0.0.5", "vk.example", "10.0.0.5"])
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:vk-node"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert sans.get_values_for_type(x509.DNSName) == ["vk.example"]
    assert b"PRIVATE KEY" in key_pem


def test_renewal_point_is_80_percent_of_life() -> None:
    """renew_at is not_before + 0.8 * lifetime."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    info = tls.CertInfo(start, start + dt.timedelta(days=10), "x", frozenset())
    assert info.renew_at() == start + dt.timedelta(days=8)


def test_split_pem_separates_certificate_and_key() -> None:
    """A combined PEM file splits back into its certificate and key."""
    cert, key = tls.self_signed("n", ["127.0.0.1"])
    got_cert, got_key = tls.split_pem(cert + key)
    assert (got_cert, got_key) == (cert, key)


@pytest.fixture
async def csr_api() -> AsyncIterator[tuple[FakeAuthAPI, FakeCSRAPI]]:
    auth = FakeAuthAPI({"admin-token": ("admin", [])}, {("admin", "get", "proxy")})
    csrs = FakeCSRAPI(TestCA("cluster-ca"), auth.app)
    async with auth:
        yield auth, csrs


def settings(tmp_path: Path, **kw: object) -> KubeletSettings:
    return KubeletSettings(
        port=0,
        bind_address="127.0.0.1",
        tls_mode="csr",
        cert_dir=tmp_path / "certs",
        csr_poll_seconds=0.05,
        **kw,  # type: ignore[arg-type]
    )


async def peer_common_name(port: int) -> str:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=insecure_client_ssl())
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_csr_flow_swaps_the_certificate_live_and_reuses_it(
    tmp_path: Path, csr_api: tuple[FakeAuthAPI, FakeCSRAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """Before approval a temporary cert serves; after approval the issued one is served on the same
    listener without restart, saved under cert_dir, and reused by the next start without a new CSR."""
    auth, csrs = csr_api
    api = k8s.ApiClient(k8s.Configuration(host=auth.url))
    server = KubeletServer(
        settings(tmp_path),
        node_name="vk-node",
        node_addresses=["127.0.0.1"],
        pods=FakePods([]),
        streams=FakeStreams(),
        api=api,
    )
    try:
        await server.start()
        assert not server.ready
        assert (await peer_common_name(server.port)).startswith("vk-node@")
        await eventually(lambda: len(csrs.csrs) == 1, timeout=5, interval=0.02, what="one CSR")
        (name,) = csrs.csrs
        spec = csrs.csrs[name]["spec"]
        assert spec["signerName"] == "kubernetes.io/kubelet-serving"
        assert spec["usages"] == ["digital signature", "key encipherment", "server auth"]
        csrs.approve(name)
        await eventually(lambda: server.ready, timeout=5, interval=0.02, what="the signed certificate in use")
        assert await peer_common_name(server.port) == "system:node:vk-node"
        assert server.tls.current is not None and {"vk-node", "127.0.0.1"} <= server.tls.current.sans
        assert (tmp_path / "certs" / tls.CURRENT).exists()
        assert (tmp_path / "certs" / tls.CURRENT).stat().st_mode & 0o077 == 0
    finally:
        await server.stop()
    again = tls.ServingTLS(
        settings(tmp_path), node_name="vk-node", addresses=["127.0.0.1"], api=api, client_ca_pem=None
    )
    await again.start()
    try:
        assert again.ready and again.csr_names == []
    finally:
        await again.stop()
        await api.close()


async def test_csr_renews_before_expiry(tmp_path: Path, csr_api: tuple[FakeAuthAPI, FakeCSRAPI]) -> None:
    """A certificate past 80% of its life is replaced by a new CSR without a restart."""
    auth, csrs = csr_api
    csrs.auto_approve = True
    csrs.lives = [dt.timedelta(seconds=1)]  # not_before is 30 s back: already past 80%
    api = k8s.ApiClient(k8s.Configuration(host=auth.url))
    serving = tls.ServingTLS(
        settings(tmp_path), node_name="vk-node", addresses=["127.0.0.1"], api=api, client_ca_pem=None
    )
    await serving.start()
    try:
        await eventually(
            lambda: (
                len(csrs.csrs) >= 2
                and serving.current is not None
                and serving.current.not_after > dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            ),
            timeout=5,
            interval=0.02,
            what="a renewed certificate in use",
        )
        assert serving.ready
    finally:
        await serving.stop()
        await api.close()


async def test_denied_csr_keeps_serving_and_retries(tmp_path: Path, csr_api: tuple[FakeAuthAPI, FakeCSRAPI]) -> None:
    """A denied CSR is logged, the temporary certificate keeps serving, and ready stays false."""
    auth, csrs = csr_api
    csrs.deny = True
    api = k8s.ApiClient(k8s.Configuration(host=auth.url))
    serving = tls.ServingTLS(
        settings(tmp_path), node_name="vk-node", addresses=["127.0.0.1"], api=api, client_ca_pem=None
    )
    await serving.start()
    try:
        await eventually(
            lambda: len(csrs.csrs) == 1 and next(iter(csrs.csrs.values()))["status"],
            timeout=5,
            interval=0.02,
            what="the CSR to be denied",
        )
        await asyncio.sleep(0.2)  # a deliberate window: ready must not turn true in it
        assert not serving.ready
        assert serving.current is not None and serving.current.common_name.startswith("vk-node@")
    finally:
        await serving.stop()
        await api.close()


async def test_files_mode_serves_the_given_pair(tmp_path: Path) -> None:
    """tls_mode=files loads cert_file/key_file and is ready at once; a client CA makes certs optional-if-given."""
    cert_pem, key_pem = tls.self_signed("vk-node", ["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    cfg = KubeletSettings(tls_mode="files", cert_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem")
    serving = tls.ServingTLS(cfg, node_name="vk-node", addresses=[], api=None, client_ca_pem=TestCA().pem)
    await serving.start()
    assert serving.ready and serving.context.verify_mode == ssl.CERT_OPTIONAL
    assert serving.current == tls.cert_info(cert_pem)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=serving.context)
    try:
        _, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1], ssl=insecure_client_ssl())
        assert w.get_extra_info("ssl_object").getpeercert(binary_form=True) == x509.load_pem_x509_certificate(
            cert_pem
        ).public_bytes(serialization.Encoding.DER)
        w.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("approver_acts_at_once", [True, False])
async def test_needs_approval_warning_only_when_nobody_approves(
    tmp_path: Path, csr_api: tuple[FakeAuthAPI, FakeCSRAPI], approver_acts_at_once: bool
) -> None:
    """An approver that signs at once (the sandbox's, a cluster's auto-approver) never makes the operator read
    the warning; a CSR still pending after one poll is announced once, with the command to run."""
    from structlog.testing import capture_logs

    auth, csrs = csr_api
    csrs.auto_approve = approver_acts_at_once
    api = k8s.ApiClient(k8s.Configuration(host=auth.url))
    serving = tls.ServingTLS(
        settings(tmp_path), node_name="vk-node", addresses=["127.0.0.1"], api=api, client_ca_pem=None
    )
    with capture_logs() as logs:
        await serving.start()
        try:
            if approver_acts_at_once:
                await eventually(lambda: serving.ready, timeout=5, interval=0.02, what="the signed certificate in use")
            else:
                await eventually(lambda: len(csrs.csrs) == 1, timeout=5, interval=0.02, what="one CSR")
                await eventually(lambda: csrs.reads >= 3, timeout=5, interval=0.02, what="several polls of the CSR")
                csrs.approve(next(iter(csrs.csrs)))
                await eventually(lambda: serving.ready, timeout=5, interval=0.02, what="the signed certificate in use")
        finally:
            await serving.stop()
            await api.close()
    warnings = [e for e in logs if "needs approval" in e["event"]]
    if approver_acts_at_once:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0]["approve"].startswith("kubectl certificate approve ")
