"""The /containerLogs query, parsed and validated once (400 with the reason on any bad value)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from vk_provider.errors import InvalidInput
from vk_provider.provider import LogOptions

_BOOLS = {"true": True, "1": True, "false": False, "0": False, "": False}


def _bool(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise InvalidInput(f"{name}: invalid boolean {value!r}") from None


def _int(query: Mapping[str, str], name: str, minimum: int) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name}: invalid integer {value!r}") from None
    if number < minimum:
        raise InvalidInput(f"{name}: must be greater than or equal to {minimum}")
    return number


def parse_rfc3339(value: str) -> datetime:
    """RFC 3339 with an explicit offset (``Z`` or ±hh:mm), optionally with fractional seconds."""
    text = value.strip()
    if "T" not in text and "t" not in text:
        raise ValueError("missing time part")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("missing time zone offset")
    return parsed.astimezone(UTC)


def parse_log_options(query: Mapping[str, str]) -> LogOptions:
    """Validate the kubelet's container log parameters; raises InvalidInput (400) with the reason."""
    since_time = None
    if (raw := query.get("sinceTime")) is not None:
        try:
            since_time = parse_rfc3339(raw)
        except ValueError:
            raise InvalidInput(f"sinceTime: invalid RFC 3339 time {raw!r}") from None
    since_seconds = _int(query, "sinceSeconds", 1)
    if since_time is not None and since_seconds is not None:
        raise InvalidInput("at most one of sinceTime or sinceSeconds may be specified")
    return LogOptions(
        tail_lines=_int(query, "tailLines", 0),
        limit_bytes=_int(query, "limitBytes", 1),
        since_seconds=since_seconds,
        since_time=since_time,
        timestamps=_bool(query, "timestamps"),
        previous=_bool(query, "previous"),
        follow=_bool(query, "follow"),
    )
