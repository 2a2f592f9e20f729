"""Doctor's Kubernetes checks, through the product's ``KubeAPI`` with the same identity ``run`` uses.

The API server answers; a SelfSubjectAccessReview for every permission in ``vk_provider.permissions``; the
node name is free or already a virtual node; the kubelet serving certificate (csr mode: the CSR's state);
metrics-server serves ``metrics.k8s.io`` (advisory: only ``kubectl top`` needs it); the elastic webhook's
MutatingWebhookConfiguration is installed and cannot block the cluster (advisory: bursting works without it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from vk_provider.doctor.report import Check
from vk_provider.elastic.certs import MWC_PATH
from vk_provider.kube.client import KubeAPI, KubeError, create_api_client
from vk_provider.kubelet.tls import CURRENT, cert_info, split_pem
from vk_provider.permissions import REQUIRED, Permission
from vk_provider.settings import Settings

VIRTUAL_NODE_LABEL = ("type", "virtual-kubelet")
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"


def _identity(settings: Settings) -> str:
    kube = settings.kube
    if kube.kubeconfig is None:
        return "the in-cluster service account"
    return f"kubeconfig {kube.kubeconfig}" + (f" (context {kube.context})" if kube.context else "")


async def _connect(settings: Settings) -> tuple[KubeAPI | None, Check]:
    name = "kube.api"
    who = _identity(settings)
    try:
        api = KubeAPI(await create_api_client(settings.kube), timeout=settings.kube.request_timeout_seconds)
    except Exception as exc:
        return None, Check.fail(
            name,
            f"{who} could not be loaded: {type(exc).__name__}: {exc}",
            "set kube.kubeconfig to a readable kubeconfig (or run in a pod with a service account token)",
        )
    try:
        version = await api.get("/version")
    except KubeError as exc:
        await api.close()
        fix = (
            "the credentials were refused: renew the kubeconfig's token or certificate"
            if exc.status == 401
            else "see the error"
        )
        return None, Check.fail(name, f"{who}: {exc}", fix)
    except Exception as exc:
        await api.close()
        return None, Check.fail(
            name,
            f"{who}: the API server did not answer: {type(exc).__name__}: {exc}",
            "check the kubeconfig's server address and that this network reaches it",
        )
    return api, Check.ok(name, f"{who}: API server {version.get('gitVersion', '?')} answered")


async def _allowed(api: KubeAPI, perm: Permission) -> bool:
    attrs: dict[str, Any] = {"group": perm.group, "resource": perm.resource, "verb": perm.verb}
    if perm.subresource:
        attrs["subresource"] = perm.subresource
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }
    review = await api.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body)
    return bool((review.get("status") or {}).get("allowed"))


async def _permissions(api: KubeAPI) -> Check:
    name = "kube.permissions"
    try:
        answers = await asyncio.gather(*(_allowed(api, p) for p in REQUIRED))
    except KubeError as exc:
        return Check.fail(name, f"SelfSubjectAccessReview failed: {exc}", "see the error")
    missing = [p for p, ok in zip(REQUIRED, answers, strict=True) if not ok]
    if not missing:
        return Check.ok(name, f"all {len(REQUIRED)} permissions the daemon needs are granted")
    listed = "; ".join(f"{p} ({p.why})" for p in missing)
    return Check.fail(
        name,
        f"{len(missing)} of {len(REQUIRED)} missing: {listed}",
        "apply manifests/rbac.yaml (ClusterRole vk-eci) and bind it to the daemon's identity",
        data={"missing": [str(p) for p in missing]},
    )


async def _node_name(settings: Settings, api: KubeAPI) -> Check:
    name = "kube.node-name"
    node = settings.node.name
    try:
        existing = await api.get_or_none(f"/api/v1/nodes/{node}")
    except KubeError as exc:
        return Check.fail(name, f"could not read node {node}: {exc}", "grant get on nodes (manifests/rbac.yaml)")
    if existing is None:
        return Check.ok(name, f"{node} is free: the daemon will register it")
    labels = (existing.get("metadata") or {}).get("labels") or {}
    key, value = VIRTUAL_NODE_LABEL
    if labels.get(key) == value:
        return Check.ok(name, f"{node} exists and is a virtual node: the daemon adopts it")
    return Check.fail(
        name,
        f"{node} is a node of the cluster that is not virtual (no label {key}={value})",
        "choose another node.name: the daemon would take over a real node's object",
    )


def _saved_certificate(settings: Settings, now: dt.datetime) -> str | None:
    """A description of the valid serving certificate in cert_dir for this node, or None."""
    try:
        cert_pem, _key = split_pem((settings.kubelet.cert_dir / CURRENT).read_bytes())
        info = cert_info(cert_pem)
    except (OSError, ValueError, IndexError):
        return None
    if info.not_after <= now or info.common_name != f"system:node:{settings.node.name}":
        return None
    return f"valid until {info.not_after:%Y-%m-%d %H:%M} UTC"


async def _serving_certificate(settings: Settings, api: KubeAPI) -> Check:
    name = "kubelet.serving-certificate"
    kubelet = settings.kubelet
    now = dt.datetime.now(dt.UTC)
    if kubelet.tls_mode == "self-signed":
        return Check.ok(name, "self-signed (the API server cannot verify it; use tls_mode csr or files in production)")
    if kubelet.tls_mode == "files":
        try:
            info = cert_info(kubelet.cert_file.read_bytes()) if kubelet.cert_file else None
            readable = kubelet.key_file is not None and kubelet.key_file.read_bytes()
        except (OSError, ValueError) as exc:
            return Check.fail(
                name, f"cannot read the serving certificate: {exc}", "check kubelet.cert_file and kubelet.key_file"
            )
        if info is None or not readable:
            return Check.fail(name, "tls_mode files without both files", "set kubelet.cert_file and kubelet.key_file")
        if info.not_after <= now:
            return Check.fail(name, f"{kubelet.cert_file} expired {info.not_after:%Y-%m-%d}", "renew the certificate")
        return Check.ok(name, f"{kubelet.cert_file} valid until {info.not_after:%Y-%m-%d %H:%M} UTC")
    saved = _saved_certificate(settings, now)
    if saved:
        return Check.ok(name, f"CSR-issued certificate in {kubelet.cert_dir} {saved}")
    try:
        listing = await api.get(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            query={"fieldSelector": f"spec.signerName={KUBELET_SERVING_SIGNER}"},
        )
    except KubeError as exc:
        if exc.status == 403:
            return Check.skipped(
                name,
                "no certificate in cert_dir, and this identity may not list CSRs (the daemon needs get/create only); "
                "after start: kubectl get csr",
            )
        return Check.fail(name, f"could not list CSRs: {exc}", "see the error")
    prefix = f"csr-{settings.node.name}-"
    ours = [c for c in listing.get("items") or [] if str((c.get("metadata") or {}).get("name", "")).startswith(prefix)]
    if not ours:
        return Check.ok(
            name,
            "no serving CSR yet: the daemon files one at start; approve it (kubectl certificate approve) "
            "unless an approver does",
        )
    latest = max(ours, key=lambda c: str((c.get("metadata") or {}).get("creationTimestamp") or ""))
    csr = str(latest["metadata"]["name"])
    status = latest.get("status") or {}
    kinds = {str(c.get("type")) for c in status.get("conditions") or []}
    if "Denied" in kinds or "Failed" in kinds:
        return Check.fail(
            name, f"{csr} was {'denied' if 'Denied' in kinds else 'failed'}", "find out why; the daemon files a new one"
        )
    if "Approved" not in kinds:
        return Check.fail(name, f"{csr} waits for approval", f"kubectl certificate approve {csr}")
    if not status.get("certificate"):
        return Check.fail(
            name,
            f"{csr} is approved but not signed",
            f"no signer for {KUBELET_SERVING_SIGNER} runs: enable the controller manager's kubelet-serving signer",
        )
    return Check.ok(name, f"{csr} approved and issued")


async def _metrics_server(api: KubeAPI) -> Check:
    name = "kube.metrics-server"
    fix = "install metrics-server (kubectl top needs it; the daemon does not)"
    try:
        await api.get("/apis/metrics.k8s.io/v1beta1")
    except KubeError as exc:
        if exc.status == 404:
            return Check.fail(name, "metrics.k8s.io/v1beta1 is not served", fix, required=False)
        return Check.fail(name, f"APIService v1beta1.metrics.k8s.io is unavailable: {exc}", fix, required=False)
    return Check.ok(name, "metrics.k8s.io/v1beta1 is served (kubectl top works)", required=False)


async def _elastic_webhook(settings: Settings, api: KubeAPI) -> Check:
    name = "kube.elastic-webhook"
    elastic = settings.elastic
    if not elastic.enabled:
        return Check.skipped(name, "elastic.enabled is off", required=False)
    fix = "kubectl apply -f manifests/webhook.yaml (docs/elastic.md)"
    try:
        mwc = await api.get_or_none(f"{MWC_PATH}/{elastic.webhook_configuration}")
    except KubeError as exc:
        return Check.fail(name, f"could not read the MutatingWebhookConfiguration: {exc}", fix, required=False)
    if mwc is None:
        return Check.fail(
            name,
            f"MutatingWebhookConfiguration {elastic.webhook_configuration} not found: serverless pods are not routed "
            "at admission (burst works without it)",
            fix,
            required=False,
        )
    hooks = mwc.get("webhooks") or []
    blocking = [str(h.get("name")) for h in hooks if h.get("failurePolicy", "Fail") != "Ignore"]
    if blocking:
        return Check.fail(
            name,
            f"failurePolicy is not Ignore for {', '.join(blocking)}: a stopped daemon would block pod creation",
            "set failurePolicy: Ignore, as manifests/webhook.yaml does",
            required=False,
        )
    ca = "set" if all((h.get("clientConfig") or {}).get("caBundle") for h in hooks) else "written at the daemon's start"
    return Check.ok(name, f"{len(hooks)} webhook(s), failurePolicy Ignore, caBundle {ca}", required=False)


async def run_kube_checks(settings: Settings) -> list[Check]:
    api, connected = await _connect(settings)
    if api is None:
        reason = "the API server cannot be used (see kube.api)"
        names = ("kube.permissions", "kube.node-name", "kubelet.serving-certificate", "kube.metrics-server")
        webhook = Check.skipped("kube.elastic-webhook", reason, required=False)
        return [connected, *(Check.skipped(n, reason) for n in names), webhook]
    try:
        return [
            connected,
            await _permissions(api),
            await _node_name(settings, api),
            await _serving_certificate(settings, api),
            await _metrics_server(api),
            await _elastic_webhook(settings, api),
        ]
    finally:
        await api.close()
