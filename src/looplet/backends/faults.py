"""What a failed model call means: a typed `LLMError` with a kind, the status, the request id and a fix.

Both SDK backends send their exceptions through `classify`, so OpenAI and
Anthropic failures are judged by the same rules:

- by the HTTP status and the provider's structured error ``type`` and
  ``code`` (``error.details.error_code`` for Anthropic), never by searching
  an arbitrary body for a word: a 502 whose page happens to say "413" or
  "too long" is a server error;
- the one place a message is read is Anthropic's context-length error, which
  has no code: a 400 whose structured ``error.type`` is
  ``invalid_request_error`` and whose ``error.message`` starts with
  ``prompt is too long`` (the documented wording);
- the message says what to fix, and never contains the API key: provider
  text is passed through `looplet.redaction.redact_text` with the key added,
  and an auth failure names the environment variable instead of quoting
  anything.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import LLMError
from ..redaction import redact_text

__all__ = [
    "Failure",
    "HTTPFault",
    "Provider",
    "classify",
    "not_a_reply",
    "classify_http",
    "fault_from_status_error",
    "parse_retry_after",
]

#: Codes (or types) meaning the account cannot pay for more requests: retrying will not help.
QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "billing_error",
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
        "linked_organization_billing_unavailable",
        "organization_on_hold",
        "access_terminated",
    }
)
#: Codes (or types) meaning the prompt does not fit the model's window.
CONTEXT_CODES = frozenset({"context_length_exceeded", "request_too_large"})
#: Statuses worth another attempt, and the kind each one gets.
RETRIABLE_STATUS = {
    408: "timeout",
    429: "rate_limit",
    500: "server",
    502: "server",
    503: "server",
    504: "server",
    529: "overloaded",
}
#: Error types sent without a meaningful status (a stream's ``error`` event after a 200).
_STREAM_TYPES = {
    "overloaded_error": ("overloaded", True),
    "api_error": ("server", True),
    "server_error": ("server", True),
    "rate_limit_error": ("rate_limit", True),
    "rate_limit_exceeded": ("rate_limit", True),
    "timeout_error": ("timeout", True),
    "authentication_error": ("auth", False),
    "permission_error": ("auth", False),
    "invalid_request_error": ("bad_request", False),
}
_ANTHROPIC_TOO_LONG = "prompt is too long"
_MAX_MESSAGE = 400
#: How much of an unexpected body an error quotes.
_QUOTED_BODY = 200
#: How much of it is masked before the quote is cut (so a key is masked whole, then cut).
_MASKED_BODY = 4000


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure, and the server's wait hint in seconds (if it sent one)."""

    error: LLMError
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPFault:
    """The facts of an error response, read from whichever SDK raised it."""

    status: int | None
    error_type: str = ""
    code: str = ""
    message: str = ""
    request_id: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Provider:
    """Who a backend talks to: its name for messages, the env var of its key, and the key to scrub."""

    name: str
    key_env: str
    secret: str = field(default="", repr=False, compare=False)

    def scrub(self, text: str) -> str:
        """`text` with the key, secret env values and known token shapes masked, and cut short."""
        clean = redact_text(text, [self.secret] if self.secret else None)
        return clean if len(clean) <= _MAX_MESSAGE else clean[: _MAX_MESSAGE - 1] + "…"


def classify(exc: BaseException, provider: Provider) -> Failure | None:
    """A `Failure` for what an SDK call raised, or None for an exception that is not a call failure."""
    if isinstance(exc, LLMError):
        return Failure(exc)
    if isinstance(getattr(exc, "status_code", None), int) and hasattr(exc, "response"):
        return classify_http(fault_from_status_error(exc), provider)
    transport = _transport_kind(exc)
    if transport is not None:
        detail = provider.scrub(_describe(exc))
        what = "timed out" if transport == "timeout" else "lost the connection"
        error = LLMError(f"the call to {provider.name} {what} ({detail})", kind=transport, retriable=True)
        return Failure(error)
    if isinstance(exc, json.JSONDecodeError):
        error = LLMError(
            f"{provider.name} sent a body that is not valid JSON ({provider.scrub(str(exc))})",
            kind="bad_response",
            retriable=True,
        )
        return Failure(error)
    if _is_sdk_api_error(exc):
        return classify_http(fault_from_status_error(exc), provider)
    return None


def classify_http(fault: HTTPFault, provider: Provider) -> Failure:
    """The `LLMError` for an error response (or a stream's error event)."""
    kind, retriable = _kind(fault)
    message = _message(kind, fault, provider)
    status = fault.status if fault.status is not None and fault.status >= 400 else None
    error = LLMError(message, kind=kind, status=status, request_id=fault.request_id, retriable=retriable)
    return Failure(error, fault.retry_after if retriable else None)


def _kind(fault: HTTPFault) -> tuple[str, bool]:
    status = fault.status if fault.status is not None and fault.status >= 400 else None
    labels = {fault.code, fault.error_type}
    if labels & QUOTA_CODES or status == 402:
        return "quota", False
    if status == 413 or (status == 400 and (labels & CONTEXT_CODES or _anthropic_too_long(fault))):
        return "context_length", False
    if status in (401, 403):
        return "auth", False
    if status is None:
        return stream_kind(fault.error_type, fault.code)
    if fault.error_type == "overloaded_error" and status >= 500:
        # Anthropic's documented type for "temporarily overloaded" (sent with 529; a proxy may
        # relay it as a 503): the provider's own word is more precise than the status.
        return "overloaded", True
    if status in RETRIABLE_STATUS:
        return RETRIABLE_STATUS[status], True
    if status >= 500:
        return "server", False
    return "bad_request", False


