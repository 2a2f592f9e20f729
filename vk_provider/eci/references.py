"""What a pod's references read while it is translated, shared by ``env.py`` and ``volumes.py``.

``TranslateContext`` carries the pod, the ConfigMaps, Secrets and tokens the controller resolved for
it, and what translation has learned so far (warnings, the group's size). The lookups here raise
``TransientError`` for a missing mandatory ConfigMap or Secret, as the kubelet keeps retrying those;
``field_value`` and ``resource_value`` are the downward API (``fieldRef``, ``resourceFieldRef``),
read by environment variables and downwardAPI volumes alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vk_provider.eci.specs import SizeChoice, ceil_div, parse_quantity
from vk_provider.errors import InvalidInput, TransientError
from vk_provider.provider import Pod, PodResources
from vk_provider.settings import ECISettings

_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class TranslateContext:
    """The pod being translated, what it references, and what translation has learned so far."""

    def __init__(self, pod: Pod, resources: PodResources, settings: ECISettings, node_name: str) -> None:
        self.pod = pod
        self.meta: dict[str, Any] = pod.get("metadata") or {}
        self.spec: dict[str, Any] = pod.get("spec") or {}
        self.resources = resources
        self.settings = settings
        self.node_name = node_name
        self.warnings: list[str] = []
        self.group_size: SizeChoice | None = None
        self.sizes: list[SizeChoice] = []


def config_map(ctx: TranslateContext, name: str, optional: bool, what: str) -> dict[str, str] | None:
    data = ctx.resources.config_maps.get(name)
    if data is None and not optional:
        raise TransientError(f"{what}: configmap {name!r} not found", reason="MandatoryConfigMapNotFound")
    return data


def secret(ctx: TranslateContext, name: str, optional: bool, what: str) -> dict[str, bytes] | None:
    data = ctx.resources.secrets.get(name)
    if data is None and not optional:
        raise TransientError(f"{what}: secret {name!r} not found", reason="MandatorySecretNotFound")
    return data


def secret_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def field_value(ctx: TranslateContext, path: str, what: str) -> str:
    meta = ctx.meta
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": ctx.node_name,
        "spec.serviceAccountName": ctx.spec.get("serviceAccountName") or "default",
    }
    if path in simple:
        return str(simple[path] or "")
    m = _LABEL_REF.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise InvalidInput(f"{what}: fieldRef {path!r} is not supported")


def resource_value(ctx: TranslateContext, c: Mapping[str, Any], ref: Mapping[str, Any], what: str) -> str:
    container_name = ref.get("containerName") or c.get("name")
    target = c
    for other in (ctx.spec.get("containers") or []) + (ctx.spec.get("initContainers") or []):
        if other.get("name") == container_name:
            target = other
    resource = str(ref.get("resource"))
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise InvalidInput(f"{what}: resourceFieldRef {resource!r} is not supported")
    resources = target.get("resources") or {}
    raw = (resources.get(kind) or {}).get(res)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(res)
    if raw is None:
        # The kubelet falls back to the node's allocatable; ours is the group's size.
        size = ctx.group_size or SizeChoice()
        if res == "cpu":
            raw = str(size.cpu or 0)
        elif res == "memory":
            raw = f"{size.memory or 0}Gi"
        else:
            raw = "30Gi"
    try:
        value = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1")
    except ValueError:
        raise InvalidInput(f"{what}: resourceFieldRef has a bad quantity") from None
    if divisor <= 0:
        raise InvalidInput(f"{what}: resourceFieldRef divisor must be positive")
    # The kubelet rounds up to whole divisors (a 250m CPU limit with divisor 1 reads as 1).
    return str(ceil_div(value, divisor) if value > 0 else 0)


__all__ = ["TranslateContext", "config_map", "field_value", "resource_value", "secret", "secret_text"]
