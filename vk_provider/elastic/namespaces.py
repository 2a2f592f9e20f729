"""The namespaces' labels, from a watch: namespaceSelectors are matched against them.

The AdmissionReview of a pod does not carry its namespace's labels, so the webhook and the burst controller
read them here, from memory. A namespace created a moment before its first pod may not be in the cache yet;
its pods are then decided with no namespace labels (the burst controller decides again later from the same
cache, by then filled).
"""

from __future__ import annotations

from collections.abc import Mapping

from vk_provider.kube.client import JSON, KubeAPI
from vk_provider.kube.watch import Informer


def _ignore(kind: str, obj: JSON) -> None:
    return None


class NamespaceLabels:
    """A list-then-watch of namespaces; ``labels(name)`` answers from its cache."""

    def __init__(self, api: KubeAPI) -> None:
        self.informer = Informer(api, "/api/v1/namespaces", handler=_ignore)

    def labels(self, name: str) -> Mapping[str, str]:
        ns = self.informer.cache.get(name)
        if ns is None:
            return {}
        return (ns.get("metadata") or {}).get("labels") or {}

    async def run(self) -> None:
        await self.informer.run()
