"""Service-account tokens: ES256 JWTs the sandbox signs and verifies itself with ``cryptography``."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = ["https://kubernetes.default.svc.cluster.local"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    namespace: str
    service_account: str
    uid: str
    audiences: list[str]
    expires: int
    pod: dict[str, str] | None
    jti: str = ""

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def groups(self) -> list[str]:
        return ["system:serviceaccounts", f"system:serviceaccounts:{self.namespace}", "system:authenticated"]


class TokenSigner:
    """Signs and verifies ES256 service-account JWTs with one key made at start."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_id = uuid.uuid4().hex

    def mint(
        self,
        namespace: str,
        service_account: str,
        *,
        sa_uid: str = "",
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
        pod: dict[str, str] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": audiences or DEFAULT_AUDIENCES,
            "iat": now,
            "nbf": now,
            "exp": now + expiration_seconds,
            "jti": uuid.uuid4().hex,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": sa_uid}},
        }
        if pod:
            claims["kubernetes.io"]["pod"] = pod
        header = {"alg": "ES256", "typ": "JWT", "kid": self.key_id}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def verify(self, token: str, *, audiences: list[str] | None = None) -> TokenClaims | None:
        """The claims of a valid, unexpired token of ours (matching one of ``audiences`` if given), or None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "ES256" or len(sig) != 64:
            return None
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self._key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
            return None
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float) or now >= exp or now + 60 < nbf:
            return None
        aud = claims.get("aud")
        aud_list = [aud] if isinstance(aud, str) else list(aud or [])
        if audiences and not set(audiences) & set(aud_list):
            return None
        k8s = claims.get("kubernetes.io") or {}
        sa = k8s.get("serviceaccount") or {}
        if not isinstance(sa, dict) or not k8s.get("namespace") or not sa.get("name"):
            return None
        pod = k8s.get("pod")
        return TokenClaims(
            namespace=str(k8s["namespace"]),
            service_account=str(sa["name"]),
            uid=str(sa.get("uid") or ""),
            audiences=[str(a) for a in aud_list],
            expires=int(exp),
            pod=pod if isinstance(pod, dict) else None,
            jti=str(claims.get("jti") or ""),
        )
