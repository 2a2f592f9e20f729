"""Kubeconfig files: one cluster, one user, one context (the sandbox's and the test launcher's)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cert_user(cert: bytes, key: bytes) -> dict[str, str]:
    """A kubeconfig user entry with an inline client certificate and key."""
    return {"client-certificate-data": b64(cert), "client-key-data": b64(key)}


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, cluster: str, user: str, entry: dict[str, Any]) -> Path:
    """Write a kubeconfig for ``user`` (``entry``: token, inline or file certificate) at ``server``; mode 0600."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": entry}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
