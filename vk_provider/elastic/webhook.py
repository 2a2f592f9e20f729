"""The mutating admission webhook for pod CREATE: serverless pods get the virtual node's nodeSelector and
toleration, burst pods are marked with their rule. It never refuses a pod.

``review_pod`` is a pure function of the AdmissionReview, the profile's decision and the virtual node; the
aiohttp server around it (``WebhookServer``, HTTPS on ``elastic.webhook_port``) only parses, times and
answers. Anything unexpected in a review (not a pod, not CREATE, a pod already bound) is allowed unchanged:
the webhook is a convenience, and the shipped configuration's ``failurePolicy: Ignore`` means the cluster
never waits for it.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from vk_provider import jsoncodec
from vk_provider.elastic.patches import Ops, annotation_ops, pointer, toleration_ops
from vk_provider.elastic.profiles import ANNOTATION_RULE, Decision
from vk_provider.elastic.target import VirtualNode
from vk_provider.metrics import WEBHOOK_REQUESTS, WEBHOOK_SECONDS
from vk_provider.provider import Pod

log = structlog.get_logger("vk_provider.elastic.webhook")

Decide = Callable[[Mapping[str, str], Mapping[str, str]], Decision | None]
"""(pod labels, namespace labels) -> the profile's decision."""
NamespaceLabels = Callable[[str], Mapping[str, str]]

PATH = "/mutate-pods"


def pod_patch(pod: Pod, decision: Decision, node: VirtualNode) -> Ops:
    """The JSON Patch for one pod: the rule annotation, and for serverless the node selector and toleration."""
    ops = annotation_ops(pod, {ANNOTATION_RULE: decision.source})
    if decision.mode != "serverless":
        return ops
    current = (pod.get("spec") or {}).get("nodeSelector")
    if current:
        ops += [
            {"op": "add", "path": f"/spec/nodeSelector/{pointer(k)}", "value": v}
            for k, v in node.node_selector.items()
            if current.get(k) != v
        ]
    else:
        ops.append({"op": "add", "path": "/spec/nodeSelector", "value": node.node_selector})
    return ops + toleration_ops(pod, node.toleration)


def review_pod(
    review: Mapping[str, Any], decide: Decide, namespace_labels: NamespaceLabels, node: VirtualNode
) -> tuple[dict[str, Any], str]:
    """(the AdmissionReview answer, what was done: serverless | burst | none)."""
    request = review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    answer = {
        "apiVersion": review.get("apiVersion") or "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }
    kind = request.get("kind") or {}
    pod = request.get("object")
    if (
        request.get("operation") != "CREATE"
        or kind.get("kind") != "Pod"
        or kind.get("group")
        or not isinstance(pod, dict)
    ):
        return answer, "none"
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return answer, "none"  # placed by its creator: nothing to route
    namespace = str(request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default")
    labels = (pod.get("metadata") or {}).get("labels") or {}
    decision = decide(labels, namespace_labels(namespace))
    if decision is None:
        return answer, "none"
    patch = pod_patch(pod, decision, node)
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(jsoncodec.dumps(patch)).decode()
    return answer, decision.mode


class WebhookServer:
    """HTTPS server of ``review_pod`` (POST /mutate-pods) and /healthz."""

    def __init__(
        self,
        *,
        decide: Decide,
        namespace_labels: NamespaceLabels,
        node: VirtualNode,
        bind_address: str,
        port: int,
    ) -> None:
        self.decide = decide
        self.namespace_labels = namespace_labels
        self.node = node
        self.bind_address = bind_address
        self.requested_port = port
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _mutate(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        try:
            review = jsoncodec.loads(await request.read())
        except ValueError:
            WEBHOOK_REQUESTS.labels(action="error").inc()
            return web.json_response({"message": "the body is not JSON (an AdmissionReview is expected)"}, status=400)
        if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
            WEBHOOK_REQUESTS.labels(action="error").inc()
            return web.json_response({"message": "not an AdmissionReview (no request)"}, status=400)
        try:
            answer, action = review_pod(review, self.decide, self.namespace_labels, self.node)
        except Exception as exc:  # never refuse a pod: allow it unchanged, and say why in the log
            log.warning("admission review failed; the pod is allowed unchanged", error=repr(exc))
            uid = review["request"].get("uid", "")
            answer = {
                "apiVersion": review.get("apiVersion") or "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": True},
            }
            action = "error"
        WEBHOOK_REQUESTS.labels(action=action).inc()
        body = jsoncodec.dumps(answer)
        WEBHOOK_SECONDS.observe(time.perf_counter() - start)
        return web.Response(body=body, content_type="application/json")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post(PATH, self._mutate)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.bind_address, self.requested_port, ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("admission webhook listening", port=self.port, path=PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
