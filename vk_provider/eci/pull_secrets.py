"""imagePullSecrets -> ECI registry credentials: ``.dockerconfigjson`` and ``.dockercfg`` Secrets, one
credential per registry host. Like the kubelet, a missing or unreadable pull secret is a warning and
the image is pulled without it; a password never appears in a warning."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from vk_provider.eci.references import TranslateContext
from vk_provider.eci.request import RegistryCredential


def _registry_server(raw: str) -> str:
    server = re.sub(r"^[a-z]+://", "", raw.strip())
    server = server.split("/", 1)[0]
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io") else server


def registry_credentials(ctx: TranslateContext) -> list[RegistryCredential]:
    out: list[RegistryCredential] = []
    seen: set[str] = set()
    for ref in ctx.spec.get("imagePullSecrets") or []:
        name = str(ref.get("name"))
        data = ctx.resources.secrets.get(name)
        if data is None:
            # The kubelet only warns and tries an anonymous pull.
            ctx.warnings.append(f"imagePullSecret {name!r} not found; pulling without it")
            continue
        auths: Mapping[str, Any] = {}
        try:
            if ".dockerconfigjson" in data:
                auths = json.loads(data[".dockerconfigjson"]).get("auths") or {}
            elif ".dockercfg" in data:
                auths = json.loads(data[".dockercfg"])
            else:
                ctx.warnings.append(f"imagePullSecret {name!r} has neither .dockerconfigjson nor .dockercfg")
                continue
        except (ValueError, AttributeError):
            # Never echo the content: it holds passwords.
            ctx.warnings.append(f"imagePullSecret {name!r} is not valid docker config JSON; ignored")
            continue
        for server, entry in auths.items():
            if not isinstance(entry, Mapping):
                continue
            user, password = entry.get("username"), entry.get("password")
            if (user is None or password is None) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
                except ValueError:
                    ctx.warnings.append(f"imagePullSecret {name!r}: an auth entry is not base64; ignored")
                    continue
            host = _registry_server(str(server))
            if not user or password is None or host in seen:
                continue
            seen.add(host)
            out.append(RegistryCredential(server=host, username=str(user), password=SecretStr(str(password))))
    return out


__all__ = ["registry_credentials"]
