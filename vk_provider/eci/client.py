"""The ECI OpenAPI client: the official SDK run in a bounded thread pool, with our own retries.

The SDK (aliyun-python-sdk-core 2.16) is blocking and retries nothing for ECI, so every call goes
through ``ECIClient.call``:

- the action's client-side rate limit (ratelimit.py: one bucket per action, as ECI counts them) is passed
  first,
- the blocking ``do_action_with_exception`` runs in a ``ThreadPoolExecutor`` of
  ``eci.thread_pool_size`` threads, never on the event loop,
- Throttling*, 5xx, timeouts and connection errors are retried with ``eci.backoff_*`` up to
  ``eci.max_retries`` times,
- SDK exceptions become ``vk_provider.errors`` types; messages carry the service's code and message
  and never a parameter value (passwords travel in CreateContainerGroup's parameters).

Parameters are passed as a flat ``{wire name: value}`` mapping: one canonical wire form for every
action, with booleans as ``true``/``false`` and lists as JSON. Every call is a ``POST`` whose action
parameters travel in the form body (``add_body_params``), as Alibaba's newer SDKs send RPC calls: the
SDK's own signer covers the body, and a request line stays small however large a pod's configuration
(ConfigFile contents, hundreds of variables) is. The common parameters (Action, Version, Signature,
AccessKeyId, ... and RegionId) stay in the query string, where the SDK puts them.

Credentials (``credential_for``) are the SDK's own: an AccessKey pair, an STS token
(``StsTokenCredential``, static), or an ECS instance RAM role (``EcsRamRoleCredential``: the SDK's
signer fetches STS credentials from the ECS metadata server and refreshes them itself).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
import urllib.error
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.auth.credentials import AccessKeyCredential, EcsRamRoleCredential, StsTokenCredential
from aliyunsdkcore.client import AcsClient
from pydantic import BaseModel, ValidationError

from vk_provider import jsoncodec
from vk_provider.aio import Backoff
from vk_provider.eci.ratelimit import ActionLimiter
from vk_provider.errors import NotFound, PermanentError, ProviderError, TransientError
from vk_provider.fence import Fence, NotLeader
from vk_provider.log import redact_text
from vk_provider.metrics import ECI_CALL_SECONDS, ECI_CALLS, ECI_RETRIES
from vk_provider.settings import ECISettings

log = structlog.get_logger("vk_provider.eci.client")

M = TypeVar("M", bound=BaseModel)

# The SDK logs every request's parameters at DEBUG (registry passwords included) and every server
# error at ERROR; we log our own, redacted lines instead.
logging.getLogger("aliyunsdkcore").setLevel(logging.CRITICAL)

_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "UnknownError",
        "SystemBusy",
        "ServiceBusy",
        "RequestTimeout",
        "OperationConflict",
        "LastTokenProcessing",
        "IdempotenceProcessing",
    }
)
_NOT_FOUND_CODES = frozenset(
    {
        "InvalidContainerGroupId.NotFound",
        "ContainerGroup.NotFound",
        "InvalidContainerGroup.NotFound",
        "ResourceNotFound",
        "NotFound",
    }
)


# Parameters that stay in the query string of a POST: the SDK adds RegionId there when it is missing,
# so sending it in the body as well would carry it twice.
_QUERY_PARAMS = frozenset({"RegionId"})

# A SignatureDoesNotMatch answer echoes the server's string to sign, URL-encoded, SecurityToken included.
_TOKEN_INLINE = re.compile(r"(?i)(SecurityToken(?:%253D|%3D|[\"']?\s*[:=]\s*[\"']?))(.+?)(?=%2526|%26|&|[\s\"',]|$)")


def changes_something(action: str) -> bool:
    """Whether an ECI action changes anything (the write fence holds those back on a standby): every
    action but the Describe* and List* reads and ExecContainerCommand (a command in a running container,
    which `kubectl exec` reaches through whichever replica the API server proxies to)."""
    return not action.startswith(("Describe", "List")) and action != "ExecContainerCommand"


def credential_for(settings: ECISettings) -> Any:
    """The SDK credential the settings ask for (an untyped SDK object): ``EcsRamRoleCredential`` for a RAM
    role, ``StsTokenCredential`` for an STS token, else ``AccessKeyCredential``."""
    if settings.ram_role_name:
        return EcsRamRoleCredential(settings.ram_role_name)
    key_id = settings.access_key_id or ""
    secret = settings.access_key_secret.get_secret_value() if settings.access_key_secret else ""
    if settings.security_token and settings.security_token.get_secret_value():
        return StsTokenCredential(key_id, secret, settings.security_token.get_secret_value())
    return AccessKeyCredential(key_id, secret)


def credential_kind(settings: ECISettings) -> str:
    """Which way of signing the settings choose, for people: never a secret, never the key id."""
    credential = credential_for(settings)
    if isinstance(credential, EcsRamRoleCredential):
        return f"ECS instance RAM role {settings.ram_role_name}"
    if isinstance(credential, StsTokenCredential):
        return "STS token (static, never refreshed)"
    return "AccessKey pair"


@dataclass(frozen=True)
class Probe:
    """One un-retried call's outcome, for diagnostics: the JSON body or the mapped error, the answer's
    HTTP ``Date`` header (the service's clock, on error answers too) and when the call started and ended."""

    data: dict[str, Any] | None
    error: ProviderError | None
    server_date: datetime | None
    started: float  # time.time() before the request
    finished: float  # time.time() after the answer


# What an answer may echo of the request, which carries every parameter (Secret values, ConfigFile
# contents, registry passwords): the string to sign of a SignatureDoesNotMatch, a gateway's copy of the
# request line in a body that is not an ECI error, or a run of name=value pairs anywhere.
_STRING_TO_SIGN = re.compile(r"(?is)(string to sign is:?).*")
_PARAM_RUN = re.compile(r"\S*(?:=|%3D|%253D)\S*(?:&|%26|%2526)\S*")
_MAX_MESSAGE = 400


def _redact(text: str) -> str:
    """A service message fit for errors, events and logs: no echo of the request, no token, bounded."""
    text = _STRING_TO_SIGN.sub(lambda m: m.group(1) + " [not shown: it holds the request's parameters]", text)
    text = _PARAM_RUN.sub("[request parameters not shown]", text)
    text = _TOKEN_INLINE.sub(lambda m: m.group(1) + "***", redact_text(text))
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _not_an_eci_answer(msg: str) -> str:
    """SDK.UnknownServerError carries the raw body of an answer that is not ECI's JSON (a proxy's or a
    gateway's page, which may quote the request): name its size, never its text."""
    body = msg.split("ServerResponseBody:", 1)[-1].strip()
    return f"the endpoint answered with something that is not an ECI response ({len(body)} bytes, not shown)"


def error_code(exc: BaseException) -> str:
    """The service's error code carried on an error raised by this client ('' when none)."""
    return str(getattr(exc, "eci_code", ""))


def _with_code(err: ProviderError, code: str) -> ProviderError:
    err.eci_code = code  # type: ignore[attr-defined]  # a plain attribute, read by error_code()
    return err


def map_sdk_error(action: str, exc: BaseException) -> ProviderError:
    """Turn an SDK exception into one of our error types, with the service's code and message."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ServerException):
        code = str(exc.get_error_code() or "")
        msg = _redact(str(exc.get_error_msg() or ""))
        status = int(exc.get_http_status() or 0)
        text = f"ECI {action} failed: {code}: {msg}"
        if code.startswith("Throttling") or status == 429:
            return _with_code(TransientError(text, reason="ECIThrottled"), code)
        # An expired (or not yet valid) STS token is the daemon's problem, never the pod's: a RAM role's
        # token is renewed by the SDK, a static one by restarting with a new one. Keep retrying.
        if code.startswith("InvalidSecurityToken"):
            return _with_code(TransientError(text, reason="ECICredentials"), code)
        # Only a missing container group is NotFound: InvalidAccessKeyId.NotFound or an unknown action
        # (also 404) must never read as "the group is gone".
        if code in _NOT_FOUND_CODES or (code.endswith(".NotFound") and "ContainerGroup" in code):
            return _with_code(NotFound(text), code)
        if code in _TRANSIENT_CODES or status >= 500:
            return _with_code(TransientError(text, reason="ECIUnavailable"), code)
        return _with_code(PermanentError(text, reason="ProviderFailed"), code)
    if isinstance(exc, ClientException):
        code = str(exc.get_error_code() or "")
        msg = _redact(str(exc.get_error_msg() or ""))
        if code == "SDK.UnknownServerError":
            msg = _not_an_eci_answer(str(exc.get_error_msg() or ""))
        if code in ("SDK.HttpError", "SDK.ServerUnreachable", "SDK.UnknownServerError"):
            return _with_code(TransientError(f"ECI {action} unreachable: {msg}", reason="ECIUnavailable"), code)
        return _with_code(PermanentError(f"ECI {action}: {code}: {msg}", reason="ProviderFailed"), code)
    if isinstance(exc, urllib.error.URLError):
        # Only the RAM role signer uses urllib (ECI calls go through requests): the ECS metadata server
        # did not hand out the role's credentials (a wrong role name is HTTP 404; off ECS it is unreachable).
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # it holds the metadata server's connection
        return _with_code(
            TransientError(
                f"ECI {action}: no credentials for the RAM role from the ECS metadata server: {_redact(str(exc))}",
                reason="ECICredentials",
            ),
            "MetadataUnavailable",
        )
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return _with_code(TransientError(f"ECI {action} unreachable: {exc!r}", reason="ECIUnavailable"), "Network")
    return _with_code(PermanentError(f"ECI {action}: unexpected {type(exc).__name__}"), "Unexpected")


def encode_value(value: Any) -> str:
    """One query-string value: booleans lower-case, lists/dicts as JSON, floats without noise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return jsoncodec.dumps_str(value)
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return str(value)


class _AcsClient(AcsClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's client, minus one cost: it parses every answer's JSON to look for an error, successes too
    (for a RequestId it only logs); we parse successes ourselves, so only an error status is parsed here."""

    def _get_server_exception(self, http_status: int, response_body: Any, endpoint: Any, string_to_sign: Any) -> Any:
        if 200 <= http_status < 300:
            return None
        return super()._get_server_exception(http_status, response_body, endpoint, string_to_sign)


class ECIClient:
    """Async facade over the SDK. One instance per daemon; ``close()`` stops the thread pool."""

    def __init__(self, settings: ECISettings, *, sleep: Any = None, fence: Fence | None = None) -> None:
        self.settings = settings
        self.fence = fence
        credential = credential_for(settings)
        ak: str | None = None
        secret: str | None = None
        if isinstance(credential, AccessKeyCredential):
            # Passed as ak/secret, the pair wins over the SDK's ALIYUN_ACCESS_KEY_* variables; a credential
            # object does not (load_settings refuses a role or a token while those are set).
            ak, secret = credential.access_key_id, credential.access_key_secret
        self._acs = _AcsClient(
            ak,
            secret,
            settings.region,
            credential=None if ak is not None else credential,
            auto_retry=False,
            max_retry_time=0,
            connect_timeout=settings.connect_timeout_seconds,
            timeout=settings.read_timeout_seconds,
            pool_size=settings.thread_pool_size,
            proxy={"http": "", "https": ""},
        )
        self._endpoint: str | None = None
        self._protocol = "https"
        if settings.endpoint:
            parts = urlsplit(settings.endpoint if "://" in settings.endpoint else "https://" + settings.endpoint)
            self._endpoint = parts.netloc
            self._protocol = parts.scheme or "https"
        self._pool = ThreadPoolExecutor(max_workers=settings.thread_pool_size, thread_name_prefix="eci-sdk")
        self._limiter = ActionLimiter(
            settings.rate_limit_qps, settings.rate_limit_burst, settings.rate_limits_per_minute
        )
        self._backoff = Backoff(base=settings.backoff_base_seconds, cap=settings.backoff_max_seconds)
        self._sleep = sleep or asyncio.sleep
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Threads stuck in a read are bounded by the SDK's read timeout; do not wait on the loop.
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Its kept-alive connections now, not whenever the collector finds them (a connection still in use by a
        # thread is closed when that thread hands it back).
        self._acs.session.close()

    def _build(self, action: str, params: Mapping[str, Any]) -> Any:
        module = importlib.import_module(f"aliyunsdkeci.request.v20180808.{action}Request")
        request = getattr(module, f"{action}Request")()
        if self._endpoint:
            request.set_endpoint(self._endpoint)
        request.set_protocol_type(self._protocol)
        request.set_connect_timeout(self.settings.connect_timeout_seconds)
        request.set_read_timeout(self.settings.read_timeout_seconds)
        request.set_method("POST")
        for key, value in params.items():
            if value is None:
                continue
            if key in _QUERY_PARAMS:
                request.add_query_param(key, encode_value(value))
            else:
                request.add_body_params(key, encode_value(value))
        return request

    def _do(self, action: str, params: Mapping[str, Any]) -> bytes:
        request = self._build(action, params)
        body: bytes = self._acs.do_action_with_exception(request)
        return body

    @property
    def endpoint(self) -> str:
        """Where calls go: the configured endpoint, or the SDK's regional one."""
        if self._endpoint:
            return f"{self._protocol}://{self._endpoint}"
        return f"https://eci.{self.settings.region}.aliyuncs.com (the SDK's regional endpoint)"

    def _do_with_headers(
        self, action: str, params: Mapping[str, Any]
    ) -> tuple[bytes | None, str, BaseException | None]:
        request = self._build(action, params)
        request.set_accept_format("JSON")
        # The SDK's do_action_with_exception drops the headers; this is the call it wraps.
        _status, headers, body, exc = self._acs._implementation_of_do_action(request)
        return body, str((headers or {}).get("Date") or (headers or {}).get("date") or ""), exc

    async def probe(self, action: str, params: Mapping[str, Any] | None = None) -> Probe:
        """One call without retries that keeps the answer's ``Date`` header and never raises a service
        error: for `vk-provider doctor`, which needs to see each failure as it is."""
        await self._limiter.acquire(action)
        loop = asyncio.get_running_loop()
        started = time.time()
        date_text = ""
        data: dict[str, Any] | None = None
        error: ProviderError | None = None
        try:
            body, date_text, exc = await loop.run_in_executor(
                self._pool, self._do_with_headers, action, dict(params or {})
            )
            if exc is not None:
                raise exc
            parsed = jsoncodec.loads(body or b"")
            data = parsed if isinstance(parsed, dict) else None
            if data is None:
                error = TransientError(f"ECI {action}: unexpected response shape", reason="ECIUnavailable")
        except ValueError:
            error = TransientError(f"ECI {action}: the response is not JSON", reason="ECIUnavailable")
        except Exception as exc:
            error = map_sdk_error(action, exc)
        finished = time.time()
        server_date: datetime | None = None
        if date_text:
            try:
                server_date = parsedate_to_datetime(date_text)
            except (TypeError, ValueError):
                server_date = None
        return Probe(data, error, server_date, started, finished)

    async def _attempt(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        await self._limiter.acquire(action)
        # Checked after the limiter's wait, right before the call leaves, and again on every retry.
        if self.fence is not None and changes_something(action):
            self.fence.check("eci", f"ECI {action}")
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            body = await loop.run_in_executor(self._pool, self._do, action, params)
        except Exception as exc:
            ECI_CALL_SECONDS.labels(action).observe(time.monotonic() - started)
            err = map_sdk_error(action, exc)
            ECI_CALLS.labels(action, error_code(err) or err.reason).inc()
            raise err from None
        ECI_CALL_SECONDS.labels(action).observe(time.monotonic() - started)
        ECI_CALLS.labels(action, "ok").inc()
        try:
            data = jsoncodec.loads(body)
        except ValueError:
            raise TransientError(f"ECI {action}: the response is not JSON", reason="ECIUnavailable") from None
        if not isinstance(data, dict):
            raise TransientError(f"ECI {action}: unexpected response shape", reason="ECIUnavailable")
        return data

    async def call(
        self, action: str, params: Mapping[str, Any] | None = None, *, retries: int | None = None
    ) -> dict[str, Any]:
        """Call ``action`` with flat wire parameters; retry transient failures; return the JSON body."""
        if self._closed:
            raise TransientError("the ECI client is closed", reason="ShuttingDown")
        params = dict(params or {})
        budget = self.settings.max_retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return await self._attempt(action, params)
            except TransientError as exc:
                if attempt >= budget or self._closed or isinstance(exc, NotLeader):
                    raise
                delay = max(exc.retry_after or 0.0, self._backoff.delay(attempt))
                attempt += 1
                code = error_code(exc) or exc.reason
                ECI_RETRIES.labels(action, code).inc()
                log.info("eci call retried", action=action, code=code, attempt=attempt, delay=round(delay, 3))
                await self._sleep(delay)

    async def call_model(self, action: str, params: Mapping[str, Any], model: type[M]) -> M:
        data = await self.call(action, params)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise TransientError(
                f"ECI {action}: unexpected response ({exc.error_count()} field errors)", reason="ECIUnavailable"
            ) from None
