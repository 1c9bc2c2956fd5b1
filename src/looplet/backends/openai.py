"""`OpenAIBackend` and `AsyncOpenAIBackend`: Chat Completions with native tool calling.

Works with OpenAI and any endpoint that speaks the same API (Ollama, vLLM,
llama.cpp, Groq, Together, ...)::

    llm = OpenAIBackend.from_env(model="gpt-4o-mini")   # OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_MODEL

The ``openai`` package is imported when a backend is built, never by
``import looplet``. The SDK's own retries are off (``max_retries=0``): the
retry policy is `looplet.backends.retry`'s, and the same for every backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import LLMError
from ..history import Message
from ..types import ToolCall, Usage
from .base import (
    AsyncSDKBackend,
    CallSettings,
    SDKBackend,
    SyncSDKBackend,
    TextDeltaCallback,
    client_key,
    client_timeout,
    count_field,
    cut_short,
    list_field,
    text_field,
)
from .env import require_sdk
from .pairing import pair_tool_results
from .pricing import PriceTable
from .protocol import LLMRequest, LLMResponse
from .retry import RetryPolicy
from .text import parse_arguments

if TYPE_CHECKING:
    from ..caching import CachePolicy

__all__ = ["OpenAIBackend", "AsyncOpenAIBackend"]

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
#: One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class _OpenAIBase(SDKBackend):
    provider_name = "OpenAI"
    env_prefix = "OPENAI"
    base_url_use = "a local OpenAI-compatible server (Ollama, vLLM, ...)"
    request_id_header = "x-request-id"
    reply_name = "a chat completion"
    reply_hint = (
        "check that the base URL is the API's (Ollama's is http://127.0.0.1:11434/v1), "
        "not a web page's, and that the server speaks the Chat Completions API"
    )
    _async = False

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: Any = None,
        timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        stream: bool = False,
        on_text_delta: TextDeltaCallback | None = None,
        prices: PriceTable | None = None,
        params: Mapping[str, Any] | None = None,
        max_tokens_param: str = "max_tokens",
        stream_usage: bool = True,
        cache: CachePolicy | None = None,
    ) -> None:
        """Build the backend (and its SDK client, unless `client` is given).

        Args:
            model: the model name sent with every request.
            api_key: the key; when None, ``OPENAI_API_KEY`` (or a placeholder
                when only `base_url` is set, for local servers).
            base_url: an OpenAI-compatible endpoint, e.g. ``http://127.0.0.1:11434/v1``.
            client: a ready ``openai.OpenAI`` (or ``AsyncOpenAI``) client; it is
                copied with ``max_retries=0``.
            timeout: seconds allowed for each attempt (connect, and each read).
            retry: the retry policy (default `RetryPolicy()`).
            stream: stream replies by default (``llm_options={"stream": ...}`` overrides).
            on_text_delta: called with each piece of streamed text, for a live display.
            prices: a price table for `Usage.cost` (see `looplet.backends.pricing`).
            params: more keyword arguments for every create call (``top_p``, ``seed``, ...).
            max_tokens_param: ``"max_completion_tokens"`` for OpenAI models that
                refuse ``max_tokens``.
            stream_usage: ask for token usage at the end of a stream
                (``stream_options``); turn off for servers that reject it.
            cache: a `looplet.caching.CachePolicy`: tools in a stable order, and its
                ``prompt_cache_key`` if it has one (OpenAI caches long prefixes on
                its own; the cached count is read from ``prompt_tokens_details``).
        """
        sdk = require_sdk("openai")
        key, base_url = self._credentials(api_key, base_url, client)
        super().__init__(
            model,
            base_url=base_url,
            secret=key or client_key(client),
            retry=retry,
            stream=stream,
            on_text_delta=on_text_delta,
            prices=prices,
            params=params,
        )
        self.max_tokens_param = max_tokens_param
        self.stream_usage = stream_usage
        self.cache = cache
        if client is not None:
            self._client = client.with_options(max_retries=0)
            self.timeout = client_timeout(client)
        else:
            factory = sdk.AsyncOpenAI if self._async else sdk.OpenAI
            self._client = factory(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
            self.timeout = timeout

    def _create(self) -> Any:
        return self._client.chat.completions.create

    def _create_raw(self) -> Any:
        return self._client.chat.completions.with_raw_response.create

    def _assembler(self) -> _StreamAssembler:
        return _StreamAssembler(self)

    # -- request ---------------------------------------------------------------------

    def _kwargs(self, request: LLMRequest, settings: CallSettings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(request.system, request.conversation()),
        }
        cache = self.cache
        if request.tools:
            tools = request.tools if cache is None else cache.ordered_tools(request.tools)
            kwargs["tools"] = openai_tools(tools)
        if cache is not None and cache.key is not None:  # in the body: older SDKs lack the keyword
            kwargs["extra_body"] = {"prompt_cache_key": cache.key}
        if request.max_tokens is not None:
            kwargs[self.max_tokens_param] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        extra_body = kwargs.get("extra_body")
        kwargs.update(settings.params)
        if extra_body and kwargs.get("extra_body") is not extra_body:  # the user's keys win, ours stay
            kwargs["extra_body"] = {**extra_body, **(kwargs.get("extra_body") or {})}
        if settings.stream:
            kwargs["stream"] = True
            if self.stream_usage:
                kwargs.setdefault("stream_options", {"include_usage": True})
        return kwargs

    # -- response --------------------------------------------------------------------

    def _missing(self, completion: Any) -> str | None:
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list):
            return "JSON without `choices`"
        if not choices:
            return "an empty `choices` list"
        if getattr(choices[0], "message", None) is None:
            return "a choice without a `message`"
        return None

    def _parse(self, completion: Any) -> LLMResponse:
        """An `LLMResponse` from a ChatCompletion; parts of the wrong type read as empty."""
        choices = list_field(getattr(completion, "choices", None))
        choice = choices[0] if choices else None
        message = getattr(choice, "message", None)
        raw_calls = [
            (
                text_field(getattr(tc, "id", None)),
                text_field(getattr(getattr(tc, "function", None), "name", None)),
                getattr(getattr(tc, "function", None), "arguments", None),
            )
            for tc in list_field(getattr(message, "tool_calls", None))
        ]
        request_id = getattr(completion, "_request_id", None)
        return self._response(
            text=text_field(getattr(message, "content", None)),
            refusal=text_field(getattr(message, "refusal", None)),
            calls=raw_calls,
            finish=text_field(getattr(choice, "finish_reason", None)),
            usage=getattr(completion, "usage", None),
            model=text_field(getattr(completion, "model", None)),
            request_id=request_id if isinstance(request_id, str) else None,
            response_id=text_field(getattr(completion, "id", None)),
        )

    def _response(
        self,
        *,
        text: str,
        refusal: str,
        calls: Sequence[tuple[str, str, Any]],
        finish: str,
        usage: Any,
        model: str,
        request_id: str | None,
        response_id: str = "",
    ) -> LLMResponse:
        if refusal or finish == "content_filter":
            said = self._provider.scrub(refusal) if refusal else "finish_reason=content_filter"
            raise LLMError(f"the model refused: {said}", kind="refused", request_id=request_id)
        cut = finish == "length"
        tool_calls = [_tool_call(call_id, name, args, cut) for call_id, name, args in calls]
        return LLMResponse(
            text=text,
            tool_calls=tool_calls,
            usage=self._priced(openai_usage(usage), model),
            stop_reason=finish,
            model=model,
            request_id=request_id or "",
            response_id=response_id,
        )


class OpenAIBackend(_OpenAIBase, SyncSDKBackend):
    """Chat Completions over the ``openai`` SDK, with native tool calls (sync).

    ``OpenAIBackend.from_env(model=...)`` reads ``OPENAI_API_KEY``,
    ``OPENAI_BASE_URL`` and ``OPENAI_MODEL`` (which wins over `model`).
    """


class AsyncOpenAIBackend(_OpenAIBase, AsyncSDKBackend):
    """The async twin of `OpenAIBackend` (``await llm.complete(request)``)."""

    _async = True


class _PartialCall:
    """One streamed tool call: id, name and argument pieces so far."""

    __slots__ = ("ident", "name", "arguments")

    def __init__(self) -> None:
        self.ident = ""
        self.name = ""
        self.arguments: list[str] = []


class _StreamAssembler:
    """Puts streamed chunks back together: text, tool calls by index, finish reason, usage."""

    def __init__(self, backend: _OpenAIBase) -> None:
        self.backend = backend
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.finish = ""
        self.usage: Any = None
        self.model = ""
        self.request_id: str | None = None
        self.response_id = ""

    @property
    def ended(self) -> bool:
        return bool(self.finish)

    def feed(self, chunk: Any) -> str:
        """Take one chunk; returns its new text (for the live display)."""
        self.model = text_field(getattr(chunk, "model", None)) or self.model
        self.response_id = text_field(getattr(chunk, "id", None)) or self.response_id
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        new = ""
        for choice in list_field(getattr(chunk, "choices", None)):
            if count_field(getattr(choice, "index", 0)) != 0:
                continue
            delta = getattr(choice, "delta", None)
            piece = text_field(getattr(delta, "content", None))
            if piece:
                self.text.append(piece)
                new += piece
            refusal = text_field(getattr(delta, "refusal", None))
            if refusal:
                self.refusal.append(refusal)
            for tc in list_field(getattr(delta, "tool_calls", None)):
                self._call_delta(tc)
            finish = text_field(getattr(choice, "finish_reason", None))
            if finish:
                self.finish = finish
        return new

    def _call_delta(self, tc: Any) -> None:
        slot = self.calls.setdefault(count_field(getattr(tc, "index", 0)), _PartialCall())
        ident = text_field(getattr(tc, "id", None))
        if ident:
            slot.ident = ident
        function = getattr(tc, "function", None)
        name = text_field(getattr(function, "name", None))
        if name and name != slot.name:  # sent once by OpenAI; in pieces by a few servers
            slot.name += name
        arguments = text_field(getattr(function, "arguments", None))
        if arguments:
            slot.arguments.append(arguments)

    def result(self, emitted: bool) -> LLMResponse:
        if not self.finish:
            raise cut_short(self.backend._provider, emitted, self.request_id, "no finish_reason")
        calls = [(c.ident, c.name, "".join(c.arguments)) for _, c in sorted(self.calls.items())]
        return self.backend._response(
            text="".join(self.text),
            refusal="".join(self.refusal),
            calls=calls,
            finish=self.finish,
            usage=self.usage,
            model=self.model,
            request_id=self.request_id,
            response_id=self.response_id,
        )


# -- wire format --------------------------------------------------------------------


def openai_messages(system: str, conversation: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages: tool calls and results paired by id."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in pair_tool_results(conversation):
        if message.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": message.content or None}
            if message.tool_calls:
                item["tool_calls"] = [_wire_call(c) for c in message.tool_calls]
            elif not message.content:
                item["content"] = ""
            out.append(item)
        elif message.role == "tool":
            out.append({"role": "tool", "tool_call_id": message.call_id, "content": message.content})
        else:
            out.append({"role": "user", "content": message.content})
    return out


def _wire_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.tool, "arguments": _ENCODER.encode(call.args)},
    }


def openai_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool specs as Chat Completions ``function`` tools."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec["name"],
                "description": spec.get("description", ""),
                "parameters": spec.get("parameters") or _EMPTY_SCHEMA,
            },
        }
        for spec in tools
    ]


def openai_usage(usage: Any) -> Usage:
    """Token counts from a Chat Completions ``usage`` object (zeros when absent or not numbers)."""
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=count_field(getattr(usage, "prompt_tokens", 0)),
        output_tokens=count_field(getattr(usage, "completion_tokens", 0)),
        cached_tokens=count_field(getattr(details, "cached_tokens", 0)),
    )


def _tool_call(call_id: str, name: str, raw_args: Any, cut: bool) -> ToolCall:
    args, problem = parse_arguments(raw_args)
    if cut:
        args, problem = (
            {},
            (
                "the reply hit the token limit (finish_reason=length) while this call was being written, "
                "so it was not run; ask for less at once, or raise max_tokens"
            ),
        )
    return ToolCall(tool=name, args=args, call_id=call_id, parse_error=problem)
