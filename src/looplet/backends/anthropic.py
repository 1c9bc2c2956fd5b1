"""`AnthropicBackend` and `AsyncAnthropicBackend`: the Messages API, with ``tool_use``/``tool_result`` blocks.

    llm = AnthropicBackend.from_env(model="claude-sonnet-4-5")  # ANTHROPIC_API_KEY / _BASE_URL / _MODEL

The ``anthropic`` package is imported when a backend is built, never by
``import looplet``. The SDK's own retries are off (``max_retries=0``): the
retry policy is `looplet.backends.retry`'s, and the same for every backend.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
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
from .pricing import PriceTable, cost_of
from .protocol import LLMRequest, LLMResponse
from .retry import RetryPolicy
from .text import parse_arguments

if TYPE_CHECKING:
    from ..caching import CachePolicy

__all__ = ["AnthropicBackend", "AsyncAnthropicBackend", "anthropic_body"]

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class _AnthropicBase(SDKBackend):
    provider_name = "Anthropic"
    env_prefix = "ANTHROPIC"
    base_url_use = "a proxy or gateway"
    request_id_header = "request-id"
    reply_name = "a Messages API message"
    reply_hint = "check that the base URL is a Messages API endpoint (a proxy or gateway), not a web page"
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
        max_tokens: int = 4096,
        cache: CachePolicy | None = None,
    ) -> None:
        """Build the backend (and its SDK client, unless `client` is given).

        Args:
            model: the model name sent with every request.
            api_key: the key; when None, ``ANTHROPIC_API_KEY`` (or a placeholder
                when only `base_url` is set, for a local or proxy endpoint).
            base_url: another Messages endpoint (a proxy, a gateway, a test server).
            client: a ready ``anthropic.Anthropic`` (or ``AsyncAnthropic``)
                client; it is copied with ``max_retries=0``.
            timeout: seconds allowed for each attempt (connect, and each read).
            retry: the retry policy (default `RetryPolicy()`).
            stream: stream replies by default (``llm_options={"stream": ...}`` overrides).
            on_text_delta: called with each piece of streamed text, for a live display.
            prices: a price table for `Usage.cost` (see `looplet.backends.pricing`).
            params: more keyword arguments for every create call (``tool_choice``, ``metadata``, ...).
            max_tokens: the reply limit when the loop sets none (the API requires one).
            cache: a `looplet.caching.CachePolicy`: tools in a stable order and
                ``cache_control`` breakpoints on the tools, the system prompt and
                the last stable messages (None: no breakpoints, tools as given).
        """
        sdk = require_sdk("anthropic")
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
        self.max_tokens = max_tokens
        self.cache = cache
        if client is not None:
            self._client = client.with_options(max_retries=0)
            self.timeout = client_timeout(client)
        else:
            factory = sdk.AsyncAnthropic if self._async else sdk.Anthropic
            self._client = factory(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
            self.timeout = timeout

    def _create(self) -> Any:
        return self._client.messages.create

    def _create_raw(self) -> Any:
        return self._client.messages.with_raw_response.create

    def _assembler(self) -> _StreamAssembler:
        return _StreamAssembler(self)

    # -- request ---------------------------------------------------------------------

    def _kwargs(self, request: LLMRequest, settings: CallSettings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens or self.max_tokens,
            **anthropic_body(request, self.cache),
        }
        kwargs.update(settings.params)
        if request.temperature is not None:
            # Sent in the body: recent SDK releases dropped the keyword, the API still reads it.
            kwargs["extra_body"] = {"temperature": request.temperature, **(kwargs.get("extra_body") or {})}
        if settings.stream:
            kwargs["stream"] = True
        return kwargs

    # -- response --------------------------------------------------------------------

    def _missing(self, message: Any) -> str | None:
        if not isinstance(getattr(message, "content", None), list):
            return "JSON without `content`"
        return None

    def _parse(self, message: Any) -> LLMResponse:
        """An `LLMResponse` from a Message; parts of the wrong type read as empty."""
        texts: list[str] = []
        calls: list[tuple[str, str, Any]] = []
        for block in list_field(getattr(message, "content", None)):
            kind = getattr(block, "type", "")
            if kind == "text":
                texts.append(text_field(getattr(block, "text", None)))
            elif kind == "tool_use":
                call_id = text_field(getattr(block, "id", None))
                name = text_field(getattr(block, "name", None))
                calls.append((call_id, name, getattr(block, "input", None)))
        request_id = getattr(message, "_request_id", None)
        return self._response(
            text="".join(texts),
            calls=calls,
            stop=text_field(getattr(message, "stop_reason", None)),
            counts=_Counts.of(getattr(message, "usage", None)),
            model=text_field(getattr(message, "model", None)),
            request_id=request_id if isinstance(request_id, str) else None,
            response_id=text_field(getattr(message, "id", None)),
        )

    def _response(
        self,
        *,
        text: str,
        calls: Sequence[tuple[str, str, Any]],
        stop: str,
        counts: _Counts,
        model: str,
        request_id: str | None,
        response_id: str = "",
    ) -> LLMResponse:
        if stop == "refusal":
            said = f": {self._provider.scrub(text)}" if text else ""
            raise LLMError(
                f"the model refused (stop_reason=refusal){said}", kind="refused", request_id=request_id
            )
        cut = stop == "max_tokens"
        return LLMResponse(
            text=text,
            tool_calls=[_tool_call(call_id, name, raw, cut) for call_id, name, raw in calls],
            usage=self._priced_counts(counts, model),
            stop_reason=stop,
            model=model,
            request_id=request_id or "",
            response_id=response_id,
        )

    def _priced_counts(self, counts: _Counts, model: str) -> Usage:
        """The reply's `Usage`, with its cost when there are prices: cache writes at write prices."""
        usage = counts.usage()
        if self.prices:
            usage.cost = cost_of(
                usage,
                model or self.model,
                self.prices,
                cache_writes=counts.written,
                cache_writes_1h=counts.written_1h,
            )
        return usage


