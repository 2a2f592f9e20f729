"""Resolve what a pod references outside itself into ``PodResources``, the way the kubelet does.

- ConfigMaps and Secrets named by env (``valueFrom``, ``envFrom``), volumes (configMap, secret,
  projected) and imagePullSecrets are read once each, by a read sent after the daemon saw the pod and
  shared with the other pods it is as fresh for (shared_reads.py).
- A missing one that is required yields a ``MandatoryConfigMapNotFound`` / ``MandatorySecretNotFound``
  Warning and ``MissingReferences`` is raised: no group is created and the pod is retried. A missing
  optional one yields ``OptionalConfigMapNotFound`` / ``OptionalSecretNotFound`` and the pod starts.
- Service-link variables (``FOO_SERVICE_HOST`` ...) are built from the services of the pod's namespace
  when ``enableServiceLinks`` is on, plus (always, as the kubelet does) the ``kubernetes`` service of
  ``default`` unless the namespace has its own service of that name.
- Projected serviceAccountToken sources are minted with the TokenRequest API, bound to the pod, once:
  a group's files cannot be replaced without restarting its containers, so tokens are never rotated.
  The automounted token (``expirationSeconds`` 3607, no audience) is what kube-apiserver extends to a
  year (``--service-account-extend-token-expiration``, on by default); any other token really expires
  after its lifetime, and ``Resolution.expiring_tokens`` names it so the controller can warn.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from vk_provider.kube.client import JSON, KubeAPI, parse_time
from vk_provider.pods.shared_reads import SharedReads
from vk_provider.provider import Pod, PodResources

DEFAULT_TOKEN_SECONDS = 3600  # the API server's default for a projected source without expirationSeconds
# What the ServiceAccount admission plugin puts in the automounted kube-api-access volume; kube-apiserver
# issues a pod-bound token requested with exactly this lifetime (and no foreign audience) valid for a year.
EXTENDED_TOKEN_SECONDS = 3607


@dataclass(frozen=True)
class Missing:
    kind: str  # ConfigMap | Secret
    name: str
    optional: bool
    key: str | None = None  # a key missing from an existing object


class MissingReferences(Exception):
    """Required ConfigMaps/Secrets (or keys in them) are missing; the pod must not start yet."""

    def __init__(self, missing: list[Missing]) -> None:
        names = ", ".join(f"{m.kind.lower()} {m.name!r}" + (f" key {m.key!r}" if m.key else "") for m in missing)
        super().__init__(f"missing required {names}")
        self.missing = missing


@dataclass(frozen=True)
class ExpiringToken:
    """A projected token the API server did not extend: it stops working at ``expires_at``."""

    volume: str
    path: str
    seconds: int  # the lifetime requested
    expires_at: float  # time.time()


@dataclass
class Resolution:
    resources: PodResources
    missing: list[Missing] = field(default_factory=list)  # optional ones only (required raise)
    expiring_tokens: list[ExpiringToken] = field(default_factory=list)


@dataclass
class _Refs:
    config_maps: dict[str, bool] = field(default_factory=dict)  # name -> optional (False wins)
    secrets: dict[str, bool] = field(default_factory=dict)
    cm_keys: list[tuple[str, str, bool]] = field(default_factory=list)
    secret_keys: list[tuple[str, str, bool]] = field(default_factory=list)
    pull_secrets: set[str] = field(default_factory=set)


def _note(table: dict[str, bool], name: str | None, optional: Any) -> None:
    if not name:
        return
    opt = bool(optional)
    table[name] = table.get(name, True) and opt


def collect_references(pod: Pod) -> _Refs:
    spec = pod.get("spec") or {}
    refs = _Refs()
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for env in c.get("env") or []:
            vf = env.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"] or {}
                _note(refs.config_maps, r.get("name"), r.get("optional"))
                refs.cm_keys.append((str(r.get("name")), str(r.get("key")), bool(r.get("optional"))))
            if "secretKeyRef" in vf:
                r = vf["secretKeyRef"] or {}
                _note(refs.secrets, r.get("name"), r.get("optional"))
                refs.secret_keys.append((str(r.get("name")), str(r.get("key")), bool(r.get("optional"))))
        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef:
                r = ef["configMapRef"] or {}
                _note(refs.config_maps, r.get("name"), r.get("optional"))
            if "secretRef" in ef:
                r = ef["secretRef"] or {}
                _note(refs.secrets, r.get("name"), r.get("optional"))
    for vol in spec.get("volumes") or []:
        if "configMap" in vol:
            r = vol["configMap"] or {}
            _note(refs.config_maps, r.get("name"), r.get("optional"))
        if "secret" in vol:
            r = vol["secret"] or {}
            _note(refs.secrets, r.get("secretName"), r.get("optional"))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if "configMap" in src:
                r = src["configMap"] or {}
                _note(refs.config_maps, r.get("name"), r.get("optional"))
            if "secret" in src:
                r = src["secret"] or {}
                _note(refs.secrets, r.get("name"), r.get("optional"))
    for ps in spec.get("imagePullSecrets") or []:
        if ps.get("name"):
            refs.pull_secrets.add(str(ps["name"]))
    return refs


def _config_map_data(obj: JSON) -> dict[str, str]:
    data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.get("binaryData") or {}).items():
        try:
            data[str(k)] = base64.b64decode(v).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
    return data


def _secret_data(obj: JSON) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in (obj.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(v)
        except ValueError:
            continue
    for k, v in (obj.get("stringData") or {}).items():
        out[str(k)] = str(v).encode()
    return out


def service_env(services: list[JSON]) -> dict[str, str]:
    """Docker-link style variables for services that have a cluster IP, like the kubelet's."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = str((svc.get("metadata") or {}).get("name", "")).upper().replace("-", "_")
        ports = spec.get("ports") or []
        env[f"{name}_SERVICE_HOST"] = str(ip)
        if not ports:
            continue
        first = ports[0]
        env[f"{name}_SERVICE_PORT"] = str(first.get("port"))
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{str(p['name']).upper().replace('-', '_')}"] = str(p.get("port"))
        host = f"[{ip}]" if ":" in str(ip) else str(ip)  # Go's net.JoinHostPort, as the kubelet joins them
        proto0 = str(first.get("protocol") or "TCP")
        env[f"{name}_PORT"] = f"{proto0.lower()}://{host}:{first.get('port')}"
        for p in ports:
            proto = str(p.get("protocol") or "TCP")
            prefix = f"{name}_PORT_{p.get('port')}_{proto.upper()}"
            env[prefix] = f"{proto.lower()}://{host}:{p.get('port')}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p.get("port"))
            env[f"{prefix}_ADDR"] = str(ip)
    return env


