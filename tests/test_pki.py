"""The X.509 pieces the kubelet API's and the webhook's certificates share."""

from __future__ import annotations

import ipaddress
import ssl

import pytest
from cryptography import x509

from vk_provider.elastic.certs import issue_serving, new_ca
from vk_provider.pki import load_pem_chain, san_entries


def test_san_entries_tell_addresses_from_names_and_drop_empty_and_repeated_ones() -> None:
    assert san_entries(["node-1", "10.0.0.7", "", "node-1", "::1"]) == [
        x509.DNSName("node-1"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]


def test_load_pem_chain_loads_a_certificate_with_its_own_key_only() -> None:
    ca_pem, ca_key = new_ca()
    cert_pem, key_pem = issue_serving(ca_pem, ca_key, ["localhost", "127.0.0.1"])
    _, other_key = issue_serving(ca_pem, ca_key, ["localhost"])
    load_pem_chain(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert_pem, key_pem)
    with pytest.raises(ssl.SSLError):
        load_pem_chain(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert_pem, other_key)
