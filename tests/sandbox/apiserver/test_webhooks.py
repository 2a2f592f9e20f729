"""Admission webhooks: a tiny aiohttp webhook with its own CA, called over HTTPS through a Service's Endpoints or a
url, driven by the real kubectl and the official client."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from tests.sandbox.apiserver.conftest import Kubectl
from tests.waiting import eventually
from vk_sandbox.apiserver.certs import CertificateAuthority
from vk_sandbox.apiserver.server import SandboxAPIServer

NS = "webhooks"


@dataclass
class Hook:
    """The webhook server: what it was asked, and its address."""

    port: int = 0
    ca_bundle: str = ""
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _answer(request: dict[str, Any], *, allowed: bool = True, ops: list[Any] | None = None, **extra: Any) -> Any:
    response: dict[str, Any] = {"uid": request["uid"], "allowed": allowed, **extra}
    if ops is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})


@pytest.fixture
async def hook(tmp_path: Path) -> AsyncIterator[Hook]:
    ca = CertificateAuthority("webhook-test-ca")
    cert, key = ca.issue("hook", [], server_names=[f"hook.{NS}.svc"], ip_addresses=["127.0.0.1"], server=True)
    (tmp_path / "hook.crt").write_bytes(cert)
    (tmp_path / "hook.key").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "hook.crt", tmp_path / "hook.key")
    state = Hook(ca_bundle=base64.b64encode(ca.cert_pem).decode())

    async def handle(request: web.Request) -> web.StreamResponse:
        what = request.match_info["what"]
        review = (await request.json())["request"]
        state.calls.setdefault(what, []).append(review)
        obj = review["object"]
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if what == "label":
            return _answer(review, ops=[{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
        if what == "count":  # adds one to an annotation each time it is called
            n = len(state.calls[what])
            annotations = (obj.get("metadata") or {}).get("annotations")
            op = {"op": "add", "path": "/metadata/annotations", "value": {"calls": str(n)}}
            if annotations is not None:
                op = {"op": "add", "path": "/metadata/annotations/calls", "value": str(n)}
            return _answer(review, ops=[op])
        if what == "tier":
            if labels.get("tier") == "web":
                return _answer(review)
            return _answer(review, ops=[{"op": "add", "path": "/metadata/labels/tier", "value": "web"}])
        if what == "fail":
            return web.Response(status=500, text="boom")
        if what == "slow":
            await asyncio.sleep(5)
            return _answer(review)
        if what == "deny":
            return _answer(review, allowed=False, status={"code": 403, "message": "no thanks"})
        return _answer(review)

    app = web.Application()
    app.router.add_post("/{what}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    state.port = int(runner.addresses[0][1])
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def cluster(tmp_path: Path, hook: Hook) -> AsyncIterator[SandboxAPIServer]:
    """The sandbox with the webhook's namespace, Service and (hand-written) Endpoints."""
    async with SandboxAPIServer(directory=tmp_path / "api", controllers=False) as srv:
        store = srv.store
        store.create_now("namespaces", {"metadata": {"name": NS}})
        store.create_now(
            "services",
            {"metadata": {"name": "hook", "namespace": NS}, "spec": {"ports": [{"port": 443, "targetPort": 8443}]}},
        )
        store.create_now(
            "endpoints",
            {
                "metadata": {"name": "hook", "namespace": NS},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": hook.port}]}],
            },
        )
        yield srv


def configuration(kind: str, name: str, hook: Hook, path: str, *, url: bool = False, **extra: Any) -> dict[str, Any]:
    client: dict[str, Any] = {"caBundle": hook.ca_bundle}
    if url:
        client["url"] = f"https://127.0.0.1:{hook.port}/{path}"
    else:
        client["service"] = {"name": "hook", "namespace": NS, "path": f"/{path}"}
    webhook = {
        "name": f"{path}.sandbox.test",
        "clientConfig": client,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [NS]}]
        },
        **extra,
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def mutating(name: str, hook: Hook, path: str, **extra: Any) -> dict[str, Any]:
    return configuration("MutatingWebhookConfiguration", name, hook, path, **extra)


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


@pytest.fixture
def kc(cluster: SandboxAPIServer, kubectl_env: dict[str, str]) -> Kubectl:
    return Kubectl(kubectl_env, cluster.kubeconfig_path)


async def apply(kc: Kubectl, obj: dict[str, Any]) -> tuple[int, str, str]:
    return await kc.run("apply", "-f", "-", stdin=json.dumps(obj).encode())


