"""Admission: the one step every API write passes before the store."""

from __future__ import annotations

import json
from typing import Any

from tests.kubectl import Kubectl
from tests.sandbox.apiserver.test_controllers_csr import csr_object, csr_pem
from vk_sandbox.apiserver.admission import CSR, Admission
from vk_sandbox.apiserver.auth import Identity
from vk_sandbox.apiserver.resources import RESOURCES
from vk_sandbox.apiserver.server import SandboxAPIServer
from vk_sandbox.apiserver.store import Store

ALICE = Identity("alice", ("devs", "system:authenticated"))


def _csr_body(name: str) -> dict[str, Any]:
    """A CSR whose body claims to come from node n1 (with a uid), whoever sends it."""
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", **csr_object(name, csr_pem())}
    body["spec"]["uid"] = "forged-uid"
    return body


async def test_a_created_csr_records_its_requester_and_nothing_else_changes() -> None:
    """On create a CSR's requester fields are the caller's, whatever the body said; updates, subresources and other
    kinds pass unchanged."""
    admit = Admission(Store()).admit
    obj = _csr_body("c")
    await admit("CREATE", RESOURCES[CSR], None, obj, ALICE)
    assert obj["spec"]["username"] == "alice" and obj["spec"]["groups"] == ["devs", "system:authenticated"]
    assert "uid" not in obj["spec"]
    for op, sub in (("UPDATE", None), ("UPDATE", "status"), ("UPDATE", "approval")):
        other = _csr_body("c")
        await admit(op, RESOURCES[CSR], sub, other, ALICE)  # type: ignore[arg-type]
        assert other["spec"]["username"] == "system:node:n1" and other["spec"]["uid"] == "forged-uid"
    pod = {"metadata": {"name": "p"}, "spec": {"username": "x"}}
    await admit("CREATE", RESOURCES["pods"], None, pod, ALICE)
    assert pod["spec"] == {"username": "x"}


async def test_server_side_apply_create_passes_admission(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """A CSR created by server-side apply records its requester too, as one created by POST."""
    await kubectl.ok("apply", "--server-side", "-f", "-", stdin=json.dumps(_csr_body("applied")).encode())
    await kubectl.ok("create", "-f", "-", stdin=json.dumps(_csr_body("posted")).encode())
    for name in ("applied", "posted"):
        stored = apiserver.store.get(CSR, None, name)
        assert stored is not None
        assert stored["spec"]["username"] == "sandbox-admin" and "uid" not in stored["spec"]
