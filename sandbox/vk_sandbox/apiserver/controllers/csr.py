"""The kubelet-serving CSR approver and signer.

Approver: a pending ``kubernetes.io/kubelet-serving`` request made by a node identity (username
``system:node:<name>``, groups including ``system:nodes``) is approved when the CSR is what a kubelet may ask
for: CN equal to the username, O exactly ``system:nodes``, only DNS and IP SANs (at least one), and usages within
digital signature, key encipherment and server auth, including server auth. (The real controller-manager never
auto-approves this signer; the sandbox plays the operator who would.) Anything else is left for a human.

Signer: every approved, not yet signed, not failed request for this signer is signed by the sandbox CA into
``status.certificate``, whoever filed it (a human approval vouches for the requester, as with the real signer); one
whose request itself is not a kubelet serving request gets a ``Failed`` condition (reason SignerValidationFailure)
as the real signer does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import ApiError
from ._common import (
    JSON,
    Context,
    KeyQueue,
    get_condition,
    guarded,
    log,
    meta,
    now_rfc3339,
    run_supervised,
    watch_forever,
)

SIGNER = "kubernetes.io/kubelet-serving"
ALLOWED_USAGES = frozenset({"digital signature", "key encipherment", "server auth"})


def _decode_request(csr: JSON) -> bytes:
    raw = (csr.get("spec") or {}).get("request")
    if not isinstance(raw, str):
        raise ValueError("spec.request is missing")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("spec.request is not base64") from exc


def kubelet_serving_problem(csr: JSON) -> str | None:
    """Why the approver leaves this CSR alone (not a node asking for its own serving certificate), or None."""
    spec = csr.get("spec") or {}
    username = str(spec.get("username") or "")
    if not username.startswith("system:node:") or len(username) == len("system:node:"):
        return f'username "{username}" is not a node identity'
    if "system:nodes" not in (spec.get("groups") or []):
        return "requester is not in the system:nodes group"
    return signing_problem(csr, common_name=username)


def signing_problem(csr: JSON, *, common_name: str | None = None) -> str | None:
    """Why the signer refuses this approved CSR, or None. Like the real signer it checks only the request itself
    (an operator who approved it vouched for the requester): CN system:node:<name>, O exactly system:nodes,
    DNS/IP SANs only, usages within the allowed set."""
    spec = csr.get("spec") or {}
    usages = set(spec.get("usages") or [])
    if "server auth" not in usages or not usages <= ALLOWED_USAGES:
        return f"usages must include server auth and be within {sorted(ALLOWED_USAGES)}, got {sorted(usages)}"
    try:
        request = x509.load_pem_x509_csr(_decode_request(csr))
    except ValueError as exc:
        return f"the request is not a PEM certificate request: {exc}"
    common_names = [str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if common_name is not None and common_names != [common_name]:
        return f"subject CN must be {common_name}"
    if len(common_names) != 1 or not common_names[0].startswith("system:node:"):
        return "subject CN must be system:node:<node name>"
    orgs = [str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if orgs != ["system:nodes"]:
        return "subject O must be exactly system:nodes"
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the request has no DNS or IP subject alternative names"
    names = list(san)
    if not names:
        return "the request has no DNS or IP subject alternative names"
    if any(not isinstance(n, x509.DNSName | x509.IPAddress) for n in names):
        return "only DNS and IP subject alternative names are allowed"
    return None


def _decided(csr: JSON) -> bool:
    return any((get_condition(csr, t) or {}).get("status") == "True" for t in ("Approved", "Denied"))


def approve(ctx: Context, name: str) -> None:
    def fn(csr: JSON) -> JSON | None:
        if _decided(csr):
            return None
        status = csr.setdefault("status", {})
        conditions = list(status.get("conditions") or [])
        now = now_rfc3339()
        conditions.append(
            {
                "type": "Approved",
                "status": "True",
                "reason": "AutoApproved",
                "message": "Auto approving kubelet serving certificate after SubjectAccessReview.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
        )
        status["conditions"] = conditions
        return csr

    ctx.store.mutate_now("certificatesigningrequests.certificates.k8s.io", None, name, fn, subresource="approval")


def _write_status(ctx: Context, name: str, change: Any) -> None:
    ctx.store.mutate_now("certificatesigningrequests.certificates.k8s.io", None, name, change, subresource="status")


def reconcile_csr(ctx: Context, csr: JSON) -> None:
    """Approve and/or sign one CSR if it is ours to handle."""
    spec = csr.get("spec") or {}
    name = str(meta(csr).get("name"))
    if spec.get("signerName") != SIGNER:
        return
    if not _decided(csr):
        if kubelet_serving_problem(csr) is None:
            approve(ctx, name)
            log.info("kubelet serving CSR approved", csr=name, username=spec.get("username"))
        return
    problem = signing_problem(csr)
    if (get_condition(csr, "Approved") or {}).get("status") != "True":
        return
    if (csr.get("status") or {}).get("certificate") or (get_condition(csr, "Failed") or {}).get("status") == "True":
        return
    if problem is None:
        try:
            cert = ctx.ca.sign_csr(
                _decode_request(csr),
                usages=list(spec.get("usages") or []),
                expiration_seconds=spec.get("expirationSeconds"),
            )
        except (ApiError, ValueError) as exc:
            problem = getattr(exc, "message", None) or str(exc)
        else:
            encoded = base64.b64encode(cert).decode()

            def signed(o: JSON) -> JSON:
                o.setdefault("status", {})["certificate"] = encoded
                return o

            _write_status(ctx, name, signed)
            log.info("kubelet serving CSR signed", csr=name)
            return
    failed_message = problem

    def failed(o: JSON) -> JSON:
        status = o.setdefault("status", {})
        now = now_rfc3339()
        status["conditions"] = [
            *(status.get("conditions") or []),
            {
                "type": "Failed",
                "status": "True",
                "reason": "SignerValidationFailure",
                "message": failed_message,
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
        ]
        return o

    _write_status(ctx, name, failed)


async def csr_signer(ctx: Context) -> None:
    """Approve and sign kubelet serving CSRs as they are created or approved."""
    queue: KeyQueue[str] = KeyQueue()

    def on_csr(etype: str, csr: JSON) -> None:
        if etype != "DELETED":
            queue.add(str(meta(csr).get("name")))

    async def worker() -> None:
        while True:
            for name in await queue.take():
                csr = ctx.store.get("certificatesigningrequests.certificates.k8s.io", None, name)
                if csr is None:
                    continue
                guarded("csr-signer", name, lambda: reconcile_csr(ctx, csr))  # noqa: B023 (called at once)

    await run_supervised(
        "csr-signer",
        lambda: watch_forever(ctx.store, "certificatesigningrequests.certificates.k8s.io", on_csr),
        worker,
    )