async def test_mutating_webhook_through_a_service_patches_pods(
    cluster: SandboxAPIServer, kc: Kubectl, hook: Hook
) -> None:
    """The review carries the defaulted pod and the caller; the JSONPatch lands in the stored pod; the configuration
    gets the real defaults and shows in kubectl's table and discovery."""
    await kc.ok("apply", "-f", "-", stdin=json.dumps(mutating("label", hook, "label")).encode())
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pod("p1", app="a")).encode())
    stored = cluster.store.get("pods", "default", "p1")
    assert stored is not None and stored["metadata"]["labels"] == {"app": "a", "mutated": "yes"}
    (review,) = hook.calls["label"]
    assert review["operation"] == "CREATE" and review["namespace"] == "default" and review["name"] == "p1"
    assert review["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert review["userInfo"]["username"] == "sandbox-admin"
    assert review["object"]["spec"]["restartPolicy"] == "Always"  # defaulted before mutating admission
    assert review["dryRun"] is False and review["oldObject"] is None

    def read() -> Any:
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(cluster.kubeconfig_path), client_configuration=cfg)
        with kubernetes.client.ApiClient(cfg) as api:
            return kubernetes.client.AdmissionregistrationV1Api(api).read_mutating_webhook_configuration("label")

    got = await asyncio.to_thread(read)
    webhook = got.webhooks[0]
    assert (webhook.failure_policy, webhook.timeout_seconds, webhook.reinvocation_policy) == ("Fail", 10, "Never")
    assert webhook.client_config.service.port == 443 and webhook.rules[0].scope == "*"
    table = await kc.ok("get", "mutatingwebhookconfigurations")
    assert table.split("\n")[1].split()[:2] == ["label", "1"]
    assert "validatingwebhookconfigurations" in await kc.ok("api-resources", "--api-group=admissionregistration.k8s.io")
    # Its own namespace is excluded by the namespaceSelector: nothing is sent for a pod there.
    await kc.ok(
        "apply", "-f", "-", stdin=json.dumps({**pod("own"), "metadata": {"name": "own", "namespace": NS}}).encode()
    )
    assert len(hook.calls["label"]) == 1


async def test_url_webhook_and_reinvocation(cluster: SandboxAPIServer, kc: Kubectl, hook: Hook) -> None:
    """A url webhook works; an IfNeeded webhook runs again after a later one changed the object."""
    await kc.ok(
        "apply", "-f", "-", stdin=json.dumps(mutating("a-count", hook, "count", reinvocationPolicy="IfNeeded")).encode()
    )
    await kc.ok("apply", "-f", "-", stdin=json.dumps(mutating("b-tier", hook, "tier", url=True)).encode())
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pod("p2")).encode())
    stored = cluster.store.get("pods", "default", "p2")
    assert stored is not None
    assert stored["metadata"]["labels"]["tier"] == "web"
    assert stored["metadata"]["annotations"]["calls"] == "2"  # count ran, tier changed the pod, count ran again
    assert len(hook.calls["tier"]) == 1
    # Already labelled: tier changes nothing, so count is not called again.
    await kc.ok("apply", "-f", "-", stdin=json.dumps(pod("p3", tier="web")).encode())
    assert len(hook.calls["count"]) == 3


async def test_generate_name_passes_admission_with_webhooks_configured(
    cluster: SandboxAPIServer, kc: Kubectl, hook: Hook
) -> None:
    """With any webhook configured, an object created with generateName (a pod the webhook sees with name "", a
    CSR it does not match) is still named and stored, as by the real server."""
    await kc.ok("apply", "-f", "-", stdin=json.dumps(mutating("label", hook, "label")).encode())
    body = pod("")
    body["metadata"] = {"generateName": "gen-", "namespace": "default", "labels": {"app": "g"}}
    out = await kc.ok("create", "-f", "-", "-o", "jsonpath={.metadata.name}", stdin=json.dumps(body).encode())
    assert out.startswith("gen-") and len(out) > len("gen-")
    (review,) = hook.calls["label"]
    assert review["name"] == ""
    stored = cluster.store.get("pods", "default", out)
    assert stored is not None and stored["metadata"]["labels"]["mutated"] == "yes"


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
async def test_failing_webhook_follows_its_failure_policy(
    cluster: SandboxAPIServer, kc: Kubectl, hook: Hook, policy: str
) -> None:
    await kc.ok("apply", "-f", "-", stdin=json.dumps(mutating("fail", hook, "fail", failurePolicy=policy)).encode())
    rc, _, err = await apply(kc, pod("p"))
    if policy == "Ignore":
        assert rc == 0 and cluster.store.get("pods", "default", "p") is not None
    else:
        assert rc != 0 and cluster.store.get("pods", "default", "p") is None
        assert (
            'Internal error occurred: failed calling webhook "fail.sandbox.test": failed to call webhook: '
            'an error on the server ("boom") has prevented the request from succeeding'
        ) in err
    assert len(hook.calls["fail"]) == 1


