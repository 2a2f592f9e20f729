"""TokenReview answered from the narrow access context alone, with no HTTP server."""

from __future__ import annotations

from vk_sandbox.apiserver.auth import Authenticator, Authorizer
from vk_sandbox.apiserver.context import AccessContext
from vk_sandbox.apiserver.handlers.reviews import Reviews
from vk_sandbox.apiserver.store import Store
from vk_sandbox.apiserver.tokens import TokenSigner


def test_token_review_static_tokens_jwts_and_audiences() -> None:
    """Static tokens and service-account JWTs authenticate; a wrong audience, a foreign token or none do not."""
    store, signer = Store(), TokenSigner()
    store.create_now("namespaces", {"metadata": {"name": "ns"}})
    sa = store.create_now("serviceaccounts", {"metadata": {"name": "sa", "namespace": "ns"}})
    authenticator = Authenticator(store, signer)
    authenticator.add_static_token("t0k", "bob", ["devs"])
    reviews = Reviews(AccessContext(authenticator, Authorizer(store)))

    out = reviews.token_review({"token": "t0k"})
    assert out["authenticated"] is True and out["user"]["username"] == "bob"
    jwt = signer.mint("ns", "sa", sa_uid=sa["metadata"]["uid"], audiences=["vk", "other"])
    out = reviews.token_review({"token": jwt, "audiences": ["vk"]})
    assert out["authenticated"] is True and out["audiences"] == ["vk"]
    assert out["user"]["username"] == "system:serviceaccount:ns:sa"
    assert reviews.token_review({"token": jwt, "audiences": ["nobody"]})["authenticated"] is False
    assert reviews.token_review({"token": TokenSigner().mint("ns", "sa")})["error"] == "invalid bearer token"
    assert reviews.token_review({})["error"] == "token is required"
