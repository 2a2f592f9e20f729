"""PATCH bodies: JSON merge patch, JSON patch and strategic merge patch, as the real server applies them."""

from __future__ import annotations

from typing import Any

import jsonpatch

from vk_sandbox.apiserver.errors import ApiError, bad_request
from vk_sandbox.apiserver.store import deep_copy

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

# The patch merge keys of the list fields that kubectl and kubelets touch (by field name; "ports" is resolved by
# its elements, since container ports merge on containerPort and service ports on port).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "addresses": "type",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
    "schedulingGates": "name",
    "podIPs": "ip",
    "hostIPs": "ip",
}
# Lists of scalars merged as sets (patchStrategy merge without a key).
PRIMITIVE_MERGE = {"finalizers"}


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return deep_copy(patch)
    result = deep_copy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


def apply_json_patch(doc: dict[str, Any], ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json patch must be a JSON array of operations")
    try:
        return jsonpatch.apply_patch(doc, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, ValueError) as exc:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        for it in items:
            if isinstance(it, dict):
                return "containerPort" if "containerPort" in it else "port"
        return "containerPort"
    return MERGE_KEYS.get(field)


def _find(items: list[Any], key: str, value: Any) -> int:
    for i, it in enumerate(items):
        if isinstance(it, dict) and it.get(key) == value:
            return i
    return -1


def _merge_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(field, original + patch)
    if field in PRIMITIVE_MERGE:
        merged = list(original)
        for v in patch:
            if v not in merged:
                merged.append(v)
        return merged
    if key is None:
        return [_strip_directives(p) for p in patch]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip_directives(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    out: list[Any] = deep_copy(original)
    for p in patch:
        if not isinstance(p, dict):
            raise bad_request(f"strategic merge patch: {field} items must be objects")
        if p.get("$patch") == "delete":
            idx = _find(out, key, p.get(key))
            if idx >= 0:
                out.pop(idx)
            continue
        if key not in p:
            raise bad_request(f"strategic merge patch: {field} item is missing its merge key {key!r}")
        idx = _find(out, key, p[key])
        if idx >= 0:
            out[idx] = strategic_merge(out[idx], p)
        else:
            out.append(_strip_directives(p))
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)
    if key is None or field in PRIMITIVE_MERGE:
        ranks = {repr(v): i for i, v in enumerate(order)}
        return sorted(items, key=lambda v: ranks.get(repr(v), len(order)))
    ranks = {repr(o.get(key)): i for i, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda v: ranks.get(repr(v.get(key)) if isinstance(v, dict) else "", len(order)))


def strategic_merge(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch, honouring ``$patch``, ``$setElementOrder``, ``$retainKeys`` and
    ``$deleteFromPrimitiveList``."""
    if not isinstance(patch, dict):
        return deep_copy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = deep_copy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for k, v in patch.items():
        if k == "$patch":
            continue
        if k.startswith("$setElementOrder/"):
            if isinstance(v, list):
                orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(v, list):
                result[field] = [x for x in result[field] if x not in v]
            continue
        if k == "$retainKeys":
            if isinstance(v, list):
                keep = set(v) | {pk for pk in patch if not pk.startswith("$")}
                result = {rk: rv for rk, rv in result.items() if rk in keep}
            continue
        if k.startswith("$"):
            raise bad_request(f"strategic merge patch: unknown directive {k!r}")
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge(result.get(k), v)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list) and isinstance(result.get(k), list):
            result[k] = _merge_list(k, result[k], v)
        else:
            result[k] = _strip_directives(v)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    return result
