"""Decoding the few protobuf bodies kubectl's typed clients send."""

from __future__ import annotations

import pytest

from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.protobuf import MAGIC, decode


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _unknown(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + _field(1, _field(1, api_version) + _field(2, kind)) + _field(2, raw)


def test_decodes_self_subject_access_review() -> None:
    """A SelfSubjectAccessReview's resource attributes come out as their JSON names."""
    attrs = _field(1, "default") + _field(2, "create") + _field(5, "pods") + _field(6, "exec")
    body = _unknown("authorization.k8s.io/v1", "SelfSubjectAccessReview", _field(1, b"") + _field(2, _field(1, attrs)))
    out = decode(body)
    assert out["kind"] == "SelfSubjectAccessReview"
    assert out["spec"] == {
        "resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods", "subresource": "exec"}
    }


def test_decodes_a_configmap_with_metadata_maps() -> None:
    """A ConfigMap's name, labels and data maps are decoded."""
    label = _field(11, _field(1, "app") + _field(2, "web"))
    meta = _field(1, "cfg") + _field(3, "ns") + label
    data = _field(2, _field(1, "k") + _field(2, "v"))
    out = decode(_unknown("v1", "ConfigMap", _field(1, meta) + data))
    assert out["metadata"] == {"name": "cfg", "namespace": "ns", "labels": {"app": "web"}}
    assert out["data"] == {"k": "v"}


def test_other_kinds_and_garbage_are_client_errors() -> None:
    """Unsupported kinds are 415; a missing magic or truncated message is 400."""
    with pytest.raises(ApiError) as exc:
        decode(_unknown("apps/v1", "StatefulSet", b""))
    assert exc.value.code == 415
    with pytest.raises(ApiError) as exc:
        decode(b"\x0a\x05abc")
    assert exc.value.code == 400
    with pytest.raises(ApiError) as exc:
        decode(MAGIC + b"\x0a\xff\xff")
    assert exc.value.code == 400
