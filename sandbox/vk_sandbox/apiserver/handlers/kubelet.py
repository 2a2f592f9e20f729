"""pods/log|exec|attach|portforward and nodes/NAME/proxy/PATH: mapped to the kubelet's paths as the real server
maps them, then relayed by ``..proxy`` with the kubelet-client certificate."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from vk_sandbox.apiserver import proxy
from vk_sandbox.apiserver.context import KubeletContext
from vk_sandbox.apiserver.errors import ApiError, bad_request, not_found
from vk_sandbox.apiserver.handlers.request import Target, encoded_query
from vk_sandbox.apiserver.workers import is_hollow

SUBRESOURCES = ("log", "exec", "attach", "portforward", "proxy")
_PREFIX = {"log": "containerLogs", "exec": "exec", "attach": "attach"}


def default_container(pod: dict[str, Any]) -> str:
    """The annotation kubectl.kubernetes.io/default-container, else the first container."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    name = annotations.get("kubectl.kubernetes.io/default-container")
    if name:
        return str(name)
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0].get("name", "")) if containers else ""


class KubeletProxy:
    def __init__(self, ctx: KubeletContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    async def handle(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        if t.rt.key == "nodes":
            node = self.store.get("nodes", None, t.name)
            if node is None:
                raise not_found("nodes", "", t.name)
            path_qs = "/" + t.rest
            if request.query:
                path_qs += "?" + encoded_query(request)
            return await self._relay(request, node, path_qs)
        pod = self.store.get("pods", t.namespace, t.name)
        if pod is None:
            raise not_found("pods", "", t.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {t.name} does not have a host assigned")
        node = self.store.get("nodes", None, node_name)
        if node is None:
            raise not_found("nodes", "", node_name)
        ns, name = quote(t.namespace or "", safe=""), quote(t.name, safe="")
        qs = encoded_query(request)
        if t.subresource == "portforward":
            path_qs = f"/portForward/{ns}/{name}" + (f"?{qs}" if qs else "")
            return await self._relay(request, node, path_qs)
        container = request.query.get("container") or default_container(pod)
        spec = pod.get("spec") or {}
        names = [
            c.get("name")
            for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []
        ]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {t.name}")
        prefix = _PREFIX[t.subresource or "log"]
        path_qs = f"/{prefix}/{ns}/{name}/{quote(container, safe='')}" + (f"?{qs}" if qs else "")
        return await self._relay(request, node, path_qs)

    async def _relay(self, request: web.Request, node: dict[str, Any], path_qs: str) -> web.StreamResponse:
        if is_hollow(node):
            # What a real server says when nothing listens at the kubelet's address, plus why: answered at once.
            host, port = proxy.kubelet_location(node)
            name = (node.get("metadata") or {}).get("name")
            raise ApiError(
                502,
                "BadGateway",
                f"error dialing backend: dial tcp {host}:{port}: connect: connection refused ({name} is a hollow "
                "sandbox worker: no kubelet serves logs, exec, attach or port-forward for its pods)",
            )
        return await proxy.proxy_to_kubelet(request, node=node, path_qs=path_qs, ssl_context=self.ctx.client_ssl)
