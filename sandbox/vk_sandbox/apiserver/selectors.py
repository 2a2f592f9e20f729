"""Label and field selectors, parsed once into predicates over JSON objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vk_sandbox.apiserver.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label too.
        return not present or labels[self.key] not in self.values


def _check_key(key: str, raw: str) -> None:
    if len(key.rpartition("/")[2]) > 63 or not _LABEL_KEY.match(key):
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in selector "{raw}"')


def _check_value(value: str, raw: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise bad_request(f'unable to parse requirement: invalid label value: "{value}" in selector "{raw}"')


def parse_label_selector(raw: str | None) -> list[Requirement]:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k``; a 400 ApiError on bad syntax."""
    if not raw or not raw.strip():
        return []
    tokens: list[str] = []
    pos = 0
    while pos < len(raw):
        m = _TOKEN.match(raw, pos)
        if not m:
            if raw[pos:].strip() == "":
                break
            raise bad_request(f'unable to parse label selector "{raw}"')
        tokens.append(m.group(1))
        pos = m.end()
    reqs: list[Requirement] = []
    i = 0

    def expect_values() -> tuple[str, ...]:
        nonlocal i
        if i >= len(tokens) or tokens[i] != "(":
            raise bad_request(f'unable to parse label selector "{raw}": expected "("')
        i += 1
        values: list[str] = []
        while i < len(tokens) and tokens[i] != ")":
            if tokens[i] != ",":
                _check_value(tokens[i], raw)
                values.append(tokens[i])
            i += 1
        if i >= len(tokens):
            raise bad_request(f'unable to parse label selector "{raw}": expected ")"')
        i += 1
        return tuple(values)

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            i += 1
            if i >= len(tokens):
                raise bad_request(f'unable to parse label selector "{raw}"')
            _check_key(tokens[i], raw)
            reqs.append(Requirement(tokens[i], "!"))
            i += 1
        elif tok in ("=", "==", "!=", "(", ")", ","):
            raise bad_request(f'unable to parse label selector "{raw}": unexpected "{tok}"')
        else:
            _check_key(tok, raw)
            i += 1
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(tok, "exists"))
            elif tokens[i] in ("=", "==", "!="):
                op = "!=" if tokens[i] == "!=" else "="
                i += 1
                value = ""
                if i < len(tokens) and tokens[i] not in (",", "(", ")", "=", "==", "!=", "!"):
                    value = tokens[i]
                    i += 1
                _check_value(value, raw)
                reqs.append(Requirement(tok, op, (value,)))
            elif tokens[i] in ("in", "notin"):
                op = tokens[i]
                i += 1
                reqs.append(Requirement(tok, op, expect_values()))
            else:
                raise bad_request(f'unable to parse label selector "{raw}": unexpected "{tokens[i]}"')
        if i < len(tokens):
            if tokens[i] != ",":
                raise bad_request(f'unable to parse label selector "{raw}": expected ","')
            i += 1
            if i >= len(tokens):
                raise bad_request(f'unable to parse label selector "{raw}": trailing ","')
    return reqs


def label_predicate(raw: str | None) -> Predicate | None:
    reqs = parse_label_selector(raw)
    if not reqs:
        return None

    def pred(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return pred


def _field_value(obj: dict[str, Any], path: str) -> str:
    if path == "source":  # events: source is source.component
        return str(((obj.get("source") or {}).get("component")) or "")
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        # Booleans such as spec.hostNetwork compare as "false" when unset.
        return "false" if path in ("spec.hostNetwork", "spec.unschedulable") else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_predicate(raw: str | None, kind_plural: str, supported: tuple[str, ...]) -> Predicate | None:
    """Parse ``a=b,c!=d``; a 400 ApiError for an unsupported field label, as the real server."""
    if not raw or not raw.strip():
        return None
    terms: list[tuple[str, bool, str]] = []
    allowed = {"metadata.name", "metadata.namespace", *supported}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            raise bad_request(f'invalid field selector "{raw}"')
        if "!=" in part:
            field, _, value = part.partition("!=")
            eq = False
        elif "==" in part:
            field, _, value = part.partition("==")
            eq = True
        elif "=" in part:
            field, _, value = part.partition("=")
            eq = True
        else:
            raise bad_request(f"invalid selector: '{part}'; can't understand '{part}'")
        field = field.strip()
        if field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        terms.append((field, eq, value.strip()))

    def pred(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, f) == v) == eq for f, eq, v in terms)

    return pred


def combine(*preds: Predicate | None) -> Predicate | None:
    ps = [p for p in preds if p is not None]
    if not ps:
        return None
    if len(ps) == 1:
        return ps[0]
    return lambda obj: all(p(obj) for p in ps)
