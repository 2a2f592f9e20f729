"""The few error types that decide HTTP codes, events and retries in one place.

Controllers and the kubelet API look only at these types, never at SDK exceptions:
- NotFound -> 404, InvalidInput -> 400, NotSupported -> 501 (and a Warning event),
- PermanentError -> the pod fails with the message (no retry),
- TransientError -> retried with backoff.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every error the provider raises. ``reason`` is a CamelCase word for events."""

    reason = "ProviderError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class NotFound(ProviderError):
    reason = "NotFound"


class InvalidInput(ProviderError):
    """The request (pod spec, query parameter, annotation) is wrong; the message says how to fix it."""

    reason = "InvalidInput"


class NotSupported(ProviderError):
    """The backend cannot do this at all. The message says what and why."""

    reason = "NotSupported"


class PermanentError(ProviderError):
    """The backend rejected the request for good (e.g. InvalidParameter). Do not retry."""

    reason = "ProviderFailed"


class TransientError(ProviderError):
    """Worth retrying: throttling, 5xx, timeouts, connection errors."""

    reason = "ProviderUnavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after
