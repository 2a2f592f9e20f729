"""Just enough of the Kubernetes protobuf encoding to read the request bodies kubectl's typed clients send.

kubectl's typed clients (``auth can-i``, ``create token``, ``certificate approve|deny``,
``create namespace|configmap|secret|serviceaccount|deployment|job``) send ``application/vnd.kubernetes.protobuf``
and read back whatever Content-Type we answer with, so decoding these few messages into their JSON shape is all that
is needed (for pod templates, only the fields kubectl's generators set). Everything else gets 415; ``kubectl apply``
and ``create -f`` send JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from vk_sandbox.apiserver.errors import ApiError, bad_request

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

Fields = dict[int, list[Any]]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise bad_request("truncated protobuf body")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse(data: bytes) -> Fields:
    """Field number -> raw values (ints for varints, bytes for length-delimited)."""
    out: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > len(data):
                raise bad_request("truncated protobuf body")
            value, pos = data[pos : pos + n], pos + n
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise bad_request("unsupported protobuf wire type")
        out.setdefault(num, []).append(value)
    return out


def _str(f: Fields, n: int) -> str | None:
    v = f.get(n)
    return v[-1].decode() if v else None


def _strs(f: Fields, n: int) -> list[str]:
    return [v.decode() for v in f.get(n, [])]


def _msg(f: Fields, n: int) -> Fields | None:
    v = f.get(n)
    return parse(v[-1]) if v else None


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    # Go's protobuf encoding writes empty strings for unset string fields; JSON would omit them.
    return {k: v for k, v in d.items() if v not in (None, [], {}, "")}


def _map(f: Fields, n: int, *, binary: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in f.get(n, []):
        e = parse(entry)
        key = _str(e, 1) or ""
        raw = e.get(2, [b""])[-1]
        out[key] = base64.b64encode(raw).decode() if binary else raw.decode()
    return out


def _meta(f: Fields | None) -> dict[str, Any]:
    if f is None:
        return {}
    return _compact(
        {
            "name": _str(f, 1),
            "generateName": _str(f, 2),
            "namespace": _str(f, 3),
            "resourceVersion": _str(f, 6),
            "labels": _map(f, 11),
            "annotations": _map(f, 12),
            "finalizers": _strs(f, 14),
        }
    )


def _bool(f: Fields, n: int) -> bool | None:
    v = f.get(n)
    return bool(v[-1]) if v else None


def _refs(f: Fields, n: int) -> list[dict[str, Any]]:
    return [{"name": _str(parse(v), 1) or ""} for v in f.get(n, [])]


def _namespace(obj: Fields) -> dict[str, Any]:
    spec = _msg(obj, 2)
    return {"spec": {"finalizers": _strs(spec, 1)}} if spec and spec.get(1) else {}


def _configmap(obj: Fields) -> dict[str, Any]:
    return _compact({"data": _map(obj, 2), "binaryData": _map(obj, 3, binary=True), "immutable": _bool(obj, 4)})


def _secret(obj: Fields) -> dict[str, Any]:
    return _compact(
        {
            "data": _map(obj, 2, binary=True),
            "type": _str(obj, 3),
            "stringData": _map(obj, 4),
            "immutable": _bool(obj, 5),
        }
    )


def _serviceaccount(obj: Fields) -> dict[str, Any]:
    return _compact(
        {
            "secrets": _refs(obj, 2),
            "imagePullSecrets": _refs(obj, 3),
            "automountServiceAccountToken": _bool(obj, 4),
        }
    )


def _time(f: Fields, n: int) -> str | None:
    t = _msg(f, n)
    if t is None or not t.get(1):
        return None
    return datetime.fromtimestamp(int(t[1][-1]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csr(obj: Fields) -> dict[str, Any]:
    # Only what an /approval or /status write keeps: the conditions and the certificate.
    out: dict[str, Any] = {}
    spec = _msg(obj, 2)
    if spec is not None:
        out["spec"] = _compact(
            {
                "request": base64.b64encode(spec[1][-1]).decode() if spec.get(1) else None,
                "signerName": _str(spec, 7),
                "usages": _strs(spec, 5),
                "expirationSeconds": int(spec[8][-1]) if spec.get(8) else None,
            }
        )
    status = _msg(obj, 3)
    if status is not None:
        conditions = []
        for raw in status.get(1, []):
            c = parse(raw)
            conditions.append(
                _compact(
                    {
                        "type": _str(c, 1),
                        "status": _str(c, 6),
                        "reason": _str(c, 2),
                        "message": _str(c, 3),
                        "lastUpdateTime": _time(c, 4),
                        "lastTransitionTime": _time(c, 5),
                    }
                )
            )
        out["status"] = _compact(
            {
                "conditions": conditions,
                "certificate": base64.b64encode(status[2][-1]).decode() if status.get(2) else None,
            }
        )
    return out


def _int(f: Fields, n: int) -> int | None:
    v = f.get(n)
    if not v:
        return None
    raw = int(v[-1])
    return raw - (1 << 64) if raw >= 1 << 63 else raw  # varints of negative int32/int64 are 64-bit two's complement


def _quantities(f: Fields, n: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in f.get(n, []):
        e = parse(entry)
        q = _msg(e, 2)
        out[_str(e, 1) or ""] = (_str(q, 1) or "") if q is not None else ""
    return out


def _container(f: Fields) -> dict[str, Any]:
    # The fields kubectl's generators set (create deployment/job: name, image, command, args, ports, env).
    ports = [
        _compact({"name": _str(p, 1), "containerPort": _int(p, 3), "protocol": _str(p, 4)})
        for p in (parse(raw) for raw in f.get(6, []))
    ]
    env = [_compact({"name": _str(e, 1), "value": _str(e, 2)}) for e in (parse(raw) for raw in f.get(7, []))]
    res = _msg(f, 8)
    resources = {} if res is None else _compact({"limits": _quantities(res, 1), "requests": _quantities(res, 2)})
    return _compact(
        {
            "name": _str(f, 1),
            "image": _str(f, 2),
            "command": _strs(f, 3),
            "args": _strs(f, 4),
            "workingDir": _str(f, 5),
            "ports": ports,
            "env": env,
            "resources": resources,
            "terminationMessagePath": _str(f, 13),
            "imagePullPolicy": _str(f, 14),
            "terminationMessagePolicy": _str(f, 20),
        }
    ) | {"resources": resources}


def _pod_spec(f: Fields) -> dict[str, Any]:
    return _compact(
        {
            "containers": [_container(parse(raw)) for raw in f.get(2, [])],
            "restartPolicy": _str(f, 3),
            "terminationGracePeriodSeconds": _int(f, 4),
            "dnsPolicy": _str(f, 6),
            "nodeSelector": _map(f, 7),
            "serviceAccountName": _str(f, 8),
            "schedulerName": _str(f, 19),
        }
    )


def _template(f: Fields | None) -> dict[str, Any]:
    if f is None:
        return {}
    spec = _msg(f, 2)
    return {"metadata": _meta(_msg(f, 1)), "spec": _pod_spec(spec) if spec is not None else {}}


def _selector(f: Fields | None) -> dict[str, Any] | None:
    return None if f is None else _compact({"matchLabels": _map(f, 1)})


def _deployment(obj: Fields) -> dict[str, Any]:
    spec = _msg(obj, 2)
    if spec is None:
        return {}
    return {
        "spec": _compact(
            {
                "replicas": _int(spec, 1),
                "selector": _selector(_msg(spec, 2)),
                "template": _template(_msg(spec, 3)),
                "minReadySeconds": _int(spec, 5),
                "revisionHistoryLimit": _int(spec, 6),
                "progressDeadlineSeconds": _int(spec, 9),
            }
        )
    }


def _job(obj: Fields) -> dict[str, Any]:
    spec = _msg(obj, 2)
    if spec is None:
        return {}
    return {
        "spec": _compact(
            {
                "parallelism": _int(spec, 1),
                "completions": _int(spec, 2),
                "activeDeadlineSeconds": _int(spec, 3),
                "selector": _selector(_msg(spec, 4)),
                "template": _template(_msg(spec, 6)),
                "backoffLimit": _int(spec, 7),
                "ttlSecondsAfterFinished": _int(spec, 8),
            }
        )
    }


# Kinds whose whole body we read (``kubectl create namespace|configmap|secret|serviceaccount``).
_OBJECTS: dict[str, Callable[[Fields], dict[str, Any]]] = {
    "Namespace": _namespace,
    "ConfigMap": _configmap,
    "Secret": _secret,
    "ServiceAccount": _serviceaccount,
    "CertificateSigningRequest": _csr,
    "Deployment": _deployment,
    "Job": _job,
}


def _resource_attributes(f: Fields) -> dict[str, Any]:
    return _compact(
        {
            "namespace": _str(f, 1),
            "verb": _str(f, 2),
            "group": _str(f, 3),
            "version": _str(f, 4),
            "resource": _str(f, 5),
            "subresource": _str(f, 6),
            "name": _str(f, 7),
        }
    )


def _access_spec(f: Fields | None, *, self_review: bool) -> dict[str, Any]:
    if f is None:
        return {}
    ra, nra = _msg(f, 1), _msg(f, 2)
    spec: dict[str, Any] = {}
    if ra is not None:
        spec["resourceAttributes"] = _resource_attributes(ra)
    if nra is not None:
        spec["nonResourceAttributes"] = _compact({"path": _str(nra, 1), "verb": _str(nra, 2)})
    if not self_review:
        spec.update(_compact({"user": _str(f, 3), "groups": _strs(f, 4), "uid": _str(f, 6)}))
    return spec


def _token_review_spec(f: Fields | None) -> dict[str, Any]:
    return {} if f is None else _compact({"token": _str(f, 1), "audiences": _strs(f, 2)})


def _token_request_spec(f: Fields | None) -> dict[str, Any]:
    if f is None:
        return {}
    spec: dict[str, Any] = _compact({"audiences": _strs(f, 1)})
    if f.get(4):
        spec["expirationSeconds"] = int(f[4][-1])
    ref = _msg(f, 3)
    if ref is not None:
        spec["boundObjectRef"] = _compact(
            {"kind": _str(ref, 1), "apiVersion": _str(ref, 2), "name": _str(ref, 3), "uid": _str(ref, 4)}
        )
    return spec


_SPECS: dict[str, Callable[[Fields | None], dict[str, Any]]] = {
    "SelfSubjectAccessReview": lambda f: _access_spec(f, self_review=True),
    "SubjectAccessReview": lambda f: _access_spec(f, self_review=False),
    "TokenReview": _token_review_spec,
    "SelfSubjectRulesReview": lambda f: {} if f is None else _compact({"namespace": _str(f, 1)}),
    "TokenRequest": _token_request_spec,
}


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded review or TokenRequest as its JSON shape; 415 for any other kind."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body lacks the k8s magic prefix")
    unknown = parse(body[len(MAGIC) :])
    type_meta = _msg(unknown, 1) or {}
    api_version, kind = _str(type_meta, 1) or "", _str(type_meta, 2) or ""
    if kind not in _SPECS and kind not in _OBJECTS:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the sandbox reads protobuf only for {', '.join(sorted([*_SPECS, *_OBJECTS]))}; send application/json",
        )
    raw = unknown.get(2, [b""])[-1]
    obj = parse(raw)
    if kind in _OBJECTS:
        return {"apiVersion": api_version, "kind": kind, "metadata": _meta(_msg(obj, 1)), **_OBJECTS[kind](obj)}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _meta(_msg(obj, 1)),
        "spec": _SPECS[kind](_msg(obj, 2)),
    }
