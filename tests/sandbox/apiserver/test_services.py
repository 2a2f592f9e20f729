"""Services get what the real API server (v1.36.3) gives them: a cluster IP, node ports and the defaults."""

from __future__ import annotations

import ipaddress
from typing import Any

from vk_sandbox.apiserver.store import Store


def _store() -> Store:
    s = Store()
    s.create_now("namespaces", {"metadata": {"name": "default"}})
    return s


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_cluster_ip_service_is_allocated_and_defaulted() -> None:
    s = _store()
    svc = s.create_now("services", _svc("s1", selector={"a": "b"}, ports=[{"port": 80}]))
    spec = svc["spec"]
    ip = spec.pop("clusterIP")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/16") and ip != "10.96.0.1"
    assert spec == {
        "clusterIPs": [ip],
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "selector": {"a": "b"},
        "sessionAffinity": "None",
        "type": "ClusterIP",
    }
    assert svc["status"] == {"loadBalancer": {}}
    other = s.create_now("services", _svc("s2", ports=[{"port": 80}]))
    assert other["spec"]["clusterIP"] != ip

    # An update that leaves the allocated values out keeps them.
    svc["spec"] = {"selector": {"a": "c"}, "ports": [{"port": 80}]}
    assert s.update_now("services", svc)["spec"]["clusterIPs"] == [ip]


def test_node_port_load_balancer_headless_and_external_name() -> None:
    s = _store()
    node_port = s.create_now("services", _svc("np", type="NodePort", ports=[{"port": 80, "targetPort": "http"}]))
    port = node_port["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    node_port["spec"]["ports"] = [{"port": 80, "targetPort": "http"}]
    assert s.update_now("services", node_port)["spec"]["ports"][0]["nodePort"] == port

    lb = s.create_now("services", _svc("lb", type="LoadBalancer", ports=[{"port": 80}]))
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["ports"][0]["nodePort"] != port

    headless = s.create_now("services", _svc("h", clusterIP="None", ports=[{"port": 80}]))["spec"]
    assert headless["clusterIPs"] == ["None"]
    # Without a selector the real server gives both families, even in a single-stack cluster.
    assert (headless["ipFamilyPolicy"], headless["ipFamilies"]) == ("RequireDualStack", ["IPv4", "IPv6"])
    selected = s.create_now("services", _svc("hs", clusterIP="None", selector={"a": "b"}))["spec"]
    assert (selected["ipFamilyPolicy"], selected["ipFamilies"]) == ("SingleStack", ["IPv4"])

    external = s.create_now("services", _svc("e", type="ExternalName", externalName="example.com"))
    assert external["spec"] == {"externalName": "example.com", "sessionAffinity": "None", "type": "ExternalName"}
