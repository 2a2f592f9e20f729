"""Answering a request: content negotiation by the Accept header."""

from __future__ import annotations

from vk_sandbox.apiserver.handlers.response import discovery_version


def test_discovery_version_follows_the_accept_header() -> None:
    """Aggregated discovery is chosen by the first acceptable APIGroupDiscoveryList range; plain JSON is legacy."""
    v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    assert discovery_version(f"{v2},{beta},application/json") == "v2"
    assert discovery_version(f"{beta},application/json") == "v2beta1"
    assert discovery_version("application/json, */*") is None
    assert discovery_version("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList") is None
