"""Calling admission webhooks: which ones match a request, where they are, the AdmissionReview v1 round trip.

Mutating webhooks run first, ordered by configuration name and then by their place in it; each JSONPatch answer is
applied at once, so the next webhook sees it. A webhook with ``reinvocationPolicy: IfNeeded`` is called once more
when a later webhook changed the object after it ran. Validating webhooks run after, on the final object; all of them
must allow it (the real server calls them in parallel; the sandbox in order, which gives the same outcome).

Where a webhook is: ``clientConfig.url`` as given; ``clientConfig.service`` through the sandbox's mapping: the
Service's port numbered ``service.port`` (default 443) gives a target port, and the Service's Endpoints (or, without
them, its EndpointSlices, label ``kubernetes.io/service-name``) give an address and that port. The sandbox runs no
endpoints controller and routes no cluster IP: whoever serves the webhook writes the Endpoints (a loopback address
in tests). The TLS server name is ``<service>.<namespace>.svc`` (or the URL's host) and the certificate must chain
to ``caBundle`` (the system roots without one). A call waits at most ``timeoutSeconds``.

Failures read as the real server's: with ``failurePolicy: Fail`` a 500 "Internal error occurred: failed calling
webhook "NAME": failed to call webhook: Post "URL?timeout=Ns": <why>", with ``Ignore`` a logged warning and the
request goes on; ``allowed: false`` refuses with "admission webhook "NAME" denied the request: <message>" and the
webhook's code (at least 400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from vk_sandbox.apiserver import patch
from vk_sandbox.apiserver.auth import Identity
from vk_sandbox.apiserver.controllers.matching import selector_matches
from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.events import external, internal
from vk_sandbox.apiserver.resources import ResourceType
from vk_sandbox.apiserver.store import Store
from vk_sandbox.apiserver.webhookconfig import MUTATING, VALIDATING

JSON = dict[str, Any]
log = structlog.get_logger("vk_sandbox.apiserver.webhooks")
# The configurations themselves are never sent to webhooks (as the real server, so a bad webhook cannot lock
# itself in).
EXEMPT = frozenset({MUTATING, VALIDATING})


class CallFailed(Exception):
    """A webhook could not be called or answered nonsense: subject to its failurePolicy."""


@dataclass(frozen=True)
class Request:
    """What the webhooks are told about one write."""

    operation: str  # CREATE | UPDATE
    rt: ResourceType
    subresource: str | None
    namespace: str
    name: str
    ident: Identity
    dry_run: bool
    old: JSON | None = None  # internal form
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))


def configured(store: Store) -> bool:
    return bool(store.all_objects(MUTATING) or store.all_objects(VALIDATING))


def _hooks(store: Store, key: str) -> list[JSON]:
    configs = sorted(store.all_objects(key), key=lambda c: str((c.get("metadata") or {}).get("name")))
    return [h for c in configs for h in c.get("webhooks") or [] if isinstance(h, dict)]


def _rule_matches(rule: Mapping[str, Any], req: Request) -> bool:
    def has(values: Any, value: str) -> bool:
        return isinstance(values, list) and ("*" in values or value in values)

    if not has(rule.get("operations"), req.operation):
        return False
    if not has(rule.get("apiGroups"), req.rt.group) or not has(rule.get("apiVersions"), req.rt.version):
        return False
    scope = rule.get("scope") or "*"
    if scope != "*" and scope != ("Namespaced" if req.rt.namespaced else "Cluster"):
        return False
    for resource in rule.get("resources") or []:
        main, _, sub = str(resource).partition("/")
        if main in ("*", req.rt.plural) and sub in ("*", req.subresource or ""):
            return True
    return False


def matches(store: Store, hook: Mapping[str, Any], req: Request, obj: JSON) -> bool:
    """rules, namespaceSelector (the namespace's labels; a Namespace's own) and objectSelector (new or old labels)."""
    if not any(_rule_matches(r, req) for r in hook.get("rules") or [] if isinstance(r, dict)):
        return False
    selector = hook.get("namespaceSelector") or {}
    if selector:
        if req.rt.key == "namespaces":
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if not selector_matches(selector, labels):
                return False
        elif req.rt.namespaced:
            ns = store.get("namespaces", None, req.namespace)
            if not selector_matches(selector, ((ns or {}).get("metadata") or {}).get("labels") or {}):
                return False
    selector = hook.get("objectSelector") or {}
    if selector:
        new_labels = (obj.get("metadata") or {}).get("labels") or {}
        old_labels = ((req.old or {}).get("metadata") or {}).get("labels") or {}
        if not selector_matches(selector, new_labels) and not (req.old and selector_matches(selector, old_labels)):
            return False
    return True


@dataclass(frozen=True)
class _Target:
    shown: str  # the URL as the real server would name it in errors
    dial: str  # where the sandbox connects
    server_name: str


def _target(store: Store, hook: Mapping[str, Any]) -> _Target:
    client = hook.get("clientConfig") or {}
    timeout = f"timeout={int(hook.get('timeoutSeconds') or 10)}s"
    if client.get("url"):
        url = str(client["url"]) + ("&" if "?" in str(client["url"]) else "?") + timeout
        return _Target(url, url, urlsplit(url).hostname or "")
    service = client.get("service") or {}
    name, namespace = str(service.get("name")), str(service.get("namespace"))
    port = int(service.get("port") or 443)
    path = str(service.get("path") or "")
    server_name = f"{name}.{namespace}.svc"
    shown = f"https://{server_name}:{port}{path}?{timeout}"
    svc = store.get("services", namespace, name)
    if svc is None:
        raise CallFailed(f'failed to call webhook: Post "{shown}": service "{name}" not found')
    address = _endpoint(store, svc, port)
    if address is None:
        raise CallFailed(f'failed to call webhook: Post "{shown}": no endpoints available for service "{name}"')
    host, target_port = address
    return _Target(shown, f"https://{host}:{target_port}{path}?{timeout}", server_name)


def _endpoint(store: Store, svc: JSON, port: int) -> tuple[str, int] | None:
    """(address, port) of the Service's port ``port`` from its Endpoints or EndpointSlices (first ready address)."""
    meta = svc.get("metadata") or {}
    sp = next((p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port), None)
    if sp is None:
        return None
    target = sp.get("targetPort", port)
    port_name = sp.get("name") or ""

    def pick(ports: list[JSON]) -> int | None:
        for p in ports:
            if (port_name and p.get("name") == port_name) or p.get("port") == target or len(ports) == 1:
                return int(p["port"]) if isinstance(p.get("port"), int) else None
        return None

    endpoints = store.get("endpoints", meta.get("namespace"), str(meta.get("name")))
    for subset in (endpoints or {}).get("subsets") or []:
        number = pick(subset.get("ports") or [])
        addresses = subset.get("addresses") or []
        if number is not None and addresses:
            return str(addresses[0].get("ip")), number
    for slice_ in store.all_objects("endpointslices.discovery.k8s.io"):
        smeta = slice_.get("metadata") or {}
        if smeta.get("namespace") != meta.get("namespace"):
            continue
        if (smeta.get("labels") or {}).get("kubernetes.io/service-name") != meta.get("name"):
            continue
        number = pick(slice_.get("ports") or [])
        for ep in slice_.get("endpoints") or []:
            if number is not None and ep.get("addresses") and (ep.get("conditions") or {}).get("ready", True):
                return str(ep["addresses"][0]), number
    return None


