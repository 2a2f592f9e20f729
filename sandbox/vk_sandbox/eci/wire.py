"""The ECI RPC wire protocol: signature 1.0 (HMAC-SHA1), request parameters and error bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

HOST_ID = "eci.sim.aliyuncs.local"
# How far a request's Timestamp may be from our clock, as the real gateway allows (15 minutes).
TIMESTAMP_SKEW_SECONDS = 15 * 60


class ApiError(Exception):
    """An error answered as ``{RequestId, HostId, Code, Message}`` with an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def not_found(group_id: str) -> ApiError:
    return ApiError("InvalidContainerGroup.NotFound", f"The specified container group {group_id} does not exist.", 404)


def missing(name: str) -> ApiError:
    return ApiError(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
        400,
    )


def invalid(name: str, why: str) -> ApiError:
    return ApiError("InvalidParameter", f'The specified parameter "{name}" is not valid: {why}', 400)


def request_id() -> str:
    return str(uuid.uuid4()).upper()


def error_body(err: ApiError, rid: str) -> dict[str, str]:
    return {"RequestId": rid, "HostId": HOST_ID, "Code": err.code, "Message": err.message}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the signer uses: only ``A-Z a-z 0-9 - _ . ~`` stay literal."""
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"


# Values that may hold secrets (registry passwords, env values from Secrets, config files). They never go
# back in an error message: the SDK logs those messages.
_SENSITIVE = re.compile(r"(Password|EnvironmentVar\.\d+\.Value|ConfigFileToPath\.\d+\.Content|SecurityToken)$")


def redacted_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """The string to sign with sensitive values replaced, for error messages."""
    return string_to_sign(method, {k: "***" if _SENSITIVE.search(k) else v for k, v in params.items()})


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new((secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class NonceCache:
    """Remembers SignatureNonces for the timestamp window, so a replay inside it is refused."""

    def __init__(self, ttl: float = TIMESTAMP_SKEW_SECONDS * 2) -> None:
        self._ttl = ttl
        self._seen: dict[str, float] = {}
        self._next_sweep = 0.0

    def add(self, nonce: str, now: float) -> bool:
        """Record ``nonce``; False when it was already used inside the window."""
        if now >= self._next_sweep:
            self._seen = {n: t for n, t in self._seen.items() if t > now}
            self._next_sweep = now + 60
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + self._ttl
        return True


def verify(
    method: str, params: Mapping[str, str], access_keys: Mapping[str, str], nonces: NonceCache, now: float | None = None
) -> str:
    """Check a signed request; return the AccessKeyId or raise the error the real gateway answers."""
    now = time.time() if now is None else now
    for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "SignatureMethod", "SignatureVersion"):
        if not params.get(name):
            raise missing(name)
    if params["SignatureMethod"] != "HMAC-SHA1":
        raise ApiError("InvalidSignatureMethod", "The specified SignatureMethod is not supported (HMAC-SHA1 only).")
    if params["SignatureVersion"] != "1.0":
        raise ApiError("InvalidSignatureVersion", "The specified SignatureVersion is not supported (1.0 only).")
    try:
        stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ApiError(
            "InvalidTimeStamp.Format", "The specified Timestamp is not in the format YYYY-MM-DDThh:mm:ssZ."
        ) from None
    if abs(now - stamp) > TIMESTAMP_SKEW_SECONDS:
        raise ApiError("InvalidTimeStamp.Expired", "The specified Timestamp or Date is expired or not yet valid.")
    key_id = params["AccessKeyId"]
    secret = access_keys.get(key_id)
    if secret is None:
        raise ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
    expected = sign(method, params, secret)
    if not hmac.compare_digest(expected, params["Signature"]):
        # Like the real gateway we return the string we signed, to help debugging; values that may be
        # secrets are masked (the SDK then cannot match it and reports SignatureDoesNotMatch as is).
        raise ApiError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. server string to sign is:"
            + redacted_string_to_sign(method, params),
        )
    if not nonces.add(params["SignatureNonce"], now):
        raise ApiError("SignatureNonceUsed", "Specified signature nonce was used already.")
    return key_id


def rfc3339(ts: float | None) -> str:
    """ECI's time format: RFC 3339 UTC with seconds, e.g. 2024-01-02T03:04:05Z. Empty for None."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339nano(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((ts % 1) * 1e9):09d}Z"


def parse_time(name: str, value: str) -> float:
    """Parse an RFC 3339 time such as 2024-01-02T03:04:05Z (fractions and offsets accepted)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(name, "expected an RFC 3339 time such as 2024-01-02T03:04:05Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class Params:
    """Typed access to the flat request parameters, raising the service's validation errors."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = dict(raw)

    def get_str(self, name: str, *, required: bool = False, default: str = "") -> str:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise missing(name)
            return default
        return value

    def has(self, name: str) -> bool:
        return self.raw.get(name, "") != ""

    def get_int(
        self, name: str, *, default: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        value = self.raw.get(name, "")
        if value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise invalid(name, f"{value!r} is not an integer") from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise invalid(name, f"{number} is outside [{lo}, {hi}]")
        return number

    def get_float(self, name: str, *, default: float | None = None) -> float | None:
        value = self.raw.get(name, "")
        if value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise invalid(name, f"{value!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise invalid(name, f"{value!r} is not a non-negative number")
        return number

    def get_bool(self, name: str, *, default: bool = False) -> bool:
        value = self.raw.get(name, "")
        if value == "":
            return default
        return parse_bool(name, value)

    def json_list(self, name: str, *, max_items: int) -> list[str] | None:
        value = self.raw.get(name, "")
        if value == "":
            return None
        try:
            items: Any = json.loads(value)
        except ValueError:
            raise invalid(name, 'expected a JSON array such as ["eci-123"]') from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise invalid(name, "expected a JSON array of strings")
        if len(items) > max_items:
            raise ApiError("InvalidParameter.ValueExceeded", f"{name} holds more than {max_items} items.")
        return list(items)

    def tags(self) -> list[tuple[str, str]]:
        tree = nest(self.raw).get("Tag", [])
        out: list[tuple[str, str]] = []
        for tag in as_list(tree, "Tag"):
            if not isinstance(tag, dict) or not tag.get("Key"):
                raise invalid("Tag.N.Key", "every tag needs a Key")
            out.append((str(tag["Key"]), str(tag.get("Value", ""))))
        return out


def parse_bool(name: str, value: str) -> bool:
    # The SDK sends Python's str(True) = "True"; the newer SDK sends "true". Accept any case.
    low = value.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise invalid(name, f"{value!r} is not a boolean")


def nest(flat: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``Container.1.EnvironmentVar.2.Key=v`` into nested dicts; numbered levels become lists."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = root
        for i, part in enumerate(parts):
            k: Any = int(part) if part.isdigit() else part
            if i == len(parts) - 1:
                if isinstance(node.get(k), dict):
                    continue  # a scalar colliding with a structure: keep the structure
                node[k] = value
            else:
                nxt = node.get(k)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[k] = nxt
                node = nxt
    return _listify(root)  # type: ignore[no-any-return]


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {k: _listify(v) for k, v in node.items()}


def as_list(value: Any, name: str) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    raise invalid(name, "expected a numbered list such as Name.1, Name.2")
