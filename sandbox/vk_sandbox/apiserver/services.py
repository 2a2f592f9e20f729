"""What the real API server does to a Service: a cluster IP from the service range, node ports from 30000-32767, and
the defaults of a v1.36 single-stack IPv4 cluster (``ipFamilies``, ``ipFamilyPolicy``, ``internalTrafficPolicy``,
``externalTrafficPolicy``, ``allocateLoadBalancerNodePorts``, an empty ``status.loadBalancer``).

The range is 10.96.0.0/16 (``kubernetes`` is 10.96.0.1), the real tier's. IPs and ports are picked at random among
the free ones, as the real allocators (which also prefer the upper part of the range for dynamic picks: the sandbox
does not). A requested IP or port is taken as asked, without the real server's range and conflict checks. An update
that leaves them out keeps the allocated ones, as the real server's update does.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from typing import Any

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
NODE_PORTS = (30000, 32767)


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return bool(spec.get("type", "ClusterIP") != "ExternalName")


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


def allocate(svc: dict[str, Any], existing: Iterable[dict[str, Any]]) -> None:
    """Give a new Service its cluster IP(s) and node ports, avoiding those ``existing`` Services hold."""
    spec = svc.get("spec")
    if not isinstance(spec, dict):
        return
    used_ips: set[str] = set()
    used_ports: set[int] = set()
    for other in existing:
        o_spec = other.get("spec") or {}
        used_ips.update(str(ip) for ip in o_spec.get("clusterIPs") or [o_spec.get("clusterIP")] if ip)
        used_ports.update(int(p["nodePort"]) for p in o_spec.get("ports") or [] if isinstance(p.get("nodePort"), int))
    if _needs_cluster_ip(spec) and not spec.get("clusterIP"):
        ips = spec.get("clusterIPs")
        if isinstance(ips, list) and ips and isinstance(ips[0], str) and ips[0]:
            spec["clusterIP"] = ips[0]
        else:
            spec["clusterIP"] = _free_ip(used_ips)
    if _needs_node_ports(spec):
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                port["nodePort"] = _free_port(used_ports)
                used_ports.add(port["nodePort"])


def _free_ip(used: set[str]) -> str:
    size = SERVICE_CIDR.num_addresses
    for _ in range(1000):
        ip = str(SERVICE_CIDR.network_address + random.randrange(2, size - 1))  # .0, .1 (kubernetes) and broadcast
        if ip not in used:
            return ip
    return next(str(ip) for ip in SERVICE_CIDR.hosts() if str(ip) not in used)


def _free_port(used: set[int]) -> int:
    low, high = NODE_PORTS
    free = [p for p in range(low, high + 1) if p not in used]
    return random.choice(free) if free else 0


def keep_allocated(old: dict[str, Any], new: dict[str, Any]) -> None:
    """An update that leaves out the cluster IP(s) or a port's nodePort keeps the allocated ones."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec")
    if not isinstance(new_spec, dict):
        return
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(new_spec) and not new_spec.get("clusterIP"):
        for field in ("clusterIP", "clusterIPs"):
            if field in old_spec:
                new_spec[field] = old_spec[field]
    if _needs_node_ports(old_spec) and _needs_node_ports(new_spec):
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in new_spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                node_port = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if node_port:
                    port["nodePort"] = node_port


def default_service(svc: dict[str, Any]) -> None:
    """The stateless defaults, on every write."""
    spec = svc.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    if isinstance(svc.get("status"), dict) or "status" not in svc:
        svc.setdefault("status", {}).setdefault("loadBalancer", {})
    if not _needs_cluster_ip(spec):
        return
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec.get("type") == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("clusterIP") == "None" and not spec.get("selector"):
        # A headless Service without a selector is given both families, even in a single-stack cluster.
        spec.setdefault("ipFamilyPolicy", "RequireDualStack")
        spec.setdefault("ipFamilies", ["IPv4", "IPv6"])
    else:
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
