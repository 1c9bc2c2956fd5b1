"""What the SDK backends share: settings, per-call options, streaming progress, cost and a safe repr.

Per-call options come from ``LoopConfig.llm_options`` (``request.options``):
``stream`` and ``on_text_delta`` are read by looplet; every other key is
passed to the SDK's create call as a keyword (``top_p``, ``seed``,
``tool_choice``, ``extra_body``, ...), overriding the backend's `params`.

A 200 is trusted only when its body is the reply asked for: an HTML page
(a web UI at the base URL), JSON without the reply's fields, or an error
object sent with a 200 is an `LLMError` of kind ``bad_response`` that says
what came back, never an empty model reply. Every field read from a reply
is checked for its type, so an `LLMResponse` always holds what it declares.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, Self

from ..errors import ConfigError, LLMError
from ..types import Usage
from .env import PLACEHOLDER_KEY, display_url, read_env, url_problem
from .faults import Provider, classify, not_a_reply, stream_kind
from .pricing import PriceTable, cost_of
from .protocol import LLMRequest, LLMResponse
from .retry import RetryPolicy, acall_with_retries, call_with_retries

__all__ = [
    "SDKBackend",
    "SyncSDKBackend",
    "AsyncSDKBackend",
    "StreamAssembler",
    "CallSettings",
    "DeltaSink",
    "TextDeltaCallback",
    "client_key",
    "client_timeout",
    "count_field",
    "cut_short",
    "list_field",
    "raise_stream_error",
    "response_header",
    "text_field",
]

#: Called with each piece of text as it streams in; may be a coroutine function for async backends.
TextDeltaCallback = Callable[[str], Any]

_LOOPLET_OPTIONS = ("stream", "on_text_delta")
#: An attempt started just before the deadline still gets this long (an SDK refuses a timeout of 0).
_SHORTEST_ATTEMPT_S = 0.01

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CallSettings:
    """The settings of one model call, after the request's options are applied."""

    stream: bool
    on_text_delta: TextDeltaCallback | None
    params: dict[str, Any] = field(default_factory=dict)