def _ssl(hook: Mapping[str, Any]) -> ssl.SSLContext:
    bundle = (hook.get("clientConfig") or {}).get("caBundle")
    if not bundle:
        return ssl.create_default_context()
    try:
        pem = base64.b64decode(str(bundle), validate=True).decode()
        return ssl.create_default_context(cadata=pem)
    except (binascii.Error, UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
        raise CallFailed(f"failed to call webhook: invalid caBundle: {exc}") from exc


def _why(exc: BaseException, dial: str) -> str:
    """A Go-like description of a failed call."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "context deadline exceeded"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError) or isinstance(
        getattr(exc, "os_error", None), ssl.SSLCertVerificationError
    ):
        cert_error = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None)
        detail = getattr(cert_error, "verify_message", None) or str(cert_error)
        return f"tls: failed to verify certificate: x509: {detail}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        parts = urlsplit(dial)
        return f"dial tcp {parts.hostname}:{parts.port}: connect: connection refused"
    return str(exc) or type(exc).__name__


def review(req: Request, obj: JSON) -> JSON:
    rt = req.rt
    body: JSON = {
        "uid": req.uid,
        "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "resource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
        "requestKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "requestResource": {"group": rt.group, "version": rt.version, "resource": rt.plural},
        "name": req.name,
        "operation": req.operation,
        "userInfo": req.ident.as_user_info(),
        "object": external(rt, obj),
        "oldObject": external(rt, req.old) if req.old is not None else None,
        "dryRun": req.dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "CreateOptions" if req.operation == "CREATE" else "UpdateOptions",
        },
    }
    if rt.namespaced:
        body["namespace"] = req.namespace
    if req.subresource:
        body["subResource"] = body["requestSubResource"] = req.subresource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}


async def call(store: Store, hook: Mapping[str, Any], req: Request, obj: JSON) -> JSON:
    """POST the AdmissionReview; the webhook's ``response`` (uid checked). CallFailed on any failure to get one."""
    target = _target(store, hook)
    context = _ssl(hook)
    timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds") or 10))
    payload = review(req, obj)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=context)) as session,
            session.post(target.dial, json=payload, server_hostname=target.server_name) as resp,
        ):
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CallFailed(f'failed to call webhook: Post "{target.shown}": {_why(exc, target.dial)}') from exc
    if status != 200:
        detail = text.strip()[:200] or "unknown"
        raise CallFailed(
            f'failed to call webhook: an error on the server ("{detail}") has prevented the request from succeeding'
        )
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise CallFailed(f"received invalid webhook response: {exc}") from exc
    response = body.get("response") if isinstance(body, dict) else None
    if not isinstance(response, dict):
        raise CallFailed("received invalid webhook response: response is missing")
    if response.get("uid") != req.uid:
        raise CallFailed(
            f'received invalid webhook response: expected response.uid="{req.uid}", got "{response.get("uid") or ""}"'
        )
    return response