class ResourceResolver:
    """Reads referenced objects through the API, sharing reads between pods (``SharedReads``): ConfigMaps and
    Secrets read after the pod was seen (``not_before``), a namespace's services no older than ``services_ttl``
    seconds."""

    def __init__(self, api: KubeAPI, *, services_ttl: float = 5.0) -> None:
        self.api = api
        self.services_ttl = services_ttl
        self.reads = SharedReads(api)

    async def _services_of(self, namespace: str) -> list[JSON]:
        # A burst of pods in one namespace shares one list of services for a few seconds.
        not_before = self.reads.clock() - self.services_ttl
        found = await self.reads.get(f"/api/v1/namespaces/{namespace}/services", not_before=not_before)
        return list((found or {}).get("items") or [])

    async def resolve(self, pod: Pod, *, not_before: float | None = None) -> Resolution:
        """``not_before`` (monotonic seconds): the ConfigMaps and Secrets are read after it, by default now; pass
        when the pod was seen to share reads sent since (shared_reads.py)."""
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        ns = str(meta.get("namespace") or "default")
        if not_before is None:
            not_before = self.reads.clock()
        refs = collect_references(pod)
        res = PodResources()
        missing: list[Missing] = []

        async def get(path: str) -> JSON | None:
            return await self.reads.get(path, not_before=not_before)

        for name, optional in sorted(refs.config_maps.items()):
            obj = await get(f"/api/v1/namespaces/{ns}/configmaps/{name}")
            res.config_maps[name] = None if obj is None else _config_map_data(obj)
            if obj is None:
                missing.append(Missing("ConfigMap", name, optional))
        for name, optional in sorted(refs.secrets.items()):
            obj = await get(f"/api/v1/namespaces/{ns}/secrets/{name}")
            res.secrets[name] = None if obj is None else _secret_data(obj)
            if obj is None:
                missing.append(Missing("Secret", name, optional))
        for name in sorted(refs.pull_secrets - set(res.secrets)):
            # The kubelet only warns about a missing pull secret; the pull may still work.
            obj = await get(f"/api/v1/namespaces/{ns}/secrets/{name}")
            res.secrets[name] = None if obj is None else _secret_data(obj)
            if obj is None:
                missing.append(Missing("Secret", name, True))
        for name, key, optional in refs.cm_keys:
            cm = res.config_maps.get(name)
            if cm is not None and key not in cm:
                missing.append(Missing("ConfigMap", name, optional, key))
        for name, key, optional in refs.secret_keys:
            sec = res.secrets.get(name)
            if sec is not None and key not in sec:
                missing.append(Missing("Secret", name, optional, key))
        required = [m for m in missing if not m.optional]
        if required:
            raise MissingReferences(missing)
        # Like the kubelet: the namespace's services when links are enabled, and always the ``kubernetes``
        # service of ``default`` unless the namespace has its own service of that name.
        services = list(await self._services_of(ns)) if spec.get("enableServiceLinks", True) else []
        if not any((s.get("metadata") or {}).get("name") == "kubernetes" for s in services):
            services += [
                s for s in await self._services_of("default") if (s.get("metadata") or {}).get("name") == "kubernetes"
            ]
        res.service_env = service_env(services)
        expiring = await self._tokens(pod, res)
        return Resolution(resources=res, missing=missing, expiring_tokens=expiring)

    async def _tokens(self, pod: Pod, res: PodResources) -> list[ExpiringToken]:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        ns = str(meta.get("namespace") or "default")
        sa = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        expiring: list[ExpiringToken] = []
        for vol in spec.get("volumes") or []:
            for src in (vol.get("projected") or {}).get("sources") or []:
                tok = src.get("serviceAccountToken")
                if not tok:
                    continue
                seconds = int(tok.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
                body: dict[str, Any] = {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {
                        "audiences": [tok["audience"]] if tok.get("audience") else [],
                        "expirationSeconds": seconds,
                        "boundObjectRef": {
                            "kind": "Pod",
                            "apiVersion": "v1",
                            "name": meta.get("name"),
                            "uid": meta.get("uid"),
                        },
                    },
                }
                issued = time.time()
                out = await self.api.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body=body)
                status = out.get("status") or {}
                token = str(status.get("token") or "")
                res.tokens[f"{vol.get('name')}/{tok.get('path')}"] = token
                claimed = jwt_expiry(token)
                if seconds == EXTENDED_TOKEN_SECONDS and (
                    # A foreign audience is extended only if the API server accepts it as its own: the JWT says.
                    not tok.get("audience") or (claimed is not None and claimed - issued > 2 * seconds)
                ):
                    continue
                stated = parse_time(status.get("expirationTimestamp"))
                expires = claimed or (stated.timestamp() if stated else issued + seconds)
                expiring.append(ExpiringToken(str(vol.get("name")), str(tok.get("path")), seconds, expires))
        return expiring


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (only to tell the user when it expires).

    kube-apiserver states ``status.expirationTimestamp`` as requested even when it extended the token;
    the claim is the truth.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # bad base64, bad UTF-8 or bad JSON
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        return float(exp)
    except OverflowError:  # an integer too large for a float is no time either
        return None