class AnthropicBackend(_AnthropicBase, SyncSDKBackend):
    """The Messages API over the ``anthropic`` SDK, with native tool use (sync).

    ``AnthropicBackend.from_env(model=...)`` reads ``ANTHROPIC_API_KEY``,
    ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_MODEL`` (which wins over `model`).
    """


class AsyncAnthropicBackend(_AnthropicBase, AsyncSDKBackend):
    """The async twin of `AnthropicBackend` (``await llm.complete(request)``)."""

    _async = True


class _Block:
    """One content block being streamed: its kind, tool id and name, and the pieces so far."""

    __slots__ = ("kind", "ident", "name", "start_input", "parts")

    def __init__(self, kind: str, ident: str, name: str, start_input: Any) -> None:
        self.kind = kind
        self.ident = ident
        self.name = name
        self.start_input = start_input
        self.parts: list[str] = []


class _StreamAssembler:
    """Puts streamed events back together: text and tool_use blocks by index, stop reason, usage."""

    def __init__(self, backend: _AnthropicBase) -> None:
        self.backend = backend
        self.blocks: dict[int, _Block] = {}
        self.stop = ""
        self.counts = _Counts()
        self.model = ""
        self.request_id: str | None = None
        self.response_id = ""

    @property
    def ended(self) -> bool:
        return bool(self.stop)

    def feed(self, event: Any) -> str:
        """Take one event; returns its new text (for the live display)."""
        kind = getattr(event, "type", "")
        if kind == "message_start":
            message = getattr(event, "message", None)
            self.model = text_field(getattr(message, "model", None)) or self.model
            self.response_id = text_field(getattr(message, "id", None)) or self.response_id
            self.counts = _Counts.of(getattr(message, "usage", None))
        elif kind == "content_block_start":
            block = getattr(event, "content_block", None)
            start = _Block(
                text_field(getattr(block, "type", None)),
                text_field(getattr(block, "id", None)),
                text_field(getattr(block, "name", None)),
                getattr(block, "input", None),
            )
            text = text_field(getattr(block, "text", None))
            if start.kind == "text" and text:
                start.parts.append(text)
            self.blocks[count_field(getattr(event, "index", len(self.blocks)))] = start
        elif kind == "content_block_delta":
            return self._delta(event)
        elif kind == "message_delta":
            self.stop = text_field(getattr(getattr(event, "delta", None), "stop_reason", None)) or self.stop
            self.counts.update(getattr(event, "usage", None))
        return ""

    def _delta(self, event: Any) -> str:
        delta = getattr(event, "delta", None)
        slot = self.blocks.get(count_field(getattr(event, "index", -1)))
        if slot is None:
            return ""
        dtype = getattr(delta, "type", "")
        if dtype == "text_delta":
            piece = text_field(getattr(delta, "text", None))
            slot.parts.append(piece)
            return piece
        if dtype == "input_json_delta":
            slot.parts.append(text_field(getattr(delta, "partial_json", None)))
        return ""

    def result(self, emitted: bool) -> LLMResponse:
        if not self.stop:
            raise cut_short(self.backend._provider, emitted, self.request_id, "no stop_reason")
        texts: list[str] = []
        calls: list[tuple[str, str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            if block.kind == "text":
                texts.append("".join(block.parts))
            elif block.kind == "tool_use":
                raw = "".join(block.parts) if block.parts else block.start_input
                calls.append((block.ident, block.name, raw))
        return self.backend._response(
            text="".join(texts),
            calls=calls,
            stop=self.stop,
            counts=self.counts,
            model=self.model,
            request_id=self.request_id,
            response_id=self.response_id,
        )


# -- wire format --------------------------------------------------------------------


def anthropic_body(request: LLMRequest, cache: CachePolicy | None = None) -> dict[str, Any]:
    """The ``messages``, ``system`` and ``tools`` of the Messages API request for `request`.

    With a `cache` policy the tools go in its stable order and get
    ``cache_control`` breakpoints as it says (see `looplet.caching`): the
    system prompt becomes one text block, and the last tool and the last
    stable messages are marked. The texts hooks add for this call only
    (``request.extra``) come after every breakpoint.
    """
    tools = list(request.tools) if cache is None else cache.ordered_tools(request.tools)
    history = pair_tool_results(request.messages)
    marks = cache.message_marks(history) if cache is not None else []
    extra = [Message("user", "\n\n".join(request.extra))] if request.extra else []
    control = cache.control() if cache is not None else {}
    body: dict[str, Any] = {"messages": anthropic_messages(history + extra, marks=marks, control=control)}
    if request.system:
        if cache is not None and cache.system:
            body["system"] = [{"type": "text", "text": request.system, "cache_control": dict(control)}]
        else:
            body["system"] = request.system
    if tools:
        body["tools"] = anthropic_tools(tools)
        if cache is not None and cache.tools:
            body["tools"][-1]["cache_control"] = dict(control)
    return body


def anthropic_messages(
    conversation: Sequence[Message],
    *,
    marks: Collection[int] = (),
    control: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The conversation as Messages API turns.

    Roles alternate (consecutive turns of one role are merged), tool calls
    are ``tool_use`` blocks, their results ``tool_result`` blocks at the start
    of the next user turn, and empty text is left out (the API rejects it).
    After each message whose index (in the paired conversation) is in
    `marks`, the last block sent so far gets ``cache_control`` = `control`.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(pair_tool_results(conversation)):
        if message.role == "assistant":
            blocks = _text_block(message.content) + [_tool_use(c) for c in message.tool_calls]
            _add(out, "assistant", blocks)
        elif message.role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": _wire_id(message.call_id),
                "content": message.content or "(empty)",
            }
            if message.error:
                result["is_error"] = True
            _add(out, "user", [result])
        else:
            _add(out, "user", _text_block(message.content))
        if i in marks and out:
            out[-1]["content"][-1]["cache_control"] = dict(control or {"type": "ephemeral"})
    for turn in out:
        if turn["role"] == "user":  # tool results first, as the API requires
            turn["content"].sort(key=lambda block: block.get("type") != "tool_result")
    if not out or out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "(start)"}]})
    return out


