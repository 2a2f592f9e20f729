"""Shape comparison for contract tests: key paths and JSON types, never values.

A path names a key by its nesting: ``ContainerGroups[].Containers[].CurrentState.ExitCode``; ``[]`` stands
for every element of a list (their shapes are merged). An empty object in a documented fixture stands for
a free-form map (ECI's ``Attributes``, Kubernetes' ``labels``): anything under it matches.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def paths(value: Any, prefix: str = "") -> dict[str, set[str]]:
    """Every key path under ``value`` with the JSON types seen there."""
    out: dict[str, set[str]] = {}

    def walk(v: Any, at: str) -> None:
        if at:
            out.setdefault(at, set()).add(json_type(v))
        if isinstance(v, dict):
            for key, child in v.items():
                walk(child, f"{at}.{key}" if at else str(key))
        elif isinstance(v, list):
            for child in v:
                walk(child, f"{at}[]")

    walk(value, prefix)
    return out


def free_form(documented: Any, prefix: str = "") -> set[str]:
    """Paths of the documented free-form maps (empty objects)."""
    out: set[str] = set()
    if isinstance(documented, dict):
        if not documented and prefix:
            out.add(prefix)
        for key, child in documented.items():
            out |= free_form(child, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(documented, list):
        for child in documented:
            out |= free_form(child, f"{prefix}[]")
    return out


def _under(path: str, roots: set[str]) -> bool:
    return any(path.startswith((root + ".", root + "[]")) for root in roots)


def drift(documented: Any, actual: Any) -> tuple[list[str], list[str]]:
    """(extra, mismatched): paths ``actual`` has that the documentation does not, and paths whose JSON
    types differ from the documented ones (``null`` never matches)."""
    doc = paths(documented)
    got = paths(actual)
    maps = free_form(documented)
    extra = sorted(p for p in got if p not in doc and not _under(p, maps))
    mismatched = sorted(
        f"{p}: documented {sorted(doc[p])}, got {sorted(kinds)}"
        for p, kinds in got.items()
        if p in doc and not kinds <= doc[p]
    )
    return extra, mismatched


def missing(documented: Any, actual: Any) -> list[str]:
    """Documented paths ``actual`` lacks where it could have them: top-level keys, and keys of objects and
    list elements it did send."""
    doc = paths(documented)
    got = paths(actual)

    def parent(path: str) -> str:
        return path.rsplit(".", 1)[0] if "." in path else ""

    return sorted(p for p in doc if p not in got and not p.endswith("[]") and (parent(p) == "" or parent(p) in got))


def model_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every wire path a pydantic model reads (its fields, by alias, and those of nested models)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        key = info.alias or name
        at = f"{prefix}.{key}" if prefix else key
        out.add(at)
        inner, suffix = _element(info.annotation)
        if inner is not None:
            out |= model_paths(inner, at + suffix)
    return out


def _element(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _element(arg)
            if found[0] is not None:
                return found
        return None, ""
    if origin is list:
        inner, suffix = _element(typing.get_args(annotation)[0])
        return inner, "[]" + suffix
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    return None, ""
