"""Group names, identity tags and idempotency tokens.

A group's *name* is only cosmetic (it shows in the console): it is derived from namespace and pod
name, sanitised to the service's pattern (2-128 of ``[a-z0-9-]``, no leading/trailing ``-``), with a
hash suffix whenever sanitising or shortening lost information, so two pods never share a name.
A group's *identity* comes only from its tags (cluster, node, namespace, pod name, pod UID).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from vk_provider.provider import Pod

MAX_NAME = 128
TAG_CLUSTER = "vk-eci/cluster"
TAG_NODE = "vk-eci/node"
TAG_NAMESPACE = "vk-eci/namespace"
TAG_POD = "vk-eci/pod"
TAG_UID = "vk-eci/uid"
IDENTITY_TAGS = (TAG_CLUSTER, TAG_NODE, TAG_NAMESPACE, TAG_POD, TAG_UID)

_INVALID = re.compile(r"[^a-z0-9-]+")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def group_name(namespace: str, name: str) -> str:
    """The container group name for a pod: ``<ns>-<name>`` sanitised, with a hash when lossy."""
    raw = f"{namespace}-{name}"
    clean = _INVALID.sub("-", raw.lower()).strip("-")
    clean = re.sub(r"-{2,}", "-", clean)
    if clean == raw and 2 <= len(clean) <= MAX_NAME:
        return clean
    suffix = _digest(f"{namespace}/{name}")
    head = clean[: MAX_NAME - len(suffix) - 1].strip("-")
    return f"{head}-{suffix}" if head else f"pod-{suffix}"


def client_token(uid: str, purpose: str = "create") -> str:
    """An idempotency token (<= 64 ASCII chars) derived from the pod UID: same pod, same token."""
    return f"vk-{purpose}-{_digest(uid + '/' + purpose, 40)}"[:64]


def identity_tags(pod: Pod, *, cluster: str, node: str) -> dict[str, str]:
    meta = pod.get("metadata") or {}
    return {
        TAG_CLUSTER: cluster,
        TAG_NODE: node,
        TAG_NAMESPACE: str(meta.get("namespace") or "default"),
        TAG_POD: str(meta.get("name") or ""),
        TAG_UID: str(meta.get("uid") or ""),
    }


def identity_from_tags(tags: Mapping[str, str], *, cluster: str, node: str) -> tuple[str, str, str] | None:
    """(namespace, name, uid) when the tags mark a group of this cluster and node, else None."""
    if tags.get(TAG_CLUSTER) != cluster or tags.get(TAG_NODE) != node:
        return None
    ns, name, uid = tags.get(TAG_NAMESPACE), tags.get(TAG_POD), tags.get(TAG_UID)
    if not ns or not name or not uid:
        return None
    return ns, name, uid