def _add(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _text_block(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}] if text.strip() else []


def _tool_use(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": _wire_id(call.call_id), "name": call.tool, "input": call.args}


def _wire_id(call_id: str) -> str:
    """Anthropic ids allow only letters, digits, ``_`` and ``-``; both sides of a pair map alike."""
    return _BAD_ID_CHARS.sub("_", call_id) or "call"


def anthropic_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool specs as Messages API tools."""
    return [
        {
            "name": spec["name"],
            "description": spec.get("description", ""),
            "input_schema": spec.get("parameters") or _EMPTY_SCHEMA,
        }
        for spec in tools
    ]


def anthropic_usage(usage: Any) -> Usage:
    """Token counts from a Messages ``usage`` object; input counts cache reads and writes too."""
    return _Counts.of(usage).usage()


@dataclass
class _Counts:
    """A Messages ``usage`` as the API reports it: uncached input, cache reads, cache writes, output.

    The API's ``input_tokens`` are only the tokens after the last cache
    breakpoint; the prompt's size is all three input counts together.
    """

    input: int = 0
    output: int = 0
    read: int = 0
    written: int = 0
    written_1h: int = 0  # of `written`, those kept for an hour

    @classmethod
    def of(cls, usage: Any) -> _Counts:
        counts = cls()
        counts.update(usage)
        return counts

    def update(self, usage: Any) -> None:
        """Take the counts `usage` reports. A stream's ``message_delta`` repeats them as running
        totals (or reports some only there), so a count it has replaces the one from the start."""
        if usage is None:
            return
        for name, field in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("read", "cache_read_input_tokens"),
            ("written", "cache_creation_input_tokens"),
        ):
            value = _usage_field(usage, field)
            if value is not None:
                setattr(self, name, count_field(value))
        hour = _usage_field(_usage_field(usage, "cache_creation"), "ephemeral_1h_input_tokens")
        if hour is not None:
            self.written_1h = count_field(hour)
        self.written_1h = min(self.written_1h, self.written)

    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input + self.read + self.written,
            output_tokens=self.output,
            cached_tokens=self.read,
            cache_write_tokens=self.written,
        )


def _usage_field(usage: Any, name: str) -> Any:
    """A field of an SDK usage object, or of the plain dict an older SDK leaves an unknown field as."""
    if isinstance(usage, Mapping):
        return usage.get(name)
    return getattr(usage, name, None)


def _tool_call(call_id: str, name: str, raw: Any, cut: bool) -> ToolCall:
    args, problem = parse_arguments(raw)
    if cut:
        args, problem = (
            {},
            (
                "the reply hit the token limit (stop_reason=max_tokens) while this call was being written, "
                "so it was not run; ask for less at once, or raise max_tokens"
            ),
        )
    return ToolCall(tool=name or "", args=args, call_id=call_id or "", parse_error=problem)