class SDKBackend:
    """Base of `OpenAIBackend`, `AnthropicBackend` and their async twins (not used on its own)."""

    provider_name = ""
    #: tools go to the provider as native tool schemas, so the loop never asks the model for JSON in text
    native_tool_calls = True
    env_prefix = ""  #: ``OPENAI`` reads OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL
    base_url_use = ""  #: what a base URL without a key is for, said in error messages
    _client: Any
    #: the response header with the provider's request id (read from a stream's response)
    request_id_header = ""
    #: what a reply is called in errors (``a chat completion``)
    reply_name = ""
    #: what to check when a 200 is not a reply, said in errors
    reply_hint = ""
    #: seconds allowed for each attempt, as configured (bounded further by a run's deadline)
    timeout: float = math.inf

    # -- what each provider module supplies ---------------------------------------------

    def _create(self) -> Callable[..., Any]:
        """The SDK's create method (``chat.completions.create``, ``messages.create``)."""
        raise NotImplementedError

    def _kwargs(self, request: LLMRequest, settings: CallSettings) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, reply: Any) -> LLMResponse:
        raise NotImplementedError

    def _missing(self, reply: Any) -> str | None:
        """What a parsed JSON reply lacks to be a reply (``JSON without `choices` ``), or None."""
        raise NotImplementedError

    def _assembler(self) -> StreamAssembler:
        raise NotImplementedError

    @property
    def key_env(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    @classmethod
    def from_env(cls, model: str | None = None, **overrides: Any) -> Self:
        """A backend configured from ``<PREFIX>_API_KEY``, ``<PREFIX>_BASE_URL`` and ``<PREFIX>_MODEL``.

        The model variable wins over `model`, which is the fallback when it is
        unset: the same code then runs against whichever endpoint the
        environment names. `overrides` are constructor arguments and win over
        the environment (e.g. ``base_url=...``, ``retry=...``).

        Raises:
            ConfigError: no key, base URL or model is set, naming the variables.
        """
        prefix = cls.env_prefix
        env = read_env(prefix)
        chosen = env.model or model
        if not chosen:
            raise ConfigError(
                f"no {cls.provider_name} model: set {prefix}_MODEL, or pass model= to from_env()"
            )
        if env.model and model and env.model != model:
            log.info("using model %r from %s_MODEL (the code's default is %r)", env.model, prefix, model)
        given = any(overrides.get(k) for k in ("api_key", "base_url", "client"))
        if not (env.api_key or env.base_url or given):
            raise ConfigError(
                f"{cls.provider_name} is not configured: set {prefix}_API_KEY (and {prefix}_MODEL), "
                f"or {prefix}_BASE_URL for {cls.base_url_use}"
            )
        return cls(chosen, **overrides)

    @classmethod
    def _credentials(
        cls, api_key: str | None, base_url: str | None, client: Any
    ) -> tuple[str | None, str | None]:
        """The key and base URL to build a client with: the arguments, else the environment.

        A base URL without a key gets `PLACEHOLDER_KEY` (local servers ignore it).
        """
        env = read_env(cls.env_prefix)
        key = api_key or (None if client is not None else env.api_key)
        source = "base_url" if base_url else f"{cls.env_prefix}_BASE_URL"
        base_url = base_url or (None if client is not None else env.base_url)
        problem = url_problem(str(base_url)) if base_url is not None else None
        if problem is not None:
            raise ConfigError(f"{source}={display_url(str(base_url))!r} is not a usable URL: {problem}")
        if client is None and key is None:
            if base_url is None:
                prefix = cls.env_prefix
                raise ConfigError(
                    f"no {cls.provider_name} key: set {prefix}_API_KEY, or {prefix}_BASE_URL for "
                    f"{cls.base_url_use}, or pass api_key=/base_url="
                )
            key = PLACEHOLDER_KEY
        return key, base_url

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        secret: str,
        retry: RetryPolicy | None,
        stream: bool,
        on_text_delta: TextDeltaCallback | None,
        prices: PriceTable | None,
        params: Mapping[str, Any] | None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"{type(self).__name__} needs a model name, got {model!r}")
        self.model = model
        self.base_url = base_url
        self.retry = retry if retry is not None else RetryPolicy()
        self.stream = stream
        self.on_text_delta = on_text_delta
        self.prices = prices
        self.params = dict(params or {})
        # Errors name the server when it is not the provider's own, e.g. a local Ollama.
        name = (
            self.provider_name
            if base_url is None
            else f"{self.provider_name}-compatible server at {display_url(base_url)}"
        )
        self._provider = Provider(name, self.key_env, secret)

    def _settings(self, options: Mapping[str, Any]) -> CallSettings:
        params = dict(self.params)
        params.update({k: v for k, v in options.items() if k not in _LOOPLET_OPTIONS})
        callback = options.get("on_text_delta", self.on_text_delta)
        if callback is not None and not callable(callback):
            raise ConfigError(f"on_text_delta must be callable, got {type(callback).__name__}")
        return CallSettings(bool(options.get("stream", self.stream)), callback, params)

    def _create_raw(self) -> Callable[..., Any]:
        """The SDK's create method that also returns the HTTP response (``with_raw_response``)."""
        raise NotImplementedError

    def _bounded(self, kwargs: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        """`kwargs` with the attempt's timeout cut to the time left before the run's deadline."""
        if deadline is None:
            return kwargs
        left = deadline - time.monotonic()
        configured = kwargs.get("timeout", self.timeout)
        if isinstance(configured, bool) or not isinstance(configured, int | float):
            configured = self.timeout
        if left >= configured:
            return kwargs
        return {**kwargs, "timeout": max(left, _SHORTEST_ATTEMPT_S)}

    def _reply(self, parsed: Any, raw: Any) -> LLMResponse:
        """The `LLMResponse` for a 200's decoded body, or a `bad_response` error saying what it was."""
        response = getattr(raw, "http_response", None)
        if isinstance(parsed, str | bytes):
            what = "an HTML page" if _is_html(response) else "a body that is not JSON"
            raise self._not_a_reply(what, response, retriable=False)
        if parsed is None or isinstance(parsed, list | int | float | bool):
            raise self._not_a_reply("JSON that is not an object", response, retriable=False)
        missing = self._missing(parsed)
        if missing is None:
            reply = self._parse(parsed)
            reply.raw = _as_data(parsed)
            return reply
        error = getattr(parsed, "error", None)
        if error is not None:
            etype, code = _field(error, "type"), _field(error, "code")
            label = etype or code or "without a type"
            raise self._not_a_reply(
                f"an error object ({label})",
                response,
                retriable=stream_kind(etype, code)[1],
                hint="the server reported a failure with a success status",
            )
        raise self._not_a_reply(missing, response, retriable=False)

    def _undecodable(self, raw: Any) -> LLMError:
        """The error for a 200 whose body claims to be JSON but does not decode (retried: often cut short)."""
        response = getattr(raw, "http_response", None)
        return self._not_a_reply("a body that is not valid JSON", response, retriable=True)

    def _not_a_reply(self, what: str, response: Any, *, retriable: bool, hint: str = "") -> LLMError:
        """The `bad_response` error for `response`, quoting its content type and the start of its body."""
        headers = getattr(response, "headers", None)
        content_type = headers.get("content-type") if headers is not None else None
        request_id = headers.get(self.request_id_header) if headers is not None else None
        return not_a_reply(
            self._provider,
            what,
            expected=self.reply_name,
            content_type=content_type,
            body=_body_text(response),
            request_id=request_id or None,
            retriable=retriable,
            hint=hint or self.reply_hint,
        )

    def _classify(self, exc: BaseException) -> Any:
        return classify(exc, self._provider)

    def _priced(self, usage: Usage, model: str) -> Usage:
        if self.prices:
            usage.cost = cost_of(usage, model or self.model, self.prices)
        return usage

    def _what(self) -> str:
        return f"{self.provider_name} call ({self.model})"

    def __repr__(self) -> str:
        url = f", base_url={display_url(self.base_url)!r}" if self.base_url else ""
        return f"{type(self).__name__}(model={self.model!r}{url})"


class StreamAssembler(Protocol):
    """Puts one provider's streamed events back together into an `LLMResponse`."""

    request_id: str | None

    @property
    def ended(self) -> bool:
        """Whether the provider said the reply is complete (a finish or stop reason)."""
        ...

    def feed(self, event: Any) -> str:
        """Take one event; returns its new text (for the live display)."""
        ...

    def result(self, emitted: bool) -> LLMResponse: ...


class SyncSDKBackend(SDKBackend):
    """``complete()``, ``close()`` and ``with backend:`` for the sync backends."""

    def complete(self, request: LLMRequest) -> LLMResponse:
        """One model call: plain or streamed, retried by `looplet.backends.retry`'s policy."""
        settings = self._settings(request.options)
        kwargs = self._kwargs(request, settings)

        def attempt() -> LLMResponse:
            bounded = self._bounded(kwargs, request.deadline)
            if settings.stream:
                return self._stream(bounded, settings)
            raw = self._create_raw()(**bounded)
            try:
                parsed = raw.parse()
            except json.JSONDecodeError:
                raise self._undecodable(raw) from None
            return self._reply(parsed, raw)

        return call_with_retries(
            attempt,
            self._classify,
            policy=self.retry,
            cancel_token=request.cancel_token,
            deadline=request.deadline,
            what=self._what(),
        )

    def _stream(self, kwargs: dict[str, Any], settings: CallSettings) -> LLMResponse:
        sink = DeltaSink(settings.on_text_delta)
        parts = self._assembler()
        stream = self._create()(**kwargs)
        parts.request_id = response_header(stream, self.request_id_header)
        page: Any = getattr(stream, "response", None)
        if _is_html(page):
            with stream:
                page.read()
            raise self._not_a_reply("an HTML page", page, retriable=False)
        with stream:
            try:
                for event in stream:
                    sink.text(parts.feed(event))
            except Exception as exc:
                if not parts.ended:
                    raise_stream_error(exc, self._provider, sink.emitted)
        return parts.result(sink.emitted)

    def close(self) -> None:
        """Close the SDK client's connections (shared with a `client` you passed in)."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSDKBackend(SDKBackend):
    """The async twin: ``await complete()``, ``await aclose()`` and ``async with backend:``.

    Close an async backend inside the event loop that used it: its connections
    belong to that loop.
    """

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """One model call: plain or streamed, retried by `looplet.backends.retry`'s policy."""
        settings = self._settings(request.options)
        kwargs = self._kwargs(request, settings)

        async def attempt() -> LLMResponse:
            bounded = self._bounded(kwargs, request.deadline)
            if settings.stream:
                return await self._stream(bounded, settings)
            raw = await self._create_raw()(**bounded)
            try:
                parsed = raw.parse()
                if inspect.isawaitable(parsed):  # the newer SDK response classes parse asynchronously
                    parsed = await parsed
            except json.JSONDecodeError:
                raise self._undecodable(raw) from None
            return self._reply(parsed, raw)

        return await acall_with_retries(
            attempt,
            self._classify,
            policy=self.retry,
            cancel_token=request.cancel_token,
            deadline=request.deadline,
            what=self._what(),
        )

    async def _stream(self, kwargs: dict[str, Any], settings: CallSettings) -> LLMResponse:
        sink = DeltaSink(settings.on_text_delta)
        parts = self._assembler()
        stream = await self._create()(**kwargs)
        parts.request_id = response_header(stream, self.request_id_header)
        page: Any = getattr(stream, "response", None)
        if _is_html(page):
            async with stream:
                await page.aread()
            raise self._not_a_reply("an HTML page", page, retriable=False)
        async with stream:
            try:
                async for event in stream:
                    await sink.atext(parts.feed(event))
            except Exception as exc:
                if not parts.ended:
                    raise_stream_error(exc, self._provider, sink.emitted)
        return parts.result(sink.emitted)

    async def aclose(self) -> None:
        """Close the SDK client's connections (shared with a `client` you passed in)."""
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class DeltaSink:
    """Hands streamed text to the caller's callback, and remembers whether any was shown.

    Once text was shown, a broken stream is not retried: the caller would see
    the start of the reply twice.
    """

    __slots__ = ("callback", "emitted")

    def __init__(self, callback: TextDeltaCallback | None) -> None:
        self.callback = callback
        self.emitted = False

    def text(self, delta: str) -> None:
        if delta and self.callback is not None:
            self.emitted = True
            self.callback(delta)

    async def atext(self, delta: str) -> None:
        if delta and self.callback is not None:
            self.emitted = True
            out = self.callback(delta)
            if inspect.isawaitable(out):
                await out


def raise_stream_error(exc: Exception, provider: Provider, emitted: bool) -> NoReturn:
    """Raise the typed error for `exc`, raised while reading a stream (or `exc` itself if unknown).

    A stream that failed after its text was shown is not retriable.
    """
    failure = classify(exc, provider)
    if failure is None:
        raise exc
    error = failure.error
    if emitted and error.retriable:
        error = LLMError(
            f"{error.args[0]}; the stream broke after part of the reply was shown, so it is not retried",
            kind=error.kind,
            status=error.status,
            request_id=error.request_id,
            retriable=False,
        )
    raise error from exc


def _as_data(parsed: Any) -> Any:
    """The SDK's reply object as the JSON data it was read from (None if it cannot say)."""
    dump = getattr(parsed, "model_dump", None)
    if not callable(dump):
        return None
    try:
        return dump(mode="json", exclude_unset=True, warnings=False)
    except Exception:  # a reply the SDK read but cannot write back: the parsed fields are kept anyway
        return None


def _is_html(response: Any) -> bool:
    headers = getattr(response, "headers", None)
    content_type = str(headers.get("content-type", "")) if headers is not None else ""
    return content_type.lower().lstrip().startswith(("text/html", "application/xhtml"))


def _body_text(response: Any) -> str:
    """The body of an HTTP response already read, as text ("" when it cannot be had)."""
    try:
        text = response.text
    except Exception:  # not read, or undecodable: the error says less, but still says what it can
        return ""
    return text if isinstance(text, str) else ""


def _field(value: Any, name: str) -> str:
    """A string field of an object or mapping ("" when absent or not a string)."""
    item = value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
    return item if isinstance(item, str) else ""


def text_field(value: Any) -> str:
    """A reply's text as a string: a string as is, a list of text parts joined, anything else "".

    SDK objects are built without validation, so a server can put any JSON
    value where a string belongs; the `LLMResponse` must still hold a `str`.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "".join(_field(part, "text") if not isinstance(part, str) else part for part in value)
    return ""


def count_field(value: Any) -> int:
    """A token count as a whole number >= 0 (0 for a missing, negative or non-numeric value)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(int(value), 0)


def list_field(value: Any) -> list[Any]:
    """A list field (``tool_calls``, ``content``) as a list ([] when absent or not a list)."""
    return list(value) if isinstance(value, list | tuple) else []


def client_timeout(client: Any) -> float:
    """The per-attempt timeout of a client you passed in, in seconds (inf when it cannot be read)."""
    timeout = getattr(client, "timeout", None)
    timeout = getattr(timeout, "read", timeout)  # an httpx.Timeout: its read timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return math.inf
    return float(timeout)


def client_key(client: Any) -> str:
    """The key inside a client you passed in, so it can be masked in messages too."""
    key = getattr(client, "api_key", None)
    return key if isinstance(key, str) else ""


def response_header(stream: Any, name: str) -> str | None:
    """A header of the HTTP response behind an SDK stream (e.g. its request id)."""
    response = getattr(stream, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get(name) if headers is not None else None
    return str(value) if value else None


def cut_short(provider: Provider, emitted: bool, request_id: str | None, detail: str) -> LLMError:
    """The error for a stream that ended before the model said it was finished."""
    shown = "; part of the reply was already shown, so it is not retried" if emitted else ""
    return LLMError(
        f"the {provider.name} stream ended early ({detail}); its partial tool calls were not run{shown}",
        kind="bad_response",
        request_id=request_id,
        retriable=not emitted,
    )