def denied(name: str, response: Mapping[str, Any]) -> ApiError:
    """The real ToStatusErr: the webhook's status with "admission webhook "NAME" denied the request" in front."""
    result = response.get("status") if isinstance(response.get("status"), dict) else {}
    assert isinstance(result, dict)
    code: int = result["code"] if isinstance(result.get("code"), int) else 0
    prefix = f'admission webhook "{name}" denied the request'
    if result.get("message"):
        message = f"{prefix}: {result['message']}"
    elif result.get("reason"):
        message = f"{prefix}: {result['reason']}"
    else:
        message = f"{prefix} without explanation"
    return ApiError(max(code, 400), str(result.get("reason") or ""), message, details=result.get("details"))


def _failed(name: str, why: CallFailed) -> ApiError:
    text = f'failed calling webhook "{name}": {why}'
    return ApiError(500, "InternalError", f"Internal error occurred: {text}", details={"causes": [{"message": text}]})


async def _one(store: Store, hook: JSON, req: Request, obj: JSON) -> JSON | None:
    """The webhook's response, or None when it failed and its failurePolicy is Ignore."""
    name = str(hook.get("name"))
    try:
        return await call(store, hook, req, obj)
    except CallFailed as why:
        if hook.get("failurePolicy") == "Ignore":
            log.warning("admission webhook failed, ignored (failurePolicy Ignore)", webhook=name, error=str(why))
            return None
        raise _failed(name, why) from None


async def mutate(store: Store, req: Request, obj: JSON) -> JSON:
    """Run the matching mutating webhooks (with reinvocation); the object as they left it (internal form)."""
    hooks = _hooks(store, MUTATING)
    version = 0  # counts the changes made to the object
    called_at: dict[int, int] = {}
    for rounds in (0, 1):
        for i, hook in enumerate(hooks):
            if rounds == 1 and not (
                hook.get("reinvocationPolicy") == "IfNeeded" and i in called_at and called_at[i] < version
            ):
                continue
            if not matches(store, hook, req, obj):
                continue
            response = await _one(store, hook, req, obj)
            if response is not None:
                if not response.get("allowed"):
                    raise denied(str(hook.get("name")), response)
                changed = _apply_patch(req.rt, obj, response)
                if changed is not None:
                    obj = changed
                    version += 1
            called_at[i] = version
        if rounds == 0 and not any(
            h.get("reinvocationPolicy") == "IfNeeded" and called_at.get(i, version) < version
            for i, h in enumerate(hooks)
        ):
            break
    return obj


def _apply_patch(rt: ResourceType, obj: JSON, response: Mapping[str, Any]) -> JSON | None:
    raw = response.get("patch")
    if not raw:
        return None
    if response.get("patchType") != "JSONPatch":
        raise ApiError(
            500, "InternalError", f"Internal error occurred: unsupported patch type {response.get('patchType')!r}"
        )
    try:
        ops = json.loads(base64.b64decode(str(raw)))
    except (binascii.Error, ValueError) as exc:
        raise ApiError(500, "InternalError", f"Internal error occurred: {exc}") from exc
    patched = patch.apply_json_patch(external(rt, obj), ops)
    if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
        raise ApiError(500, "InternalError", "Internal error occurred: the patched object must keep its metadata")
    new = internal(rt, patched)
    return None if new == obj else new


async def validate(store: Store, req: Request, obj: JSON) -> None:
    """Every matching validating webhook must allow the object."""
    for hook in _hooks(store, VALIDATING):
        if not matches(store, hook, req, obj):
            continue
        response = await _one(store, hook, req, obj)
        if response is not None and not response.get("allowed"):
            raise denied(str(hook.get("name")), response)