def stream_kind(error_type: str, code: str) -> tuple[str, bool]:
    """The kind, and whether to retry, of an error object sent without an error status.

    Such objects come in a stream's ``error`` event or in a 200's body; an
    unknown type is taken for a passing server fault.
    """
    return _STREAM_TYPES.get(error_type) or _STREAM_TYPES.get(code) or ("server", True)


def _anthropic_too_long(fault: HTTPFault) -> bool:
    return fault.error_type == "invalid_request_error" and fault.message.lower().startswith(
        _ANTHROPIC_TOO_LONG
    )


def _message(kind: str, fault: HTTPFault, provider: Provider) -> str:
    name = provider.name
    http = f"HTTP {fault.status}" if fault.status and fault.status >= 400 else "in the response stream"
    said = provider.scrub(fault.message) if fault.message else ""
    label = fault.code or fault.error_type
    tag = f"{http}, {label}" if label else http
    if kind == "auth":
        if fault.status == 403:
            return (
                f"{name} refused access ({tag}): the key in {provider.key_env} lacks permission "
                "for this model or endpoint"
            )
        return (
            f"{name} rejected the API key ({tag}): check {provider.key_env} "
            "(a missing, mistyped, revoked or wrong-provider key)"
        )
    fixes = {
        "quota": "the account is out of quota or over a spend limit; check billing and limits (not retried)",
        "context_length": "the prompt is longer than the model's context window",
        "rate_limit": "rate limited",
        "overloaded": "the service is overloaded",
        "server": "server error",
        "timeout": "the server timed out",
        "bad_request": "the request was rejected; check the model name, base URL and options",
    }
    head = f"{name}: {fixes.get(kind, 'the call failed')} ({tag})"
    return f"{head}: {said}" if said else head


def not_a_reply(
    provider: Provider,
    what: str,
    *,
    expected: str,
    content_type: str | None,
    body: str,
    request_id: str | None,
    retriable: bool,
    hint: str,
) -> LLMError:
    """The `bad_response` error for a 200 whose body is not the reply asked for.

    It says what came back: `what` (an HTML page, JSON without ``choices``,
    an error object), the content type and the start of the body, masked
    before it is cut so no part of a key shows.

    Args:
        expected: what the body should have been (``a chat completion``).
        hint: what to check, said last.
    """
    masked = redact_text(body[:_MASKED_BODY], [provider.secret] if provider.secret else None)
    quoted = " ".join(masked.split())
    if len(quoted) > _QUOTED_BODY:
        quoted = quoted[: _QUOTED_BODY - 1] + "…"
    ctype = f"content-type {content_type}" if content_type else "no content-type"
    start = f"body starts {quoted!r}" if quoted else "empty body"
    return LLMError(
        f"{provider.name} answered HTTP 200 with {what}, not {expected} ({ctype}; {start}); {hint}",
        kind="bad_response",
        request_id=request_id,
        retriable=retriable,
    )


def fault_from_status_error(exc: BaseException) -> HTTPFault:
    """Read status, error type/code/message, request id and wait hint from an SDK error."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    nested = body.get("error") if isinstance(body, Mapping) else None
    error = nested if isinstance(nested, Mapping) else body
    etype = code = message = ""
    if isinstance(error, Mapping):
        etype = _text(error.get("type"))
        code = _text(error.get("code"))
        details = error.get("details")
        if not code and isinstance(details, Mapping):
            code = _text(details.get("error_code"))
        message = _text(error.get("message"))
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    request_id = getattr(exc, "request_id", None) or _request_id(headers)
    return HTTPFault(
        status=status if isinstance(status, int) else None,
        error_type=etype,
        code=code,
        message=message,
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        retry_after=parse_retry_after(headers) if headers is not None else None,
    )


def _request_id(headers: Any) -> str | None:
    if headers is None:
        return None
    for name in ("x-request-id", "request-id"):
        value = headers.get(name)
        if value:
            return str(value)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


_TRANSPORT_MODULES = ("httpx", "httpx2", "httpcore", "h11", "anyio")


def _transport_kind(exc: BaseException) -> str | None:
    """``timeout`` or ``connection`` for network failures, from the SDKs or httpx underneath them."""
    for cls in type(exc).__mro__:
        root = cls.__module__.split(".")[0]
        if cls.__name__ in ("APITimeoutError", "TimeoutException") or cls is TimeoutError:
            return "timeout"
        if cls.__name__ == "APIConnectionError" or cls is ConnectionError:
            return "connection"
        if root in _TRANSPORT_MODULES and cls.__name__ in ("TransportError", "ProtocolError", "NetworkError"):
            return "connection"
    return None


def _is_sdk_api_error(exc: BaseException) -> bool:
    """An SDK ``APIError`` without a status: e.g. an error object inside an OpenAI stream."""
    return any(
        cls.__name__ == "APIError" and cls.__module__.startswith(("openai", "anthropic"))
        for cls in type(exc).__mro__
    )


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause):
        text += f"; {type(cause).__name__}: {cause}"
    return text


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The server's wait hint in seconds, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Returns None
    when there is no usable hint (missing, unreadable, or negative).
    """
    if not headers:
        return None
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return _seconds_until(raw, now)
    return seconds if seconds >= 0 else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name:
                return item.strip()
        return None
    return value.strip()


def _seconds_until(http_date: str, now: float | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return max(wait, 0.0)
