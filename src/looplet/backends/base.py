"""What the SDK backends share: settings, per-call options, streaming progress, cost and a safe repr.

Per-call options come from ``LoopConfig.llm_options`` (``request.options``):
``stream`` and ``on_text_delta`` are read by looplet; every other key is
passed to the SDK's create call as a keyword (``top_p``, ``seed``,
``tool_choice``, ``extra_body``, ...), overriding the backend's `params`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, Self

from ..errors import ConfigError, LLMError
from ..types import Usage
from .env import PLACEHOLDER_KEY, display_url, read_env
from .faults import Provider, classify
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
    "cut_short",
    "raise_stream_error",
    "response_header",
]

#: Called with each piece of text as it streams in; may be a coroutine function for async backends.
TextDeltaCallback = Callable[[str], Any]

_LOOPLET_OPTIONS = ("stream", "on_text_delta")

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
    env_prefix = ""  #: ``OPENAI`` reads OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL
    base_url_use = ""  #: what a base URL without a key is for, said in error messages
    _client: Any
    #: the response header with the provider's request id (read from a stream's response)
    request_id_header = ""

    # -- what each provider module supplies ---------------------------------------------

    def _create(self) -> Callable[..., Any]:
        """The SDK's create method (``chat.completions.create``, ``messages.create``)."""
        raise NotImplementedError

    def _kwargs(self, request: LLMRequest, settings: CallSettings) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, reply: Any) -> LLMResponse:
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
        base_url = base_url or (None if client is not None else env.base_url)
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
            if settings.stream:
                return self._stream(kwargs, settings)
            return self._parse(self._create()(**kwargs))

        return call_with_retries(
            attempt, self._classify, policy=self.retry, cancel_token=request.cancel_token, what=self._what()
        )

    def _stream(self, kwargs: dict[str, Any], settings: CallSettings) -> LLMResponse:
        sink = DeltaSink(settings.on_text_delta)
        parts = self._assembler()
        stream = self._create()(**kwargs)
        parts.request_id = response_header(stream, self.request_id_header)
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
            if settings.stream:
                return await self._stream(kwargs, settings)
            return self._parse(await self._create()(**kwargs))

        return await acall_with_retries(
            attempt, self._classify, policy=self.retry, cancel_token=request.cancel_token, what=self._what()
        )

    async def _stream(self, kwargs: dict[str, Any], settings: CallSettings) -> LLMResponse:
        sink = DeltaSink(settings.on_text_delta)
        parts = self._assembler()
        stream = await self._create()(**kwargs)
        parts.request_id = response_header(stream, self.request_id_header)
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
