"""A container's environment, as the kubelet builds it: envFrom, env (ConfigMap and Secret keys, the
downward API, $(VAR) expansion) and service links, in the kubelet's order."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vk_provider.eci.references import (
    TranslateContext,
    config_map,
    field_value,
    resource_value,
    secret,
    secret_text,
)
from vk_provider.eci.request import EnvVar
from vk_provider.errors import InvalidInput, TransientError

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_EXPAND = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(text: str, values: Mapping[str, str | None]) -> str:
    """The kubelet's $(VAR) expansion: known names are replaced, $$ escapes, unknown stay as they are."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        v = values.get(m.group(1))
        return m.group(0) if v is None else v

    return _EXPAND.sub(sub, text)


def container_env(ctx: TranslateContext, c: Mapping[str, Any], what: str) -> list[EnvVar]:
    # The kubelet's order: envFrom first, then env (later wins), then service links for names not set.
    out: dict[str, EnvVar] = {}
    for src in c.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        items: dict[str, str] = {}
        if src.get("configMapRef"):
            ref = src["configMapRef"]
            items = dict(config_map(ctx, str(ref.get("name")), bool(ref.get("optional")), what) or {})
        elif src.get("secretRef"):
            ref = src["secretRef"]
            items = {
                k: secret_text(v)
                for k, v in (secret(ctx, str(ref.get("name")), bool(ref.get("optional")), what) or {}).items()
            }
        bad = []
        for k, v in items.items():
            key = prefix + k
            if not _ENV_NAME.match(key):
                bad.append(key)
                continue
            out[key] = EnvVar(key=key, value=v)
        if bad:
            ctx.warnings.append(
                f"{what}: skipped invalid environment variable names from envFrom: {', '.join(sorted(bad))}"
            )
    values: dict[str, str | None] = {k: v.value for k, v in out.items()}
    for e in c.get("env") or []:
        key = str(e.get("name"))
        if "value" in e or not e.get("valueFrom"):
            var = EnvVar(key=key, value=expand(str(e.get("value") or ""), {**ctx.resources.service_env, **values}))
        else:
            resolved = _value_from(ctx, c, e["valueFrom"], what, key)
            if resolved is None:
                continue
            var = resolved
        out[key] = var
        values[key] = var.value
    for k, v in ctx.resources.service_env.items():
        if k not in out:
            out[k] = EnvVar(key=k, value=v)
    return list(out.values())


def _value_from(
    ctx: TranslateContext, c: Mapping[str, Any], vf: Mapping[str, Any], what: str, key: str
) -> EnvVar | None:
    if vf.get("configMapKeyRef"):
        ref = vf["configMapKeyRef"]
        optional = bool(ref.get("optional"))
        data = config_map(ctx, str(ref.get("name")), optional, what)
        if data is None or ref.get("key") not in data:
            if optional:
                return None
            raise TransientError(
                f"{what}: env {key}: key {ref.get('key')!r} not found in configmap {ref.get('name')!r}",
                reason="MandatoryConfigMapNotFound",
            )
        return EnvVar(key=key, value=data[str(ref["key"])])
    if vf.get("secretKeyRef"):
        ref = vf["secretKeyRef"]
        optional = bool(ref.get("optional"))
        sdata = secret(ctx, str(ref.get("name")), optional, what)
        if sdata is None or ref.get("key") not in sdata:
            if optional:
                return None
            raise TransientError(
                f"{what}: env {key}: key {ref.get('key')!r} not found in secret {ref.get('name')!r}",
                reason="MandatorySecretNotFound",
            )
        return EnvVar(key=key, value=secret_text(sdata[str(ref["key"])]))
    if vf.get("fieldRef"):
        path = str(vf["fieldRef"].get("fieldPath"))
        if path in ("status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs"):
            # Known only once the group runs: ECI resolves it. Each group is its own host, so the
            # host IP is the pod IP.
            return EnvVar(key=key, field_path="status.podIP")
        return EnvVar(key=key, value=field_value(ctx, path, f"{what}: env {key}"))
    if vf.get("resourceFieldRef"):
        return EnvVar(key=key, value=resource_value(ctx, c, vf["resourceFieldRef"], f"{what}: env {key}"))
    raise InvalidInput(f"{what}: env {key}: unsupported valueFrom")


__all__ = ["container_env", "expand"]
