"""Service-account JWTs: they verify, and tampered, expired, foreign or wrong-audience tokens do not."""

from __future__ import annotations

import base64
import json

from vk_sandbox.apiserver.tokens import TokenSigner


def test_mint_and_verify_round_trip() -> None:
    """A minted token verifies to its ServiceAccount identity and audiences."""
    signer = TokenSigner()
    claims = signer.verify(signer.mint("ns", "sa", sa_uid="u1", audiences=["a"]), audiences=["a"])
    assert claims is not None
    assert claims.username == "system:serviceaccount:ns:sa" and claims.uid == "u1" and claims.audiences == ["a"]
    assert "system:serviceaccounts:ns" in claims.groups


def test_rejects_tampered_expired_foreign_and_wrong_audience() -> None:
    """Any change to the claims, an expired token, another signer's token or a wrong audience is refused."""
    signer = TokenSigner()
    token = signer.mint("ns", "sa", audiences=["a"])
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["kubernetes.io"]["namespace"] = "kube-system"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert signer.verify(f"{head}.{forged}.{sig}") is None
    assert signer.verify(signer.mint("ns", "sa", expiration_seconds=-1)) is None
    assert TokenSigner().verify(token) is None
    assert signer.verify(token, audiences=["b"]) is None
    assert signer.verify("not-a-jwt") is None and signer.verify("a.b.c") is None
