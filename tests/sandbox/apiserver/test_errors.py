"""metav1.Status bodies for API errors."""

from __future__ import annotations

from vk_sandbox.apiserver.errors import already_exists, conflict, invalid, not_found


def test_status_bodies_match_the_real_server() -> None:
    """Codes, reasons, messages and details are shaped as kubectl and the clients expect."""
    nf = not_found("deployments", "apps", "web").status()
    assert nf == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "web" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"kind": "deployments", "group": "apps", "name": "web"},
    }
    assert already_exists("pods", "", "p").status()["message"] == 'pods "p" already exists'
    c = conflict("pods", "", "p", "the object has been modified").status()
    assert c["code"] == 409 and c["reason"] == "Conflict"
    inv = invalid("Pod", "", "p", [("spec.containers", "Required value")]).status()
    assert inv["code"] == 422 and inv["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": "Required value", "field": "spec.containers"}
    ]
