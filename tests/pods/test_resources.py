"""pods/resources.py on its own; resolving a pod's references is exercised through reconcile (test_reconcile.py)."""

from __future__ import annotations

from tests.pods.harness import jwt
from vk_provider.pods.resources import jwt_expiry


def test_jwt_expiry_reads_the_claim_and_tolerates_garbage() -> None:
    """The exp claim of a JWT is read; anything unreadable (not a JWT, bad base64, a non-number exp) is None."""
    assert jwt_expiry(jwt({"exp": 1700000000})) == 1700000000.0
    for bad in ("", "tok-default", "a.b.c", "a.!!!.c", jwt({"exp": "soon"}), jwt({"exp": True})):
        assert jwt_expiry(bad) is None
