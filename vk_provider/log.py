"""structlog set-up: JSON when stderr is not a TTY, and secret redaction on every event."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(secret|password|token|signature|authorization|credential)", re.I)
_SECRET_INLINE = re.compile(
    r"(?i)((?:AccessKeySecret|access_key_secret|Password|Signature|Authorization|Bearer)[\"':= ]+"
    r"(?:(?:Bearer|Basic)\s+)?)([^\s\"'&,]+)"  # an Authorization value's scheme is kept, its credential masked
)
REDACTED = "***"


def redact_text(text: str) -> str:
    """Mask values that look like secrets inside free text (error messages, URLs)."""
    return _SECRET_INLINE.sub(lambda m: m.group(1) + REDACTED, text)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        value = event_dict[key]
        if key != "event" and _SECRET_KEYS.search(key) and value not in (None, ""):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