async def test_slow_webhook_times_out(cluster: SandboxAPIServer, kc: Kubectl, hook: Hook) -> None:
    await kc.ok(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(mutating("slow", hook, "slow", timeoutSeconds=1, failurePolicy="Fail")).encode(),
    )
    started = time.monotonic()
    rc, _, err = await apply(kc, pod("p"))
    assert time.monotonic() - started < 4.5
    assert rc != 0
    assert (
        'failed calling webhook "slow.sandbox.test": failed to call webhook: '
        f'Post "https://hook.{NS}.svc:443/slow?timeout=1s": context deadline exceeded'
    ) in err


async def test_validating_webhook_denies_and_unknown_ca_fails(
    cluster: SandboxAPIServer, kc: Kubectl, hook: Hook
) -> None:
    deny = configuration("ValidatingWebhookConfiguration", "deny", hook, "deny")
    await kc.ok("apply", "-f", "-", stdin=json.dumps(deny).encode())
    rc, _, err = await apply(kc, pod("p"))
    assert rc != 0 and 'admission webhook "deny.sandbox.test" denied the request: no thanks' in err
    await kc.ok("delete", "validatingwebhookconfiguration", "deny")

    stranger = CertificateAuthority("someone-else")
    wrong = mutating("label", hook, "label")
    wrong["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(stranger.cert_pem).decode()
    await kc.ok("apply", "-f", "-", stdin=json.dumps(wrong).encode())
    rc, _, err = await apply(kc, pod("p"))
    assert rc != 0 and "tls: failed to verify certificate: x509:" in err
    assert "label" not in hook.calls


async def test_invalid_configurations_are_refused(kc: Kubectl, hook: Hook) -> None:
    bad = mutating("bad", hook, "label", timeoutSeconds=60)
    del bad["webhooks"][0]["sideEffects"]
    rc, _, err = await apply(kc, bad)
    assert rc != 0
    assert "webhooks[0].sideEffects: Unsupported value" in err and "webhooks[0].timeoutSeconds" in err


async def test_no_endpoints_is_a_call_failure(cluster: SandboxAPIServer, kc: Kubectl, hook: Hook) -> None:
    cluster.store.delete_now("endpoints", NS, "hook")
    await kc.ok("apply", "-f", "-", stdin=json.dumps(mutating("label", hook, "label")).encode())
    rc, _, err = await apply(kc, pod("p"))
    assert rc != 0 and 'no endpoints available for service "hook"' in err


async def test_pods_the_controllers_create_pass_the_webhooks(
    tmp_path: Path, hook: Hook, kubectl_env: dict[str, str]
) -> None:
    """As in a real cluster, a ReplicaSet's and a Job's pods are created through admission: the mutating webhook
    sees each one, sent by the controller's service account, and its patch is in the stored pod. A webhook that fails
    under failurePolicy Fail stops the controller's creates."""
    template = {"metadata": {"labels": {"app": "ctl"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "ctl"}}, "template": template},
    }
    job_template = {"metadata": {"labels": {"app": "job"}}, "spec": {**template["spec"], "restartPolicy": "Never"}}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job", "namespace": "default"},
        "spec": {"template": job_template},
    }
    async with SandboxAPIServer(directory=tmp_path / "api") as srv:
        kc = Kubectl(kubectl_env, srv.kubeconfig_path)
        await apply(kc, mutating("label", hook, "label", url=True))
        await kc.ok("apply", "-f", "-", stdin=json.dumps(rs).encode())
        await kc.ok("apply", "-f", "-", stdin=json.dumps(job).encode())

        def pods() -> list[dict[str, Any]]:
            return srv.store.list("pods", "default")[0]

        await eventually(lambda: len(pods()) == 4, timeout=10, what="3 ReplicaSet pods and 1 Job pod")
        assert all(p["metadata"]["labels"]["mutated"] == "yes" for p in pods())
        users = sorted(review["userInfo"]["username"] for review in hook.calls["label"])
        assert (
            users
            == ["system:serviceaccount:kube-system:job-controller"]
            + ["system:serviceaccount:kube-system:replicaset-controller"] * 3
        )

        await kc.ok("delete", "mutatingwebhookconfiguration", "label")
        await apply(kc, mutating("fail", hook, "fail", url=True, failurePolicy="Fail"))
        await kc.ok("scale", "replicaset/rs", "--replicas=5")
        await eventually(lambda: len(hook.calls.get("fail", [])) >= 2, timeout=10, what="the failing webhook called")
        assert len([p for p in pods() if p["metadata"]["labels"]["app"] == "ctl"]) == 3
